"""``/status``: a worker's own status and the command for the whole job (no broker)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator

import pytest
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.service import WorkerHandle, make_app
from runtime.service.status import status_command
from tests.unit.service.conftest import LOOPBACK, T0, LiveWorker, event

TOKEN = "s3cret-token-of-forty-bytes-0123456789ab"


def settle(live: LiveWorker, records: int) -> None:
    """Wait until the worker read ``records`` records and checkpointed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = live.worker.call(lambda w: w.snapshot()).result(5)
        if stats.records_read >= records and not stats.uncommitted and stats.checkpoints:
            return
        time.sleep(0.02)
    raise AssertionError("the worker did not settle")


@pytest.fixture
def handle(live: LiveWorker) -> Iterator[WorkerHandle]:
    h = WorkerHandle(live.worker, worker_id="w3", group="clicks-v2", max_age_s=0.0)
    yield h
    h.close()


def test_status_is_the_workers_snapshot_with_its_job_and_group(
    live: LiveWorker, handle: WorkerHandle
) -> None:
    sent = [event("u1", 5, 0), event("u2", 150, 1000), event("u1", 250, 12_000)]
    live.push(sent)
    live.source.push_raw(b"{not json")  # dead-lettered by the source step
    settle(live, len(sent) + 1)
    client = TestClient(make_app(handle, CollectorRegistry(auto_describe=False)), base_url=LOOPBACK)
    before_ms = time.time_ns() // 1_000_000
    r = client.get("/status")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    st = r.json()
    assert (st["job"], st["group"], st["worker"]) == ("clicks", "clicks-v2", "w3")
    assert st["responsive"] is True and st["failed"] is False
    assert st["records_read"] == len(sent) + 1
    assert st["dead_lettered"] == 1
    assert st["late"] == sum(c["late"] for c in live.worker.counters().values())
    assert st["checkpoints"] >= 1 and st["last_checkpoint_age_s"] is not None
    assert 0 <= st["last_checkpoint_age_s"] <= (time.time_ns() // 1_000_000 - T0) / 1000
    assert st["time_ms"] >= before_ms
    # one task reads events[0]; its watermark is the latest event time (no delay)
    latest = max(e["t"] for e in sent)
    assert st["tasks"] == [{"task": 0, "watermark_ms": latest, "partitions": ["events[0]"]}]
    assert st["partitions"] == [{"topic": "events", "partition": 0, "task": 0, "lag": None}]
    # each user holds a running total; counts_10s keeps the windows the watermark has
    # not closed yet (10 s windows, no allowed lateness)
    wm = max(e["t"] for e in sent)
    users = {e["user"] for e in sent}
    starts = {(e["user"], (e["t"] - T0) // 10_000 * 10_000) for e in sent}
    open_windows = {(u, s) for u, s in starts if T0 + s + 10_000 > wm}
    assert st["state_entries"] == {"counts_10s": len(open_windows), "totals": len(users)}
    assert st["whole_job"] == {
        "command": "shoal status clicks --group clicks-v2",
        "json": "shoal status clicks --group clicks-v2 --json",
        "list": "shoal jobs",
    }


def test_the_group_defaults_to_the_job_name(live: LiveWorker) -> None:
    client = TestClient(
        make_app(WorkerHandle(live.worker), CollectorRegistry(auto_describe=False)),
        base_url=LOOPBACK,
    )
    st = client.get("/status").json()
    assert st["group"] == "clicks" and st["worker"] is None
    assert st["whole_job"]["command"] == "shoal status clicks"


@pytest.mark.parametrize(
    "job,group",
    [("clicks", "clicks"), ("clicks", "other"), ("my job", "g;rm -rf x"), ("a'b", "$(x)")],
)
def test_the_command_line_quotes_what_a_shell_would_split(job: str, group: str) -> None:
    want = ["shoal", "status", job] + (["--group", group] if group != job else [])
    assert shlex.split(status_command(job, group)) == want


def test_status_needs_the_token_or_a_loopback_host(live: LiveWorker) -> None:
    guarded = TestClient(
        make_app(WorkerHandle(live.worker), CollectorRegistry(auto_describe=False), TOKEN)
    )
    r = guarded.get("/status")
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    ok = guarded.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["job"] == "clicks"
    open_app = make_app(WorkerHandle(live.worker), CollectorRegistry(auto_describe=False))
    assert TestClient(open_app, base_url="http://example.org").get("/status").status_code == 403
    assert TestClient(open_app, base_url=LOOPBACK).get("/status").status_code == 200


def test_the_page_links_the_status(live: LiveWorker) -> None:
    client = TestClient(
        make_app(WorkerHandle(live.worker), CollectorRegistry(auto_describe=False)),
        base_url=LOOPBACK,
    )
    page = client.get("/").text
    assert '<a href="/status">' in page and 'id="panel-status"' in page
    assert 'id="status-command"' in page
    js = client.get("/static/app.js").text
    assert 'getJSON("/status")' in js and "whole_job.command" in js
    assert "/status" in client.get("/nothing-here").json()["endpoints"]
