"""Calls into the worker thread are bounded; state is looked up by key, never by a scan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.api.errors import ConfigError, WorkerBusy
from runtime.engine.calls import CallLimits, CallQueue
from runtime.engine.queryable import lookup_state
from runtime.service import WorkerHandle, make_app
from runtime.state.base import StateBackend, StateStore
from runtime.state.memory import MemoryBackend, MemoryStore
from runtime.state.rocksdb import RocksDBBackend
from tests.unit.service.conftest import LOOPBACK, LiveWorker, event


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_queue_refuses_at_once() -> None:
    calls: CallQueue[list[int]] = CallQueue(CallLimits(max_pending=3, per_step=10))
    futures = [calls.submit(lambda seen, i=i: seen.append(i)) for i in range(3)]
    with pytest.raises(WorkerBusy, match="3 calls pending"):
        calls.submit(lambda seen: None)
    assert calls.stats.refused == 1 and len(calls) == 3
    seen: list[int] = []
    assert calls.serve(seen) == 3
    assert seen == [0, 1, 2] and all(f.done() for f in futures)
    calls.submit(lambda seen: None)  # room again


def test_a_flood_is_served_a_few_calls_per_iteration() -> None:
    calls: CallQueue[list[int]] = CallQueue(CallLimits(max_pending=64, per_step=8))
    for i in range(64):
        calls.submit(lambda seen, i=i: seen.append(i))
    seen: list[int] = []
    assert calls.serve(seen) == 8 and seen == list(range(8))
    assert len(calls) == 56
    while calls.serve(seen):
        pass
    assert seen == list(range(64)) and calls.stats.served == 64


def test_the_time_budget_stops_an_iteration_early() -> None:
    clock = Clock()
    calls: CallQueue[Clock] = CallQueue(CallLimits(per_step=8, budget_s=0.05), clock=clock)

    def slow(c: Clock) -> None:
        c.now += 0.03  # each call "takes" 30 ms

    for _ in range(8):
        calls.submit(slow)
    assert calls.serve(clock) == 2  # 60 ms after the second: no third starts
    assert len(calls) == 6


def test_calls_past_their_deadline_or_cancelled_are_dropped_unrun() -> None:
    clock = Clock()
    calls: CallQueue[list[str]] = CallQueue(CallLimits(per_step=8), clock=clock)
    late = calls.submit(lambda ran: ran.append("late"), deadline=clock.now + 1)
    given_up = calls.submit(lambda ran: ran.append("given up"))
    on_time = calls.submit(lambda ran: ran.append("on time"), deadline=clock.now + 10)
    assert not on_time.done()
    failing = calls.submit(lambda ran: 1 // 0)
    assert given_up.cancel()
    clock.now += 5
    ran: list[str] = []
    assert calls.serve(ran) == 2
    assert ran == ["on time"] and late.cancelled()
    assert calls.stats.expired == 2 and calls.stats.failed == 1
    with pytest.raises(ZeroDivisionError):
        failing.result(0)


def test_the_worker_serves_at_most_a_few_calls_per_step(live: LiveWorker) -> None:
    live.stop()  # drive the loop by hand
    worker = live.worker
    futures = [
        worker.call(lambda w: w.records_read) for _ in range(worker.calls.limits.max_pending)
    ]
    with pytest.raises(WorkerBusy):
        worker.call(lambda w: None)
    live.push([event("u1", 1, 0)])
    worker.step(live.source)
    assert sum(f.done() for f in futures) == worker.calls.limits.per_step
    assert worker.records_read == 1  # the batch still ran in the same iteration
    while worker.calls:
        worker.step(live.source)
    assert all(f.done() for f in futures)


def test_state_requests_get_503_when_the_worker_is_busy_or_late(live: LiveWorker) -> None:
    live.stop()
    worker = live.worker
    handle = WorkerHandle(worker, timeout_s=0.2)
    client = TestClient(make_app(handle, CollectorRegistry(auto_describe=False)), base_url=LOOPBACK)
    r = client.get("/state/clicks/totals/u1")  # nobody serves calls: the request gives up
    assert r.status_code == 503 and "did not answer in time" in r.json()["error"]
    served = worker.calls.stats.served
    worker.step(live.source)  # the abandoned call is dropped, not run
    assert worker.calls.stats.served == served and worker.calls.stats.expired == 1
    for _ in range(worker.calls.limits.max_pending):
        worker.call(lambda w: None)
    r = client.get("/state/clicks/totals/u1")
    assert r.status_code == 503 and "calls pending" in r.json()["error"]
    handle.close()


class _Task:
    def __init__(self, stores: list[StateStore]) -> None:
        self.stores = stores

    def queryable_stores(self) -> list[tuple[StateStore, bool]]:
        return [(store, False) for store in self.stores]


class _NoScan(dict[Any, Any]):
    """A dict that fails the test when anything iterates over all of it."""

    def items(self) -> Any:
        raise AssertionError("scanned the whole store")

    def keys(self) -> Any:
        raise AssertionError("scanned the whole store")

    def values(self) -> Any:
        raise AssertionError("scanned the whole store")

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("scanned the whole store")


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    made: StateBackend = MemoryBackend() if request.param == "memory" else RocksDBBackend(tmp_path)
    yield made
    made.close()


def _fill(store: StateStore) -> None:
    for u in range(300):
        for start in range(3):
            store.put((f"u{u}", start * 10_000), u + start)
    store.put(("u7", "total"), (70, 1))
    store.put("u7", ["a session"])  # session windows keep the key itself
    store.put(("u70", 0), 1)  # shares a string prefix with u7, not the element


def test_a_key_is_one_range_read_on_both_backends(backend: StateBackend) -> None:
    store = backend.open_store("job", "counts", 0)
    _fill(store)
    store.checkpoint()  # half on disk (RocksDB), half changed since
    store.put(("u7", 30_000), 99)
    store.delete(("u7", 0))
    found = lookup_state([(0, _Task([store]))], "counts", "u7")
    assert not found.truncated
    assert sorted(map(repr, found.entries)) == sorted(
        map(
            repr,
            [
                (0, "u7", ["a session"]),
                (0, ("u7", 10_000), 8),
                (0, ("u7", 20_000), 9),
                (0, ("u7", 30_000), 99),
                (0, ("u7", "total"), (70, 1)),
            ],
        )
    )
    assert lookup_state([(0, _Task([store]))], "other", "u7").entries == []
    assert lookup_state([(0, _Task([store]))], "counts", "nobody").entries == []


def test_answers_are_bounded_and_say_so(backend: StateBackend) -> None:
    stores = [backend.open_store("job", "counts", p) for p in (0, 1)]
    for p, store in enumerate(stores):
        for start in range(700):
            store.put(("hot", start), p)
    tasks = [(p, _Task([s])) for p, s in enumerate(stores)]
    found = lookup_state(tasks, "counts", "hot", limit=1000)
    assert len(found.entries) == 1000 and found.truncated
    exact = lookup_state(tasks, "counts", "hot", limit=1400)
    assert len(exact.entries) == 1400 and not exact.truncated
    with pytest.raises(ConfigError, match="not a state key"):
        lookup_state(tasks, "counts", 1 << 4096)


def test_the_memory_store_reads_a_prefix_without_scanning_after_the_first() -> None:
    store = MemoryBackend().open_store("job", "counts", 0)
    assert isinstance(store, MemoryStore)
    _fill(store)
    # The first prefix read builds the index (one scan); from then on it is kept.
    assert len(list(store.items_with_prefix(("u8",)))) == 3
    store.delete(("u8", 0))
    store.put(("u8", 0), "again")  # deleted and put again within one checkpoint
    changes = store.checkpoint()
    store._data = _NoScan(store._data)
    assert sorted(k for k, _ in store.items_with_prefix(("u8",))) == [
        ("u8", 0),
        ("u8", 10_000),
        ("u8", 20_000),
    ]
    found = lookup_state([(0, _Task([store]))], "counts", "u7")
    assert len(found.entries) == 5
    # the index follows deletes, restores and clears
    store.delete(("u8", 10_000))
    assert [k for k, _ in store.items_with_prefix(("u8", 0))] == [("u8", 0)]
    assert sorted(k for k, _ in store.items_with_prefix(("u8",))) == [("u8", 0), ("u8", 20_000)]
    store._data = dict(dict.items(store._data))
    store.clear()
    assert list(store.items_with_prefix(("u8",))) == []
    store.restore(changes)
    assert len(list(store.items_with_prefix(("u8",)))) == 3
    store.restore([(k, None) for k, _ in changes])
    assert list(store.items_with_prefix(("u8",))) == [] and len(store) == 0
