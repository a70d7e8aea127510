"""Exactly-once under fire for the attribution job: an interval join, a global table
and a repartition, all through kill -9.

Three workers of ``jobs.attribution`` (interactions and playback keyed by user, so
both cross the ``(user, title)`` repartition topics inside the checkpoint's
transaction; the title catalogue a global table every task reads when it opens) are
SIGKILLed and restarted every ~2 seconds while generated interactions and playback
stream in. Each kill moves the join's kept records and timers, the settling step's
pending verdicts, the windows and the table with the tasks. Far-later sentinel events
(no impressions, no starts of real users) then move every watermark past every
window. The read_committed metrics must equal the brute-force reference
(``tests/reference/attribution.py``) exactly: every window, once.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import KafkaSource
from runtime.generator import Generator, GeneratorConfig
from tests.integration.helpers import SCHEMA, decoded, read_all, unique, write_catalogue
from tests.integration.workers import Producer, WorkerPool
from tests.reference.attribution import reference_metrics, sort_metrics

PARTITIONS = 3
EVENTS = 36_000
RATE = 2_000.0
MIN_KILLS = 6


def group_of(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m["group_kind"], m["window_start_ms"], m["row_name"], m["rank"], m["genre"])


def send_sentinels(bootstrap: str, topics: dict[str, str], records: list[Any], at_ms: int) -> None:
    """One event at ``at_ms`` per partition of both inputs, none of which the job
    counts: a search (no title, so no impression) and a stop of a user nobody saw."""
    sink = KafkaSink(bootstrap)
    codecs = codec_factory()
    for stream, topic in topics.items():
        template = next(r.value for r in records if r.stream == stream)
        for p in range(PARTITIONS):
            value = {**template, "user_id": f"zz-end-{p}", "event_id": f"end-{stream}-{p}",
                     "event_time_ms": at_ms}  # fmt: skip
            if stream == "interactions":
                value.update(event_type="search", title_id=None, row_name=None, rank=None)
            else:
                value.update(event_type="stop")
            data = codecs(SCHEMA[stream]).encode(value)
            sink.write(topic, value["user_id"].encode(), data, None, partition=p)
    sink.flush()


def wait_for_metrics(
    bootstrap: str, topic: str, want: int, pool: WorkerPool, timeout_s: float
) -> None:
    """Wait until ``want`` distinct metric groups are committed to ``topic``."""
    source = KafkaSource(bootstrap, f"chaos-watch-{uuid.uuid4().hex[:8]}", [topic])
    seen: set[tuple[Any, ...]] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want:
            assert time.monotonic() < deadline, (
                f"{len(seen)} of {want} metrics after {timeout_s}s\n" + pool.log_tail()
            )
            assert not pool.crashed(), pool.log_tail()
            for row in decoded(source.poll(5000, 0.5), "AttributionMetric"):
                seen.add(group_of(row))
    finally:
        source.close()


def test_kill9_chaos_attribution_job(kafka: str, tmp_path: Path) -> None:
    topics = {"interactions": unique("achaos-inter"), "playback": unique("achaos-play")}
    catalogue_t, out = unique("achaos-catalogue"), unique("achaos-out")
    late, dead = unique("achaos-late"), unique("achaos-dead")
    KafkaAdmin(kafka).ensure_topics([
        *(TopicSpec(t, PARTITIONS) for t in topics.values()),
        TopicSpec(catalogue_t, 1, config={"cleanup.policy": "compact"}),
    ])  # fmt: skip
    start_ms = (time.time_ns() // 1_000_000 - 4 * 3_600_000) // 3_600_000 * 3_600_000
    config = GeneratorConfig(start_ms=start_ms, seed=31, users=300, late_rate=0.0,
                             out_of_order_ms=2_000, duplicate_rate=0.01,
                             malformed_rate=0.0, bad_timestamp_rate=0.0)  # fmt: skip
    catalogue = write_catalogue(kafka, catalogue_t, config)
    records = list(Generator(config).take(EVENTS))
    want = reference_metrics(
        [r.value for r in records if r.stream == "interactions"],
        [r.value for r in records if r.stream == "playback"],
        {k.decode(): v for k, v in catalogue},
    )
    assert len(want) > 200 and sum(m["attributed_plays"] for m in want) > 50
    binds = [f"{name}={topic}" for name, topic in topics.items()] + [
        f"title-catalogue={catalogue_t}", f"attribution-metrics={out}",
        f"attribution-late={late}", f"dead-letters={dead}",
    ]  # fmt: skip
    pool = WorkerPool("jobs.attribution:job", kafka, unique("achaos"), binds, tmp_path,
                      extra=["--checkpoint-ms", "500", "--state", "rocksdb",
                             "--partitions", str(PARTITIONS)])  # fmt: skip
    for slot in range(3):
        pool.start(slot)
    producer = Producer(kafka, topics, records, RATE)
    producer.start()
    try:
        time.sleep(5)
        pool.kill_while(producer.is_alive, [0, 1, 2], MIN_KILLS, seed=19)
        assert producer.error is None, producer.error
        last_ms = max(r.value["event_time_ms"] for r in records)
        send_sentinels(kafka, topics, records, last_ms + 3 * 3_600_000)
        wait_for_metrics(kafka, out, len(want), pool, 300)
        time.sleep(2)  # anything duplicated would have been committed with these
        codes = pool.stop_all()
        assert codes == [0, 0, 0], pool.log_tail()
    finally:
        for slot in pool.alive():
            pool.kill(slot)
    got = sort_metrics(decoded(read_all(kafka, out), "AttributionMetric"))
    lost = len({group_of(m) for m in want} - {group_of(m) for m in got})
    duplicated = len(got) - len({group_of(m) for m in got})
    print(f"chaos (attribution): kills={pool.kills} events={len(records)} outputs={len(got)} "
          f"lost={lost} duplicated={duplicated}")  # fmt: skip
    assert pool.kills >= MIN_KILLS
    assert got == want
    assert decoded(read_all(kafka, late, first_wait_s=3), "") == []
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")
