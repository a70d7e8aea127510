"""The webhook sink against a real HTTP server on loopback that fails and stalls on purpose.

The server (stdlib ``http.server`` in a thread on 127.0.0.1, port 0) answers each
request with the next scripted action, records what it received and when, and
verifies the HMAC signature itself. Timeouts and backoffs are tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors.webhook import WebhookConfig, WebhookSink
from jobs.qoe.alerts import SINK, SOURCE, build_alerts
from jobs.qoe.alerts_rules import parse_rules
from runtime.api.errors import ConnectorError
from runtime.testing import TestDriver

SECRET = b"test-shared-secret"


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    def signature_ok(self) -> bool:
        stamp = self.headers["X-Shoal-Timestamp"]
        want = hmac.new(SECRET, stamp.encode() + b"." + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers["X-Shoal-Signature"], "v1=" + want)


class ScriptedServer:
    """Answers the n-th request with ``script[n]`` (then 200): a status, or 'stall'."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.received: list[Received] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.lock:
                    owner.received.append(Received(time.monotonic(), dict(self.headers), body))
                    action = owner.script.pop(0) if owner.script else "200"
                if action == "stall":
                    owner.release.wait(5.0)  # past the client's timeout
                status, _, retry_after = action.partition("+")
                try:
                    self.send_response(200 if action == "stall" else int(status))
                    if retry_after:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up on a stalled request

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins the handlers
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/qoe"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def make_sink() -> Iterator[Any]:
    sinks: list[WebhookSink] = []

    def make(url: str, **kw: Any) -> WebhookSink:
        args = {"timeout_s": 0.3, "max_attempts": 4, "backoff_initial_s": 0.02,
                "backoff_multiplier": 2.0, "backoff_max_s": 1.0, "jitter": 0.2, **kw}  # fmt: skip
        sink = WebhookSink(WebhookConfig(url, SECRET, **args))
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def alert(alert_id: str, state: str = "fired") -> dict[str, Any]:
    return {"alert_id": alert_id, "rule": "r", "state": state, "group": {"cdn": "cdn-a"},
            "metric": "rebuffer_ratio", "value": 0.05, "threshold": 0.02,
            "window_end_ms": 1, "incident_started_ms": 1, "emitted_ms": 1}  # fmt: skip


def test_retries_5xx_and_timeouts_with_one_key_and_growing_backoff(make_sink: Any) -> None:
    with ScriptedServer(["500", "stall", "503", "200"]) as server:
        sink = make_sink(server.url)
        sink.write([(None, alert("incident-1"), 1)])
        started = time.monotonic()
        sink.flush()
        took = time.monotonic() - started
    got = server.received
    assert len(got) == 4 and sink.delivered == 1
    assert {r.headers["Idempotency-Key"] for r in got} == {"incident-1"}
    assert len({r.body for r in got}) == 1  # the same bytes on every attempt
    assert all(r.signature_ok() for r in got)
    assert all(r.headers["Content-Type"] == "application/json" for r in got)
    assert server.bodies()[0] == alert("incident-1")
    # waits: ~0.02 after the 500, then the 0.3 s timeout plus ~0.04, then ~0.08
    gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
    assert 0.3 <= gaps[1] < 1.5
    assert gaps[0] < gaps[2] and gaps[0] >= 0.016 and gaps[2] >= 0.064
    assert took < 3.0


def test_gives_up_after_the_budget_with_a_clear_error(make_sink: Any) -> None:
    with ScriptedServer(["500"] * 3) as server:
        sink = make_sink(server.url, max_attempts=3)
        sink.write([(None, alert("a"), 1), (None, alert("b"), 2)])
        with pytest.raises(ConnectorError, match=r"'a' not delivered after 3 attempts.*HTTP 500"):
            sink.flush()
        assert [r.headers["Idempotency-Key"] for r in server.received] == ["a", "a", "a"]
        gaps = [b.at - a.at for a, b in zip(server.received, server.received[1:], strict=False)]
        assert gaps[0] < gaps[1]
        # nothing was dropped: a later flush delivers both, in order, with the same keys
        sink.flush()
    keys = [r.headers["Idempotency-Key"] for r in server.received]
    assert keys == ["a", "a", "a", "a", "b"] and sink.delivered == 2


def test_timeouts_exhaust_the_budget(make_sink: Any) -> None:
    with ScriptedServer(["stall", "stall"]) as server:
        sink = make_sink(server.url, timeout_s=0.1, max_attempts=2)
        sink.write([(None, alert("slow"), 1)])
        started = time.monotonic()
        with pytest.raises(ConnectorError, match="Timeout"):
            sink.flush()
        assert 0.2 <= time.monotonic() - started < 2.0
        assert len(server.received) == 2


def test_client_errors_are_not_retried_and_retry_after_is_honoured(make_sink: Any) -> None:
    with ScriptedServer(["400"]) as server:
        sink = make_sink(server.url)
        sink.write([(None, alert("bad"), 1)])
        with pytest.raises(ConnectorError, match="HTTP 400"):
            sink.flush()
        assert len(server.received) == 1
    with ScriptedServer(["429+0.25", "200"]) as server:
        sink = make_sink(server.url)
        sink.write([(None, alert("busy"), 1)])
        sink.flush()
        assert len(server.received) == 2
        assert server.received[1].at - server.received[0].at >= 0.25


def test_alert_job_output_posted_end_to_end(make_sink: Any) -> None:
    t0, minute = 1_735_689_600_000, 60_000
    rules = parse_rules("r: rebuffer_ratio > 0.02 for 2 windows group by cdn resolve < 0.01")
    driver = TestDriver(build_alerts(rules), start_ms=t0 + 86_400_000)
    try:
        for k, ratio in enumerate([0.05, 0.05, 0.05, 0.0, 0.0]):
            driver.send(SOURCE, {
                "window_start_ms": t0 + k * minute, "window_end_ms": t0 + (k + 1) * minute,
                "window_kind": "tumbling_1m", "group_kind": "cdn", "title_id": None,
                "device_type": None, "country": None, "cdn": "cdn-a", "plays_started": 100,
                "startup_p50_ms": None, "startup_p90_ms": None, "startup_p99_ms": None,
                "watch_time_ms": 1000, "rebuffer_time_ms": 0, "rebuffer_count": 0,
                "rebuffer_ratio": ratio, "rebuffers_per_hour": 0.0, "avg_bitrate_kbps": None,
                "bitrate_switches": 0, "play_attempts": 0, "play_failures": 0,
                "failure_rate": 0.0, "concurrent_streams": 1,
            })  # fmt: skip
        driver.advance_watermark(t0 + 10 * minute)
        records = driver.records(SINK)
    finally:
        driver.close()
    with ScriptedServer(["502"]) as server:
        sink = make_sink(server.url)
        sink.write(records)
        sink.flush()
    posted = server.bodies()
    assert [p["state"] for p in posted] == ["fired", "fired", "resolved"]  # the 502 was retried
    assert posted[1] == posted[0] and posted[2]["alert_id"] == posted[0]["alert_id"]
    assert {r.headers["Idempotency-Key"] for r in server.received} == {posted[0]["alert_id"]}
    assert all(r.signature_ok() for r in server.received)
