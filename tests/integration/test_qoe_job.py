"""The QoE job end to end on the real broker, against the brute-force reference.

The input has duplicates, disorder within the watermark bound, corrupted records and
bad timestamps, but no late events: every valid event counts once (first copy), and
the expected output is every window of the reference of ``tests/reference/qoe.py``
that closed under the job's final watermark.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.qoe import job
from runtime.api.bindings import Bindings
from runtime.generator import Degradation, GeneratorConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
)
from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS
from tests.reference.qoe import MINUTE, assert_same_metrics, facts, reference_metrics


def test_qoe_matches_reference(kafka: str) -> None:
    playback, metrics, excluded, dead = (
        unique("playback"),
        unique("qoe"),
        unique("excluded"),
        unique("dead"),
    )
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4)])
    # Recent event times: sinks stamp records with event time, and the broker's time-based
    # retention would delete output stamped years ago while the test still reads it.
    start_ms = (time.time_ns() // 1_000_000 - 3 * 3_600_000) // 3_600_000 * 3_600_000
    config = GeneratorConfig(
        start_ms=start_ms,
        seed=29,
        users=500,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.01,
        malformed_rate=0.002,
        bad_timestamp_rate=0.002,
        interaction_ratio=0.0,
        degradations=(Degradation("cdn-c", 4 * MINUTE, 12 * MINUTE),),
    )
    sent = produce_generated(kafka, {"playback": playback}, config, 30_000)
    bindings = Bindings.for_job(
        job,
        [
            f"playback={playback}",
            f"qoe-metrics={metrics}",
            f"qoe-excluded-events={excluded}",
            f"dead-letters={dead}",
        ],
    )
    worker = run_job_until_idle(kafka, job, bindings)
    now_ms = time.time_ns() // 1_000_000

    # --- the reference over what was sent ---------------------------------------------
    decodable = [r.value for r in sent if r.corrupt is None]
    valid = [v for v in decodable if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
    first_copies = list({v["event_id"]: v for v in reversed(valid)}.values())
    # The job repartitions through internal topics, so several tasks own groups: every
    # window that ends before the slowest task's watermark must be there and exact;
    # windows of faster tasks may be there too, and must be exact as well.
    watermark = min(worker.last_watermarks.values())
    reference = reference_metrics(facts(first_copies))

    def end(key: tuple[Any, ...]) -> int:
        return int(key[-1]) + (MINUTE if key[0] == "tumbling_1m" else 5 * MINUTE)

    # --- what the job wrote -----------------------------------------------------------
    got = decoded(read_all(kafka, metrics), "QoeMetric")
    keys = {
        (r["window_kind"], r["group_kind"], r["title_id"], r["device_type"], r["country"],
         r["cdn"], r["window_start_ms"])
        for r in got
    }
    want = {key: m for key, m in reference.items() if end(key) <= watermark or key in keys}
    assert len(want) > 1_000
    assert_same_metrics(got, want)
    excluded_events = decoded(read_all(kafka, excluded), "")
    assert Counter(r["excluded"] for r in excluded_events) == {
        "duplicate": len(valid) - len(first_copies)
    }
    dead_letters = decoded(read_all(kafka, dead), "DeadLetter")
    assert len(dead_letters) == len(sent) - len(valid)
    counters = worker.counters()
    assert counters["playback"]["in"] == len(sent)
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
