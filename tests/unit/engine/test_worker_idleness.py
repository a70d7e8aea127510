"""A partition the consumer has not caught up on is behind, not idle.

The worker asks its offsets source which assigned partitions still have unread
records and keeps those from going idle, so a consumer that serves some partitions
before others (catching up on a backlog) does not move the watermark past records it
has not read yet. The offsets source here is a fake (``FakeOffsets``) that reports
unread partitions as told; ``tests/integration/test_unread.py`` checks the real
client's report on the broker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connectors.codecs import codec_factory
from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count
from runtime.api.bindings import Bindings
from runtime.engine.worker import Worker, WorkerOptions
from runtime.state.memory import MemoryBackend

T0 = 1_700_000_000_000
IDLE = timedelta(seconds=1)


@dataclass
class Msg:
    """A stand-in for a Kafka message (the accessors the engine uses)."""

    name: str
    off: int
    data: bytes

    def topic(self) -> str:
        return self.name

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.off

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self.data

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class ListSource:
    """Hands out what the test queued, in order."""

    def __init__(self) -> None:
        self.queued: list[Msg] = []
        self.offsets = {"left": 0, "right": 0}

    def push(self, topic: str, user: str, t: int) -> None:
        data = json.dumps({"user": user, "t": T0 + t}).encode()
        self.queued.append(Msg(topic, self.offsets[topic], data))
        self.offsets[topic] += 1

    def poll(self, max_records: int, timeout_s: float) -> list[Msg]:
        out, self.queued = self.queued[:max_records], self.queued[max_records:]
        return out

    def close(self) -> None:
        pass


class FakeOffsets:
    """Offsets of a group with nothing committed; ``unread`` reports what it is told."""

    def __init__(self) -> None:
        self.unread_now: list[tuple[str, int]] = []
        self.asked = 0

    def committed(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, str]]:
        return {}

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        pass

    def beginning(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(pairs, 0)

    def unread(self, start: Mapping[tuple[str, int], int]) -> list[tuple[str, int]]:
        self.asked += 1
        return list(self.unread_now)


class Sink:
    """Keeps what the worker writes; commits succeed."""

    def __init__(self) -> None:
        self.written: list[tuple[str, Any]] = []

    def write(self, topic: str, key: Any, value: Any, *args: Any, **kw: Any) -> None:
        self.written.append((topic, value))

    def write_many(self, topic: str, records: list[tuple[Any, Any, Any]]) -> None:
        self.written.extend((topic, v) for _, v, _ in records)

    def commit(self, offsets: Any) -> None:
        pass

    def take_refused(self) -> list[Any]:
        return []


def counts_job() -> Job:
    job = Job("idle_counts")
    left, right = (
        job.source(
            name,
            schema="",
            timestamp=lambda e: e["t"],
            watermarks=WatermarkStrategy.bounded(timedelta(0), idle_timeout=IDLE),
        )
        for name in ("left", "right")
    )
    events = left.merge(right, name="both")

    def row(user: str, w: Window, n: int) -> dict[str, Any]:
        return {"user": user, "start": w.start_ms - T0, "n": n}

    events.key_by("by_user", lambda e: e["user"], repartition=False).window(
        "counts_10s", windows.tumbling(timedelta(seconds=10))
    ).aggregate(Count(), output=row).sink("counts", Json())
    return job


def run(unread: list[tuple[str, int]]) -> tuple[list[Any], FakeOffsets]:
    """Two co-partitioned inputs of one task: ``right`` delivers one record at 1 s,
    then nothing for three idle timeouts while ``left`` moves to 34 s; returns the
    windows that fired."""
    now = [T0]
    job = counts_job()
    sink, offsets, source = Sink(), FakeOffsets(), ListSource()
    worker = Worker(
        job,
        Bindings.for_job(job),
        sink,
        codec_factory(),
        MemoryBackend(),
        offsets=offsets,
        options=WorkerOptions(checkpoint_interval_ms=100),
        clock=lambda: now[0],
    )
    worker.on_assign([("left", 0), ("right", 0)])
    source.push("right", "b", 1_000)
    source.push("left", "a", 2_000)
    worker.step(source)
    offsets.unread_now = unread
    for i in range(30):
        source.push("left", "a", 5_000 + i * 1_000)
        now[0] += 100  # 3 s of processing time in all: three idle timeouts
        worker.step(source)
    topic = Bindings.for_job(job).sinks["counts"]
    return [json.loads(v) for t, v in sink.written if t == topic], offsets


def test_a_partition_with_unread_records_holds_the_watermark() -> None:
    fired, offsets = run(unread=[("right", 0)])
    assert offsets.asked >= 3  # asked about every half second of processing time
    assert fired == []  # ``right`` still holds the watermark at 1 s


def test_a_caught_up_quiet_partition_goes_idle() -> None:
    fired, _ = run(unread=[])
    # ``right`` went idle: ``left`` alone moves the watermark to 34 s
    # (windows that end together fire in no particular order of keys)
    assert sorted(fired, key=lambda w: (w["start"], w["user"])) == [
        {"user": "a", "start": 0, "n": 6},
        {"user": "b", "start": 0, "n": 1},
        {"user": "a", "start": 10_000, "n": 10},
        {"user": "a", "start": 20_000, "n": 10},
    ]
