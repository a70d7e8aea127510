"""Hostile records on a running job's repartition topic are dead-lettered, never run.

``jobs.playback_health`` keys rebuffers by CDN through ``<group>.by_cdn.repartition``.
While it runs on the real broker, a plain producer writes two records there: a pickle
whose loading would create a marker file (what the old internal format would have
executed), and 14 junk bytes (which made the old worker exit on every restart). The
marker file must not exist, the job's output must be exactly the brute-force
reference, and both records must be in the dead-letter topic with their topic,
partition and offset.
"""

from __future__ import annotations

import os
import pickle  # only to craft the hostile record the worker must refuse
import shlex
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from jobs.playback_health import job
from jobs.playback_health.job import error_record
from runtime.api.bindings import Bindings
from runtime.composition import kafka_runner
from runtime.engine.topics import repartition_topic
from runtime.engine.worker import WorkerOptions
from runtime.generator import GeneratorConfig
from runtime.runner import RunConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_until_quiet,
    unique,
)

pytestmark = pytest.mark.integration

JUNK = b"\x00\x01junk\xff\xfe12345!"  # 14 bytes


class Touch:
    """Runs ``touch <path>`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


def test_hostile_repartition_records_are_dead_lettered(kafka: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = pickle.dumps(Touch(marker), protocol=5)
    assert len(JUNK) == 14 and b"system" in hostile

    playback = unique("hostile-playback")
    errors_topic, rebuffers_topic, dead_topic = unique("errors"), unique("rebuf"), unique("dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4)])
    config = GeneratorConfig(
        seed=31, users=300, late_rate=0.0, out_of_order_ms=2000,
        malformed_rate=0.0, bad_timestamp_rate=0.0, interaction_ratio=0.0,
    )  # fmt: skip
    topics = {"playback": playback, "interactions": playback}  # no interactions generated
    sent = produce_generated(kafka, topics, config, 20_000)
    bindings = Bindings.for_job(
        job,
        [
            f"playback={playback}",
            f"playback-errors={errors_topic}",
            f"rebuffers-per-cdn={rebuffers_topic}",
            f"dead-letters={dead_topic}",
        ],
    )
    group = f"hostile-{uuid.uuid4().hex[:6]}"
    internal = repartition_topic(group, "by_cdn")
    runner = kafka_runner(
        job,
        bindings,
        RunConfig(
            bootstrap=kafka,
            guarantee="exactly_once",
            state="rocksdb",
            state_dir=Path(tempfile.mkdtemp(prefix="shoal-state-", dir=tmp_path)),
            group=group,
            worker_id="w0",
            options=WorkerOptions(batch_size=2000, checkpoint_interval_ms=500),
        ),
    )
    worker = runner.worker
    assert worker is not None
    injected: list[bytes] = []

    def inject_while_running() -> None:
        """Once the job has sent records through its internal topic, add the hostile ones."""
        if injected or worker.counters().get("by_cdn", {}).get("in", 0) == 0:
            return
        sink = KafkaSink(kafka)
        for partition, data in ((0, hostile), (1, JUNK)):
            sink.write(internal, None, data, None, None, partition)
            injected.append(data)
        sink.flush()

    try:
        run_until_quiet(runner, idle_s=4.0, timeout_s=180.0, before_step=inject_while_running)
    finally:
        runner.close()
    assert len(injected) == 2, "the job never read its internal topic"

    # --- nothing ran -----------------------------------------------------------------
    assert not marker.exists(), "a record of the internal topic was executed"

    # --- the output is exactly the brute-force reference -------------------------------
    valid = [r.value for r in sent if r.stream == "playback"]
    want_errors = Counter(
        tuple(sorted(error_record(v).items())) for v in valid if v["event_type"] == "error"
    )
    watermark = min(worker.last_watermarks.values())
    all_buckets: Counter[tuple[str, int]] = Counter()
    for v in valid:
        if v["event_type"] == "rebuffer_start":
            start = v["event_time_ms"] - v["event_time_ms"] % 10_000
            all_buckets[(v["cdn"], start)] += 1
    buckets = {k: n for k, n in all_buckets.items() if k[1] + 10_000 <= watermark}
    got_errors = Counter(
        tuple(sorted(r.items())) for r in decoded(read_all(kafka, errors_topic), "")
    )
    got_buckets = {
        (r["cdn"], r["window_start_ms"]): r["rebuffers"]
        for r in decoded(read_all(kafka, rebuffers_topic), "")
    }
    assert sum(want_errors.values()) > 10 and len(buckets) > 10
    assert got_errors == want_errors
    assert {k: got_buckets.get(k) for k in buckets} == buckets
    assert all(all_buckets[k] == n for k, n in got_buckets.items())  # none wrong or extra

    # --- both hostile records are dead letters, with where they were -------------------
    where = {
        m.value(): (m.topic(), m.partition(), m.offset())
        for m in read_all(kafka, internal)
        if m.value() in (hostile, JUNK)
    }
    assert sorted(where) == sorted([hostile, JUNK])
    dead = decoded(read_all(kafka, dead_topic), "DeadLetter")
    assert len(dead) == 2
    got = {
        d["original_value"]: (d["source_topic"], d["source_partition"], d["source_offset"])
        for d in dead
    }
    assert got == where
    assert {(d["error_class"], d["step"], d["job"]) for d in dead} == {
        ("DecodeError", "by_cdn", "playback_health")
    }

    # --- and every record is accounted for -------------------------------------------
    counters = worker.counters()
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    assert counters["by_cdn"]["dead_lettered"] == 2
    assert counters["by_cdn"]["in"] == counters["by_cdn.out"]["out"] + 2
