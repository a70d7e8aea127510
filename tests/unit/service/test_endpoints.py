"""The service's endpoints over a real worker loop (no broker), through Starlette's TestClient."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.service import WorkerHandle, make_app, start_service
from runtime.service.handle import StepInfo, key_candidates
from runtime.service.jsonable import dumps, to_jsonable
from runtime.service.metrics import METRIC_NAMES
from runtime.service.topology import find_panels
from tests.unit.service.conftest import LOOPBACK, LiveWorker, event


@pytest.fixture
def client(live: LiveWorker) -> Iterator[TestClient]:
    handle = WorkerHandle(live.worker)
    with TestClient(
        make_app(handle, CollectorRegistry(auto_describe=False)), base_url=LOOPBACK
    ) as c:
        yield c
    handle.close()


def settle(live: LiveWorker, records: int) -> None:
    """Wait until the worker read ``records`` records and checkpointed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = live.worker.call(lambda w: w.snapshot()).result(5)
        read, dirty = stats.records_read, stats.uncommitted
        if read >= records and not dirty:
            return
        time.sleep(0.02)
    raise AssertionError("the worker did not settle")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels_of(**more: str) -> tuple[tuple[str, str], ...]:
    """A worker's base labels plus ``more``, in the order ``samples`` keys them."""
    return tuple(sorted({"shoal_job": "clicks", "worker": "", **more}.items()))


def sse_events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            out.append((name, data))
    return out


def test_metrics_are_the_worker_counters_on_an_injected_registry(
    live: LiveWorker, client: TestClient
) -> None:
    live.push([event("u1", 5, 0), event("u2", 150, 1000), event("u1", 250, 12_000)])
    live.source.push_raw(b"{not json")  # undecodable: dead-lettered by the source step
    settle(live, 4)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    counters = live.worker.counters()
    for step, c in counters.items():
        labels = labels_of(step=step)
        assert got[("shoal_step_records_in_total", labels)] == c["in"]
        assert got[("shoal_step_records_out_total", labels)] == c["out"]
        assert got[("shoal_step_records_dead_lettered_total", labels)] == c["dead_lettered"]
    assert counters["events"]["dead_lettered"] == 1
    assert got[("shoal_step_records_in_total", labels_of(step="big"))] == 2
    assert got[("shoal_step_state_entries", labels_of(step="totals"))] == 2
    assert got[("shoal_task_watermark_timestamp_seconds", labels_of(task="0"))] == 1_700_000_012.0
    assert got[("shoal_checkpoints_total", labels_of())] >= 1
    assert got[("shoal_worker_responsive", labels_of())] == 1.0
    assert got[("shoal_checkpoint_seconds_count", labels_of())] == live.worker.checkpoints
    assert got[("shoal_event_to_sink_seconds_count", labels_of())] >= 1
    assert {name for name, _ in got} <= METRIC_NAMES
    # the global registry knows nothing of this worker
    assert (
        REGISTRY.get_sample_value("shoal_records_read_total", {"shoal_job": "clicks", "worker": ""})
        is None
    )


def test_health_turns_503_when_the_worker_stops_answering(live: LiveWorker) -> None:
    # long enough for a loaded machine to answer the first call
    handle = WorkerHandle(live.worker, timeout_s=1.5)
    client = TestClient(make_app(handle, CollectorRegistry(auto_describe=False)), base_url=LOOPBACK)
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["tasks"] == [{"task": 0, "watermark_ms": None, "partitions": ["events[0]"]}]
    live.stop()  # the loop no longer serves calls
    time.sleep(0.3)
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["problems"] == ["the worker did not answer within 1.5s"]
    metrics = samples(client.get("/metrics").text)
    assert metrics[("shoal_worker_responsive", labels_of())] == 0.0


