"""Table state over the HTTP service, and the worker's table reading without a broker:
a worker of two tasks holds a global table (two partitions) read by a fake table feed
when its tasks open, follows updates while it runs, and answers ``/state`` for a table
key from one task only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from connectors.codecs import codec_factory
from runtime import Job, Json, WatermarkStrategy
from runtime.api.bindings import Bindings
from runtime.engine.worker import Worker, WorkerOptions
from runtime.service import WorkerHandle, make_app
from runtime.state.memory import MemoryBackend
from tests.unit.service.conftest import LOOPBACK, MemorySource, NullTransport

T0 = 1_700_000_000_000


class TableMsg:
    """A stand-in for a Kafka message of a table topic."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: Any) -> None:
        self._where = (topic, partition, offset)
        self._key = key
        self._value = None if value is None else json.dumps(value).encode()

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, T0)


class FakeTableFeed:
    """An in-memory table topic (a fake of ``connectors.kafka.tables.TableReader``)."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic = topic
        self.logs: list[list[TableMsg]] = [[] for _ in range(partitions)]
        self.at: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def write(self, partition: int, key: str, value: Any) -> None:
        with self.lock:
            log = self.logs[partition]
            log.append(TableMsg(self.topic, partition, len(log), key.encode(), value))

    def partitions(self, topic: str) -> int:
        return len(self.logs)

    def load(self, topic: str, partition: int) -> Iterator[list[Any]]:
        with self.lock:
            batch = list(self.logs[partition])
        if batch:
            yield batch

    def follow(self, positions: Mapping[tuple[str, int], int]) -> None:
        self.at = dict(positions)

    def poll(self) -> list[Any]:
        out: list[Any] = []
        with self.lock:
            for (_, p), off in self.at.items():
                out.extend(self.logs[p][off:])
                self.at[(self.topic, p)] = len(self.logs[p])
        return out

    def close(self) -> None:
        pass


def table_job() -> Job:
    job = Job("plays")
    strategy = WatermarkStrategy.bounded(timedelta(0), idle_timeout=None)
    events = job.source("events", schema="", timestamp=lambda e: e["t"], watermarks=strategy)
    titles = job.table("titles", schema="", kind="global")
    events.join_table(titles, "with_genre", key=lambda e: e["title"]).sink("out", Json())
    return job


@pytest.fixture
def running() -> Iterator[tuple[Worker, FakeTableFeed, MemorySource, NullTransport]]:
    job = table_job()
    feed = FakeTableFeed("titles", 2)
    feed.write(0, "t1", {"genre": "drama"})
    feed.write(1, "t2", {"genre": "comedy"})
    feed.write(1, "t2", {"genre": "crime"})
    source, transport = MemorySource(), NullTransport()
    worker = Worker(
        job, Bindings.for_job(job), transport, codec_factory(), MemoryBackend(),
        options=WorkerOptions(poll_timeout_s=0.02, checkpoint_interval_ms=100),
        repartition_partitions=2, tables=feed,
    )  # fmt: skip
    worker.on_assign([("events", 0), ("events", 1)])
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            worker.step(source)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield worker, feed, source, transport
    finally:
        stop.set()
        thread.join(5)


def test_table_state_is_queryable_and_follows_updates(running: Any) -> None:
    worker, feed, source, transport = running
    handle = WorkerHandle(worker)
    try:
        app = make_app(handle, CollectorRegistry(auto_describe=False))
        with TestClient(app, base_url=LOOPBACK) as client:
            r = client.get("/state/plays/titles/t2")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["kind"] == "table"
            assert [e["value"] for e in body["entries"]] == [{"genre": "crime"}]  # one task
            feed.write(0, "t1", None)  # a tombstone while the worker runs
            deadline = time.monotonic() + 10
            while client.get("/state/plays/titles/t1").status_code != 404:
                assert time.monotonic() < deadline, "the tombstone never reached the worker"
                time.sleep(0.05)
            source.push([{"title": "t1", "t": T0}, {"title": "t2", "t": T0}])
            deadline = time.monotonic() + 10
            while not any(topic == "out" for topic, _ in transport.written):
                assert time.monotonic() < deadline, "no output"
                time.sleep(0.05)
    finally:
        handle.close()
    outs = [json.loads(v) for topic, v in transport.written if topic == "out"]
    assert [(o["key"], o["table"]) for o in outs] == [("t2", {"genre": "crime"})]
