"""Exactly-once under fire for a job that repartitions through an internal topic.

Two workers of a per-title count (input keyed by user, so every record crosses the
``by_title`` repartition topic inside the checkpoint's transaction) are SIGKILLed
and restarted every ~2 seconds while events stream in. Both halves of the job move
with each kill: the upstream part re-sends what its aborted transaction held, the
downstream part restores its windows and the per-upstream-task watermarks. The
read_committed output must equal the brute-force reference exactly.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.source import KafkaSource
from runtime.generator import Generator, GeneratorConfig
from tests.integration.chaos_jobs import WINDOW_MS
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.workers import Producer, WorkerPool, chaos_line
from tests.reference.counts import window_counts

PARTITIONS = 4
EVENTS = 120_000
RATE = 6_000.0
MIN_KILLS = 10


def wait_for_outputs(bootstrap: str, topic: str, want: int, pool: WorkerPool,
                     timeout_s: float) -> None:
    """Wait until ``want`` distinct windows are committed to ``topic``."""
    source = KafkaSource(bootstrap, f"chaos-watch-{uuid.uuid4().hex[:8]}", [topic])
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want:
            assert time.monotonic() < deadline, (
                f"{len(seen)} of {want} windows after {timeout_s}s\n" + pool.log_tail())
            assert not pool.crashed(), pool.log_tail()
            for row in decoded(source.poll(5000, 0.5), ""):
                seen.add((row["title_id"], row["window_start_ms"]))
    finally:
        source.close()


def test_kill9_chaos_repartitioning_job(kafka: str, tmp_path: Path) -> None:
    playback, out, dead = unique("rchaos-in"), unique("rchaos-out"), unique("rchaos-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=77, users=1200, titles=40, late_rate=0.0,
                             malformed_rate=0.0, bad_timestamp_rate=0.0,
                             interaction_ratio=0.0)
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    group = unique("rchaos")
    pool = WorkerPool("tests.integration.chaos_jobs:title_counts", kafka, group,
                      [f"playback={playback}", f"title-counts={out}", f"dead-letters={dead}"],
                      tmp_path, extra=["--checkpoint-ms", "500", "--state", "rocksdb",
                                       "--partitions", "2"])
    pool.start(0)
    pool.start(1)
    producer = Producer(kafka, playback, records, RATE)
    producer.start()
    try:
        time.sleep(4)
        pool.kill_while(producer.is_alive, [0, 1], MIN_KILLS, seed=11)
        assert producer.error is None, producer.error
        last_ts = max(r.value["event_time_ms"] for r in records)
        close_all_windows(kafka, playback, last_ts + 3_600_000, PARTITIONS)
        reference = window_counts([r.value for r in records], WINDOW_MS, "title_id")
        wait_for_outputs(kafka, out, len(reference), pool, 240)
        codes = pool.stop_all()
        assert codes == [0, 0], pool.log_tail()
    finally:
        for slot in pool.alive():
            pool.kill(slot)
    outputs = decoded(read_all(kafka, out), "")
    line, lost, duplicated = chaos_line(pool.kills, len(records), outputs, reference,
                                        key="title_id", label="chaos (repartition)")
    print(line)
    assert pool.kills >= MIN_KILLS
    assert lost == 0 and duplicated == 0, line
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")