def test_state_of_process_and_window_steps(live: LiveWorker, client: TestClient) -> None:
    live.push([event("u1", 5, 0), event("u1", 7, 1_000), event("u2", 1, 2_000)])
    settle(live, 3)
    r = client.get("/state/clicks/totals/u1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "process" and body["key"] == "u1"
    [entry] = body["entries"]
    assert entry["name"] == "total" and entry["value"] == 12 and entry["task"] == 0
    r = client.get("/state/clicks/counts_10s/u1")
    assert r.json()["entries"] == [
        {
            "task": 0,
            "window_start_ms": 1_700_000_000_000,
            "window_end_ms": 1_700_000_010_000,
            "value": 2,
        }
    ]
    assert client.get("/state/clicks/totals/u3").status_code == 404
    r = client.get("/state/clicks/big_only/u1")
    assert r.status_code == 404 and r.json()["stateful_steps"] == ["totals", "counts_10s"]
    r = client.get("/state/other/totals/u1")
    assert r.status_code == 404 and "this worker runs 'clicks'" in r.json()["error"]
    assert client.get("/state/clicks/nope/u1").json()["steps"][0] == "events"


def test_key_candidates() -> None:
    assert key_candidates("u-1") == ["u-1"]
    assert key_candidates("t1|tv|DE") == ["t1|tv|DE", ("t1", "tv", "DE")]
    assert key_candidates("42") == ["42", 42]


def test_sse_stream_filters_samples_and_limits(live: LiveWorker, client: TestClient) -> None:
    url = "/streams/clicks/events?filter=amount >= 100&sample=1/2&limit=3"
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        live.push([event(f"u{i}", 50 + 10 * i, i) for i in range(20)])
        text = "".join(r.iter_text())
    events = sse_events(text)
    assert events[0] == (
        "open",
        {
            "job": "clicks",
            "step": "events",
            "filter": "amount >= 100",
            "sample": "1/2",
            "limit": 3,
            "replayed": 0,
        },
    )
    records = [d for n, d in events if n == "message"]
    # amounts 100, 110, 120, ...: one in two of them, three in all
    assert [d["value"]["amount"] for d in records] == [100, 120, 140]
    assert records[0] == {
        "key": None,
        "value": event("u5", 100, 5),
        "event_time_ms": 1_700_000_000_005,
    }
    assert events[-1] == ("end", {"sent": 3, "dropped": 0})
    # the subscription is gone with the stream
    deadline = time.monotonic() + 5
    while live.worker.taps and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.worker.taps == {}


def test_sse_keyed_records_and_bad_parameters(live: LiveWorker, client: TestClient) -> None:
    with client.stream("GET", '/streams/clicks/totals?filter=$key == "u2"&limit=1') as r:
        live.push([event("u1", 1, 0), event("u2", 3, 1)])
        events = sse_events("".join(r.iter_text()))
    assert [d for n, d in events if n == "message"] == [
        {"key": "u2", "value": {"user": "u2", "total": 3}, "event_time_ms": 1_700_000_000_001}
    ]
    for query, says in [
        ("filter=amount >", "column"),
        ("sample=2", "sample"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("recent=-1", "recent"),
    ]:
        r = client.get(f"/streams/clicks/events?{query}")
        assert r.status_code == 400 and says in r.json()["error"], (query, r.text)
    assert client.get("/filters", params={"filter": "a in [1, 2]"}).json()["ok"] is True
    r = client.get("/filters", params={"filter": "a in [1, 2"})
    assert r.status_code == 400 and r.json()["column"] == 11
    r = client.get("/streams/clicks/nope")
    assert r.status_code == 404 and r.json()["error"] == "unknown step 'nope' in job 'clicks'"
    assert client.get("/streams/other/events").status_code == 404
    assert client.get("/nothing-here").json()["error"] == "no such endpoint '/nothing-here'"


def test_topology_and_the_page(live: LiveWorker, client: TestClient) -> None:
    live.push([event("u1", 500, 0)])
    settle(live, 1)
    topo = client.get("/topology").json()
    assert topo["job"] == "clicks" and topo["records_read"] == 1 and topo["tasks"] == 1
    steps = {s["name"]: s for s in topo["steps"]}
    assert steps["totals"]["parents"] == ["by_user"] and steps["totals"]["stateful"] is True
    assert steps["big"]["in"] == 1 and steps["big"]["kind"] == "sink"
    assert topo["panels"] == {
        "qoe": None, "alerts": None, "sessions": None, "scores": None, "attribution": None
    }
    page = client.get("/")
    assert page.status_code == 200 and "EventSource" not in page.text  # the HTML only
    assert '<script src="/static/app.js">' in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "new EventSource(" in js.text
    assert js.headers["content-type"].startswith("text/javascript")
    assert "http" not in client.get("/static/style.css").text  # no CDN, no remote fonts
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404


def test_panels_are_found_by_sink_schema() -> None:
    steps = [
        StepInfo("events", "source", (), "PlaybackEvent"),
        StepInfo("scores", "process", ("events",), None),
        StepInfo("only", "filter", ("scores",), None),
        StepInfo("out", "sink", ("only",), "PersonalizationScore"),
        StepInfo("s", "sink", ("events",), "SessionSummary"),
        StepInfo("ctr", "sink", ("events",), "AttributionMetric"),
    ]
    assert find_panels(steps) == {
        "qoe": None,
        "alerts": None,
        "sessions": {"step": "s"},
        "scores": {"step": "out", "state_step": "scores"},
        "attribution": {"step": "ctr"},
    }


def test_json_for_browsers() -> None:
    assert to_jsonable({("a", 1): {1, 2}, "f": float("nan"), "b": b"x\xff"}) == {
        "a|1": [1, 2],
        "f": None,
        "b": "x\ufffd",
    }
    assert dumps({"x": float("inf")}) == '{"x":null}'
    assert to_jsonable(list(range(1500)))[-1] == "... 500 more items"

    class Acc:
        def __init__(self) -> None:
            self.n = 3
            self._hidden = 1

    assert to_jsonable(Acc()) == {"n": 3}


def test_a_closed_connection_unsubscribes(live: LiveWorker) -> None:
    service = start_service(live.worker, "127.0.0.1", 0, keepalive_s=0.2)
    try:
        assert service.url.startswith("http://127.0.0.1:")
        with httpx2.stream("GET", f"{service.url}/streams/clicks/big", timeout=10) as r:
            lines = r.iter_lines()
            assert next(lines) == "retry: 3000"
            assert live.worker.taps.keys() == {"big"}
        deadline = time.monotonic() + 5
        while live.worker.taps and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.worker.taps == {}
        assert httpx2.get(f"{service.url}/health", timeout=10).status_code == 200
    finally:
        service.stop()
