"""Exactly-once under fire: workers are killed with SIGKILL every few seconds.

Three workers of ``jobs.user_counts`` (per-user counts in 10 s windows, state in
RocksDB, checkpoints in Kafka transactions) process generated playback events
produced at a steady rate, while a random worker is SIGKILLed and restarted in its
slot every ~2 seconds. Afterwards a read_committed reading of the output must equal
the brute-force reference exactly: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import time
from pathlib import Path

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from runtime.generator import Generator, GeneratorConfig
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.workers import Producer, WorkerPool, chaos_line, group_lag
from tests.reference.counts import window_counts

PARTITIONS = 6
EVENTS = 200_000
RATE = 8_000.0
MIN_KILLS = 10


def close_all_windows(bootstrap: str, topic: str, after_ms: int,
                      partitions: int = PARTITIONS) -> None:
    """One far-later record per partition so every task's watermark passes all windows."""
    sink = KafkaSink(bootstrap)
    encode = codec_factory()("PlaybackEvent").encode
    template = next(r.value for r in Generator(GeneratorConfig(seed=99, users=1))
                    if r.stream == "playback")
    for p in range(partitions):
        value = {**template, "user_id": f"zz-sentinel-{p}", "event_id": f"sentinel-{p}",
                 "event_time_ms": after_ms}
        sink.write(topic, value["user_id"].encode(), encode(value), None, partition=p)
    sink.flush()


def test_kill9_chaos_exactly_once(kafka: str, tmp_path: Path) -> None:
    playback, out, dead = unique("chaos-in"), unique("chaos-out"), unique("chaos-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=2024, users=1500, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    group = unique("chaos")
    pool = WorkerPool("jobs.user_counts:job", kafka, group,
                      [f"playback={playback}", f"user-counts={out}", f"dead-letters={dead}"],
                      tmp_path, extra=["--checkpoint-ms", "500", "--state", "rocksdb",
                                       "--partitions", "3"])
    for slot in range(3):
        pool.start(slot)
    producer = Producer(kafka, playback, records, RATE)
    producer.start()
    try:
        time.sleep(4)
        pool.kill_while(producer.is_alive, [0, 1, 2], MIN_KILLS, seed=7)
        assert producer.error is None, producer.error
        last_ts = max(r.value["event_time_ms"] for r in records)
        close_all_windows(kafka, playback, last_ts + 3_600_000)
        deadline = time.monotonic() + 180
        while group_lag(kafka, group, playback, PARTITIONS) > 0:
            assert time.monotonic() < deadline, "workers did not catch up\n" + pool.log_tail()
            assert not pool.crashed(), pool.log_tail()
            time.sleep(1)
        time.sleep(2)  # let the last windows' results commit with the next checkpoint
        codes = pool.stop_all()
        assert codes == [0, 0, 0], pool.log_tail()
    finally:
        for slot in pool.alive():
            pool.kill(slot)
    outputs = decoded(read_all(kafka, out), "")
    reference = window_counts([r.value for r in records])
    line, lost, duplicated = chaos_line(pool.kills, len(records), outputs, reference)
    print(line)
    assert pool.kills >= MIN_KILLS
    assert lost == 0 and duplicated == 0, line
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")
