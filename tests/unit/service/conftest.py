"""A real engine ``Worker`` fed from memory, looping on a thread: the service's test subject.

No broker: records are JSON bytes pushed into an in-memory source; the worker's loop
runs on a background thread exactly as under ``shoal run`` (taps fire there, and
``worker.call`` is served between its batches).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Job, Json, ValueState, WatermarkStrategy, Window, windows
from runtime.aggregates import Count
from runtime.api.bindings import Bindings
from runtime.engine.worker import Worker, WorkerOptions
from runtime.state.memory import MemoryBackend

T0 = 1_700_000_000_000
#: Base URL of test clients: without a token the service answers loopback names only.
LOOPBACK = "http://127.0.0.1"
TOTAL = ValueState("total")


@dataclass(frozen=True, slots=True)
class Msg:
    """A stand-in for a Kafka message (the accessors the engine uses)."""

    topic_name: str
    partition_no: int
    offset_no: int
    data: bytes

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_no

    def offset(self) -> int:
        return self.offset_no

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self.data

    def timestamp(self) -> tuple[int, int]:
        return (1, T0)


class MemorySource:
    """Records pushed by the test, polled by the worker."""

    def __init__(self) -> None:
        self.q: queue.SimpleQueue[Msg] = queue.SimpleQueue()
        self.offset = 0

    def push(self, values: list[Any], topic: str = "events") -> None:
        for v in values:
            self.q.put(Msg(topic, 0, self.offset, json.dumps(v).encode()))
            self.offset += 1

    def push_raw(self, data: bytes, topic: str = "events") -> None:
        self.q.put(Msg(topic, 0, self.offset, data))
        self.offset += 1

    def poll(self, max_records: int, timeout_s: float) -> list[Msg]:
        out: list[Msg] = []
        try:
            out.append(self.q.get(timeout=min(timeout_s, 0.02)))
            while len(out) < max_records:
                out.append(self.q.get_nowait())
        except queue.Empty:
            pass
        return out

    def close(self) -> None:
        pass


class NullTransport:
    """Keeps what the worker writes; commits succeed."""

    def __init__(self) -> None:
        self.written: list[tuple[str, Any]] = []
        self.commits = 0

    def write(
        self,
        topic: str,
        key: Any,
        value: Any,
        timestamp_ms: Any = None,
        headers: Any = None,
        partition: Any = None,
    ) -> None:
        self.written.append((topic, value))

    def write_many(self, topic: str, records: list[tuple[Any, Any, Any]]) -> None:
        self.written.extend((topic, value) for _, value, _ in records)

    def commit(self, offsets: Any) -> None:
        self.commits += 1

    def take_refused(self) -> list[Any]:
        return []


class Totals:
    """Keyed process function: each user's running total of ``amount``."""

    states = (TOTAL,)

    def process(self, value: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        handle = ctx.state(TOTAL)
        total = (handle.get() or 0) + value["amount"]
        handle.set(total)
        return [{"user": ctx.key, "total": total}]

    def on_timer(self, ts: int, ctx: Any) -> list[Any]:
        return []


def build_job() -> Job:
    """``events`` -> big_only filter; per-user totals (state) and 10 s counts per user."""
    job = Job("clicks")
    events = job.source(
        "events",
        schema="",
        timestamp=lambda e: e["t"],
        watermarks=WatermarkStrategy.bounded(timedelta(0), idle_timeout=None),
    )
    keyed = events.key_by("by_user", lambda e: e["user"], repartition=False)
    keyed.process("totals", Totals()).sink("totals-out", Json())

    def row(user: str, w: Window, n: int) -> dict[str, Any]:
        return {"user": user, "start": w.start_ms, "n": n}

    keyed.window("counts_10s", windows.tumbling(timedelta(seconds=10))).aggregate(
        Count(), output=row
    ).sink("counts", Json())
    events.filter(lambda e: e["amount"] >= 100, name="big_only").sink("big", Json())
    return job


class LiveWorker:
    """A worker of :func:`build_job` looping on a thread until ``stop()``."""

    def __init__(self) -> None:
        self.job = build_job()
        self.source = MemorySource()
        self.transport = NullTransport()
        self.worker = Worker(
            self.job,
            Bindings.for_job(self.job),
            self.transport,
            codec_factory(),
            MemoryBackend(),
            options=WorkerOptions(batch_size=500, poll_timeout_s=0.02, checkpoint_interval_ms=100),
        )
        self.worker.on_assign([("events", 0)])
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.worker.step(self.source)

    def push(self, values: list[dict[str, Any]]) -> None:
        self.source.push(values)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def event(user: str, amount: int, t: int) -> dict[str, Any]:
    """One input record."""
    return {"user": user, "amount": amount, "t": T0 + t}


@pytest.fixture
def live() -> Iterator[LiveWorker]:
    """A looping worker; stopped after the test."""
    lw = LiveWorker()
    try:
        yield lw
    finally:
        lw.stop()
