"""The attribution job end to end on the real broker, against the brute-force reference.

Generated interactions and playback (two partitions each; duplicates and disorder
within the watermark bound, nothing late) and the generator's title catalogue on a
compacted topic, written before the job starts. One worker runs the job exactly-once
until its input is quiet. The read_committed metrics must be exactly the reference's
(``tests/reference/attribution.py``) for every impression window whose results are
due under the slowest task's final watermark (window start + 40 minutes); windows that
faster tasks already closed may be there too and must be exact as well.
"""

from __future__ import annotations

import time

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.attribution import job
from jobs.attribution.job import SETTLE_MS, WINDOW_MS
from runtime.api.bindings import Bindings
from runtime.generator import GeneratorConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
    write_catalogue,
)
from tests.reference.attribution import reference_metrics, sort_metrics


def test_attribution_matches_reference(kafka: str) -> None:
    interactions, playback, catalogue_t = unique("inter"), unique("play"), unique("catalogue")
    metrics, late, dead = unique("attribution"), unique("late"), unique("dead")
    KafkaAdmin(kafka).ensure_topics([
        TopicSpec(interactions, 2), TopicSpec(playback, 2),
        TopicSpec(catalogue_t, 1, config={"cleanup.policy": "compact"}),
    ])  # fmt: skip
    start_ms = (time.time_ns() // 1_000_000 - 3 * 3_600_000) // 3_600_000 * 3_600_000
    config = GeneratorConfig(
        start_ms=start_ms,
        seed=11,
        users=20,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.02,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
    )
    catalogue = write_catalogue(kafka, catalogue_t, config)
    sent = produce_generated(
        kafka, {"interactions": interactions, "playback": playback}, config, 6_000
    )
    bindings = Bindings.for_job(job, [
        f"interactions={interactions}", f"playback={playback}", f"title-catalogue={catalogue_t}",
        f"attribution-metrics={metrics}", f"attribution-late={late}", f"dead-letters={dead}",
    ])  # fmt: skip
    worker = run_job_until_idle(kafka, job, bindings)

    watermark = min(worker.last_watermarks.values())
    want = reference_metrics(
        [r.value for r in sent if r.stream == "interactions"],
        [r.value for r in sent if r.stream == "playback"],
        {k.decode(): v for k, v in catalogue},
    )
    got = sort_metrics(decoded(read_all(kafka, metrics), "AttributionMetric"))
    got_keys = {
        (m["group_kind"], m["window_start_ms"], m["row_name"], m["rank"], m["genre"]) for m in got
    }
    due = [
        m
        for m in want
        if m["window_start_ms"] + SETTLE_MS + WINDOW_MS <= watermark
        or (m["group_kind"], m["window_start_ms"], m["row_name"], m["rank"], m["genre"]) in got_keys
    ]
    assert sum(m["window_start_ms"] + SETTLE_MS + WINDOW_MS <= watermark for m in want) > 100
    assert got == due
    assert decoded(read_all(kafka, late, first_wait_s=5.0), "") == []
    assert decoded(read_all(kafka, dead, first_wait_s=5.0), "DeadLetter") == []
    counters = worker.counters()
    assert counters["interactions"]["in"] + counters["playback"]["in"] == len(sent)
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
