"""Taps never slow the job: filters have a cost bound and run off the worker thread;
taps are bounded per client and in total, and a reader that takes nothing is dropped."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.service import WorkerHandle, compile_filter, make_app
from runtime.service.filters import (
    MAX_LIST_ITEMS,
    MAX_NODES,
    MAX_PATH_SEGMENTS,
    MAX_STRING,
    FilterSyntaxError,
)
from runtime.service.sampling import Sampler, SampleSpec
from runtime.service.sse import SSEResponse, stream
from runtime.service.taps import TapHub, TooManyFromClient, TooManySubscribers
from tests.unit.service.conftest import LOOPBACK, LiveWorker


def _batch(n: int, start: int = 0) -> list[Any]:
    return [(f"k{i}", {"i": i, "even": i % 2 == 0}, i, None) for i in range(start, start + n)]


@pytest.mark.parametrize(
    "expr,says",
    [
        (" or ".join(["a == 1"] * 40), f"more than {MAX_NODES} terms"),
        ("a in [" + ",".join(str(i) for i in range(MAX_LIST_ITEMS + 1)) + "]", "list of more"),
        ('a == "' + "x" * (MAX_STRING + 1) + '"', f"the limit is {MAX_STRING}"),
        (".".join(["a"] * (MAX_PATH_SEGMENTS + 1)) + " == 1", f"the limit is {MAX_PATH_SEGMENTS}"),
    ],
)
def test_filters_beyond_a_cost_limit_are_refused_naming_it(expr: str, says: str) -> None:
    with pytest.raises(FilterSyntaxError, match="limit") as info:
        compile_filter(expr)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_filters_at_the_limits_still_compile_and_work() -> None:
    items = ",".join(f'"c{i}"' for i in range(MAX_LIST_ITEMS - 1)) + ', "cdn-b"'
    keep = compile_filter(f"cdn in [{items}]")
    assert keep is not None
    assert keep(None, {"cdn": "cdn-b"}, 0) and not keep(None, {"cdn": "cdn-z"}, 0)
    assert compile_filter('a == "' + "x" * MAX_STRING + '"') is not None


@pytest.mark.parametrize(
    "expr,value,holds",
    [
        ("a in [1, 2]", 1.0, True),  # numbers by value
        ("a in [1]", True, False),  # a bool is no number
        ("a in [true]", 1, False),
        ('a in ["1"]', 1, False),
        ("a in [null]", None, True),
        ("a in [1]", [1], False),  # a list never equals an item
        ("a not in [1, 2]", 3, True),
        ("a not in [1, 2]", 2, False),
        ("$key in [1]", {"x": 1}, False),
    ],
)
def test_membership_is_one_lookup_with_the_same_meaning_as_equality(
    expr: str, value: Any, holds: bool
) -> None:
    keep = compile_filter(expr)
    assert keep is not None and keep(None, {"a": value}, 0) is holds


def test_the_worker_thread_only_hands_batches_over() -> None:
    loop = asyncio.new_event_loop()
    taps: dict[str, Any] = {}
    hub = TapHub(taps, ["a"], background=False)
    threads: set[int] = set()

    def costly(k: Any, v: Any, t: int) -> bool:
        threads.add(threading.get_ident())
        return True

    try:
        sub = hub.subscribe("a", costly, Sampler(SampleSpec()), None, loop)
        batch = _batch(5)
        worker = threading.Thread(target=taps["a"], args=("a", batch))
        worker.start()
        worker.join()
        assert threads == set() and sub.accepted == 0
        batch.clear()  # the engine may reuse its list: the hub kept a copy
        assert hub.pump() == 1
        assert threads == {threading.get_ident()} and len(sub.drain(10)) == 5
    finally:
        hub.close()
        loop.close()


def test_batches_the_pump_cannot_reach_are_dropped_oldest_first_and_counted() -> None:
    loop = asyncio.new_event_loop()
    taps: dict[str, Any] = {}
    hub = TapHub(taps, ["a"], max_pending_records=10, background=False)
    try:
        sub = hub.subscribe("a", None, Sampler(SampleSpec()), None, loop)
        for i in range(5):
            taps["a"]("a", _batch(4, 4 * i))  # 20 records queued, 10 allowed
        assert hub.pump() == 2
        assert [v["i"] for _, v, _ in sub.drain(100)] == list(range(12, 20))
        assert sub.dropped == 12 and hub.overflow_records == 12
        assert hub.stats() == {"a": (1, 8, 12)}
    finally:
        hub.close()
        loop.close()


def test_taps_are_bounded_per_client_and_in_total() -> None:
    loop = asyncio.new_event_loop()
    taps: dict[str, Any] = {}
    hub = TapHub(taps, ["a"], max_subscribers=5, max_per_client=2, background=False)
    sample = Sampler(SampleSpec())
    try:
        mine = [hub.subscribe("a", None, sample, None, loop, client="10.0.0.1") for _ in range(2)]
        with pytest.raises(TooManyFromClient, match="per client"):
            hub.subscribe("a", None, sample, None, loop, client="10.0.0.1")
        hub.unsubscribe(mine[0])
        hub.subscribe("a", None, sample, None, loop, client="10.0.0.1")  # a slot came back
        for client in ("10.0.0.2", "10.0.0.2", "10.0.0.3"):
            hub.subscribe("a", None, sample, None, loop, client=client)
        with pytest.raises(TooManySubscribers, match="at most 5"):
            hub.subscribe("a", None, sample, None, loop, client="10.0.0.9")
    finally:
        hub.close()
        loop.close()


@pytest.fixture
def client(live: LiveWorker) -> Iterator[TestClient]:
    hub = TapHub(live.worker.taps, ["events", "big_only"], max_subscribers=64, max_per_client=1)
    handle = WorkerHandle(live.worker, taps=hub)
    with TestClient(
        make_app(handle, CollectorRegistry(auto_describe=False)), base_url=LOOPBACK
    ) as c:
        yield c
    handle.close()


def test_the_service_answers_429_past_the_per_client_limit(client: TestClient) -> None:
    with client.stream("GET", "/streams/clicks/events") as first:
        assert first.status_code == 200
        second = client.get("/streams/clicks/big_only")
        assert second.status_code == 429 and "per client" in second.json()["error"]


def test_the_service_refuses_costly_filters_with_400(client: TestClient) -> None:
    costly = " and ".join(["a == 1"] * 30)
    for path in ("/filters", "/streams/clicks/events"):
        r = client.get(path, params={"filter": costly})
        assert r.status_code == 400 and f"more than {MAX_NODES} terms" in r.json()["error"]


def test_a_reader_that_takes_nothing_is_disconnected() -> None:
    async def scenario() -> tuple[TapHub, bool]:
        taps: dict[str, Any] = {}
        hub = TapHub(taps, ["a"], background=False)
        sub = hub.subscribe("a", None, Sampler(SampleSpec()), None, asyncio.get_running_loop())
        body = stream(hub, sub, {"step": "a"}, None, keepalive_s=0.01)
        started: list[dict[str, Any]] = []
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.append(message)
                return
            await never.wait()  # a client that never reads: the write never completes

        await SSEResponse(body, sub, hub, idle_timeout_s=0.05)({"type": "http"}, receive, send)
        return hub, bool(started)

    hub, started = asyncio.run(scenario())
    assert started and hub.idle_disconnects == 1
    assert hub.stats()["a"][0] == 0 and hub._taps == {}  # its slot and tap are gone
