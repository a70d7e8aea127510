"""The webhook sink against real HTTP servers on loopback that fail, stall and trickle.

Servers are threads of this process on 127.0.0.1, port 0: a scripted ``http.server``
that answers each request with the next scripted action and checks every delivery's
Standard Webhooks signature with :func:`connectors.webhook.verify`; raw TCP servers
that trickle an answer one byte at a time or send an endless one. Waits between
attempts are recorded, not slept, so no assertion depends on the machine's speed.
The last test runs the alert job on the real broker with a receiver that stays down.
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from connectors.retry import Backoff
from connectors.webhook import WebhookConfig, WebhookSink, verify
from jobs.qoe.alerts import SINK, SOURCE, build_alerts
from jobs.qoe.alerts_rules import parse_rules
from runtime.api.bindings import Bindings
from runtime.composition import kafka_runner
from runtime.engine.worker import WorkerOptions
from runtime.runner import RunConfig
from runtime.testing import TestDriver
from tests.integration.helpers import decoded, read_all, run_until_quiet, unique

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"test-shared-secret-of-32-bytes!!").decode()
T0, MINUTE = 1_735_689_600_000, 60_000


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def verified(self) -> Any:
        return verify(self.body, self.headers, SECRET)


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
                    owner.received.append(Received(dict(self.headers), body))
                    action = owner.script.pop(0) if owner.script else "200"
                if action == "stall":
                    owner.release.wait(10.0)  # past the client's deadline
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

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class RawServer:
    """A TCP server that reads a request, then answers with ``answer`` in pieces.

    ``piece`` bytes are sent, then it waits ``pause_s``; it notes whether each
    connection got the whole answer out or found it closed by the client first.
    """

    def __init__(self, answer: bytes, piece: int, pause_s: float) -> None:
        self.connections = 0
        self.cut = 0
        self.finished = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                with owner.lock:
                    owner.connections += 1
                _read_request(sock)
                try:
                    for at in range(0, len(answer), piece):
                        if owner.stop.is_set():
                            return
                        sock.sendall(answer[at : at + piece])
                        if pause_s:
                            time.sleep(pause_s)
                except OSError:
                    with owner.lock:
                        owner.cut += 1
                    return
                with owner.lock:
                    owner.finished += 1

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/qoe"

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _read_request(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return
        body += chunk


class Waits(list[float]):
    """Records the waits between attempts instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_sink() -> Iterator[Any]:
    sinks: list[WebhookSink] = []

    def make(url: str, attempts: int = 4, waits: Waits | None = None, **kw: Any) -> WebhookSink:
        backoff = Backoff(max_attempts=attempts, initial_s=0.02, multiplier=2.0, max_s=1.0)
        args = {"deadline_s": 0.5, "backoff": backoff, **kw}
        sink = WebhookSink(
            WebhookConfig(url, _key(), **args), sleep=Waits() if waits is None else waits
        )
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def _key() -> bytes:
    return base64.b64decode(SECRET.removeprefix("whsec_"))


def alert(alert_id: str, state: str = "fired") -> dict[str, Any]:
    return {"alert_id": alert_id, "rule": "r", "state": state, "group": {"cdn": "cdn-a"},
            "metric": "rebuffer_ratio", "value": 0.05, "threshold": 0.02,
            "window_end_ms": 1, "incident_started_ms": 1, "emitted_ms": 1}  # fmt: skip


def test_retries_5xx_and_stalls_with_one_id_and_growing_backoff(make_sink: Any) -> None:
    waits = Waits()
    with ScriptedServer(["500", "stall", "503", "200"]) as server:
        sink = make_sink(server.url, waits=waits)
        sink.write([(None, alert("incident-1"), 1)])
        sink.flush()
    got = server.received
    assert len(got) == 4 and sink.delivered == 1 and sink.attempts == 4
    assert sink.drain_undelivered() == []
    assert server.ids() == ["incident-1.fired"] * 4
    assert len({r.body for r in got}) == 1  # the same bytes on every attempt
    assert all(r.verified() == alert("incident-1") for r in got)
    # what a receiver using the convention's own library sees
    assert Webhook(SECRET).verify(got[0].body, got[0].headers) == alert("incident-1")
    assert all(r.headers["Content-Type"] == "application/json" for r in got)
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]


def test_receiver_that_stays_down_is_dead_lettered_and_the_flush_ends(make_sink: Any) -> None:
    with ScriptedServer(["500"] * 3) as server:  # then 200: the receiver comes back
        sink = make_sink(server.url, attempts=3)
        records = [(None, alert("a"), 1), (None, alert("b"), 2), (None, alert("a", "resolved"), 3)]
        sink.write(records)
        sink.flush()  # returns: nothing raised, nothing left queued
        assert server.ids() == ["a.fired"] * 3  # the rest: the receiver counts as down
        gone = sink.drain_undelivered()
        assert [u.key for u in gone] == [b"a.fired", b"b.fired", b"a.resolved"]
        assert [u.value for u in gone] == [v for _, v, _ in records]  # kept for a replay
        assert "not delivered after 3 attempts; last error: HTTP 500" in gone[0].error_message
        assert "receiver down: HTTP 500" in gone[1].error_message
        assert sink.delivered + sink.dead_lettered == len(records) and sink.dead_lettered == 3
        # the next flush tries again
        sink.write([(None, alert("c"), 4)])
        sink.flush()
    assert server.ids() == ["a.fired"] * 3 + ["c.fired"] and sink.delivered == 1


@pytest.mark.parametrize("phase", ["status line", "body"])
def test_a_trickling_receiver_is_cut_at_the_attempts_deadline(make_sink: Any, phase: str) -> None:
    pad = b"x" * 400
    if phase == "status line":
        answer = b"HTTP/1.1 200 OK\r\nX-Pad: " + pad + b"\r\nContent-Length: 0\r\n\r\n"
    else:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + pad
    # one byte every 20 ms: the whole answer would take more than 8 s per attempt, and
    # every single read returns well within any per-read timeout
    with RawServer(answer, piece=1, pause_s=0.02) as server:
        sink = make_sink(server.url, attempts=2, deadline_s=0.3)
        sink.write([(None, alert("slow"), 1)])
        sink.flush()
        gone = sink.drain_undelivered()
        # each attempt ended by its deadline: the server found the connection closed
        # before it finished sending (it stops at once when it does)
        deadline = time.monotonic() + 30
        while server.cut < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.connections == 2 and server.cut == 2 and server.finished == 0
    assert sink.delivered == 0 and sink.attempts == 2
    assert [u.key for u in gone] == [b"slow.fired"] and "ReadTimeout" in gone[0].error_message


def test_only_the_first_64_kb_of_an_answer_are_read(make_sink: Any) -> None:
    size = 50 * 1024 * 1024
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()
    with RawServer(head + b"z" * size, piece=256 * 1024, pause_s=0.0) as server:
        sink = make_sink(server.url, attempts=1, deadline_s=30.0)
        sink.write([(None, alert("big"), 1)])
        sink.flush()
        deadline = time.monotonic() + 30
        while server.cut < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.connections == 1 and server.cut == 1 and server.finished == 0
    assert sink.delivered == 1 and sink.drain_undelivered() == []


def test_client_errors_are_dead_lettered_at_once_and_retry_after_is_honoured(
    make_sink: Any,
) -> None:
    with ScriptedServer(["400"]) as server:
        sink = make_sink(server.url)
        sink.write([(None, alert("bad"), 1)])
        sink.flush()
        assert len(server.received) == 1
    gone = sink.drain_undelivered()
    assert [u.key for u in gone] == [b"bad.fired"] and "HTTP 400" in gone[0].error_message
    waits = Waits()
    with ScriptedServer(["429+0.75", "200"]) as server:
        sink = make_sink(server.url, waits=waits)
        sink.write([(None, alert("busy"), 1)])
        sink.flush()
        assert len(server.received) == 2 and sink.delivered == 1
    assert waits == [0.75]  # the receiver asked for more than the backoff's 0.02


def _metric(k: int, cdn: str, ratio: float) -> dict[str, Any]:
    return {
        "window_start_ms": T0 + k * MINUTE, "window_end_ms": T0 + (k + 1) * MINUTE,
        "window_kind": "tumbling_1m", "group_kind": "cdn", "title_id": None,
        "device_type": None, "country": None, "cdn": cdn, "plays_started": 100,
        "startup_p50_ms": None, "startup_p90_ms": None, "startup_p99_ms": None,
        "watch_time_ms": 1000, "rebuffer_time_ms": 0, "rebuffer_count": 0,
        "rebuffer_ratio": ratio, "rebuffers_per_hour": 0.0, "avg_bitrate_kbps": None,
        "bitrate_switches": 0, "play_attempts": 0, "play_failures": 0,
        "failure_rate": 0.0, "concurrent_streams": 1,
    }  # fmt: skip


RULE = "r: rebuffer_ratio > 0.02 for 2 windows group by cdn resolve < 0.01"
RATIOS = {"cdn-a": [0.05, 0.05, 0.05, 0.0, 0.0, 0.0], "cdn-b": [0.0, 0.05, 0.05, 0.005, 0.0, 0.0]}


def _reference_states(ratios: list[float], last_evaluated: int) -> list[tuple[str, int]]:
    """Brute force for RULE: (state, window end) of each alert of one CDN, in order."""
    out, firing, streak, calm = [], False, 0, 0
    for k, ratio in enumerate(ratios[: last_evaluated + 1]):
        streak = streak + 1 if ratio > 0.02 else 0
        calm = calm + 1 if ratio < 0.01 else 0
        if not firing and streak >= 2:
            firing = True
            out.append(("fired", T0 + (k + 1) * MINUTE))
        elif firing and calm >= 1:
            firing = False
            out.append(("resolved", T0 + (k + 1) * MINUTE))
    return out


def test_the_alert_job_on_the_broker_dead_letters_what_a_down_receiver_misses(
    kafka: str,
) -> None:
    """Every alert goes to the dead-letter topic with its webhook-id; the job checkpoints
    on; a replay of the dead letters to a receiver that is back delivers each once."""
    metrics, dead = unique("qoe-metrics"), unique("dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(metrics, 1)])
    codec = codec_factory()("QoeMetric")
    producer = KafkaSink(kafka)
    n = len(RATIOS["cdn-a"])
    for k in range(n):
        for cdn, ratios in RATIOS.items():
            producer.write(metrics, cdn.encode(), codec.encode(_metric(k, cdn, ratios[k])), None)
    producer.flush()
    # the watermark reaches the end of window n-1 only: windows 0..n-1 are evaluated
    want = {
        (cdn, state, end)
        for cdn, ratios in RATIOS.items()
        for state, end in _reference_states(ratios, n - 1)
    }
    assert {s for _, s, _ in want} == {"fired", "resolved"} and len(want) == 4

    job = build_alerts(parse_rules(RULE), name=f"alerts-{uuid.uuid4().hex[:6]}")
    bindings = Bindings.for_job(job, [f"{SOURCE}={metrics}", f"dead-letters={dead}"])
    with ScriptedServer(["503"] * 1000) as down:
        backoff = Backoff(max_attempts=3, initial_s=0.01, max_s=0.05)
        sink = WebhookSink(WebhookConfig(down.url, _key(), deadline_s=1.0, backoff=backoff))
        config = RunConfig(
            bootstrap=kafka,
            state="memory",
            state_dir=Path(tempfile.mkdtemp(prefix="shoal-state-")),
            group=job.name,
            worker_id="w0",
            options=WorkerOptions(batch_size=100, checkpoint_interval_ms=200),
        )
        runner = kafka_runner(job, bindings, config, external={SINK: sink})
        worker = runner.worker
        assert worker is not None
        try:
            run_until_quiet(runner, idle_s=4.0, timeout_s=120.0)
        finally:
            runner.close()
        posted = len(down.received)
    assert worker.checkpoints >= 1 and worker.counters()[SOURCE]["in"] == 2 * n
    emitted = worker.counters()[SINK]["in"]
    assert emitted == len(want) and sink.delivered == 0 and sink.dead_lettered == emitted
    assert 3 <= posted <= 3 * emitted  # each checkpoint tried one full budget at most

    letters = decoded(read_all(kafka, dead), "DeadLetter")
    assert len(letters) == emitted
    alerts = [json.loads(d["original_value"]) for d in letters]
    assert {(a["group"]["cdn"], a["state"], a["window_end_ms"]) for a in alerts} == want
    for d, a in zip(letters, alerts, strict=True):
        assert d["step"] == SINK and d["job"] == job.name
        assert d["original_key"] == f"{a['alert_id']}.{a['state']}".encode()
        assert "HTTP 503" in d["error_message"]

    # replay: the dead letters, posted again with their ids, reach a receiver that is back
    with ScriptedServer([]) as back:
        replay = WebhookSink(WebhookConfig(back.url, _key(), deadline_s=5.0))
        try:
            replay.write([(None, a, 0) for a in alerts])
            replay.flush()
        finally:
            replay.close()
    assert replay.delivered == emitted
    assert sorted(back.ids()) == sorted(d["original_key"].decode() for d in letters)
    assert [r.verified() for r in back.received] == alerts


def test_alert_job_output_posted_end_to_end(make_sink: Any) -> None:
    rules = parse_rules("r: rebuffer_ratio > 0.02 for 2 windows group by cdn resolve < 0.01")
    driver = TestDriver(build_alerts(rules), start_ms=T0 + 86_400_000)
    try:
        for k, ratio in enumerate([0.05, 0.05, 0.05, 0.0, 0.0]):
            driver.send(SOURCE, _metric(k, "cdn-a", ratio))
        driver.advance_watermark(T0 + 10 * MINUTE)
        records = driver.records(SINK)
    finally:
        driver.close()
    with ScriptedServer(["502"]) as server:
        sink = make_sink(server.url)
        sink.write(records)
        sink.flush()
    posted = [r.verified() for r in server.received]
    assert [p["state"] for p in posted] == ["fired", "fired", "resolved"]  # the 502 was retried
    assert posted[1] == posted[0] and posted[2]["alert_id"] == posted[0]["alert_id"]
    first = posted[0]["alert_id"]
    assert server.ids() == [f"{first}.fired", f"{first}.fired", f"{first}.resolved"]


def test_shoal_run_startup_line_hides_the_binding_secrets(kafka: str) -> None:
    """The real command on the broker: its whole output holds none of the secrets."""
    import subprocess
    import sys

    metrics = unique("qoe-metrics")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(metrics, 1)])
    password, token = "pw-Lm40sQa", "tok-Rt93kWe"
    hook = (
        f"webhook+http://user:{password}@127.0.0.1:9/hook?secret={SECRET}&token={token}"
        "&max_attempts=1"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "run", "jobs.qoe.alerts:alerts_job",
         "--bootstrap", kafka, "--group", unique("alerts"), "--state", "memory",
         "--bind", f"{SOURCE}={metrics}", "--bind", f"{SINK}={hook}",
         "--bind", f"dead-letters={unique('dead')}", "--seconds", "1", "--quiet"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert f"running qoe_alerts (exactly_once, memory state) on {kafka}" in text
    assert f"{SINK}->webhook+http://user:***@127.0.0.1:9/hook?secret=***&token=***" in text
    for secret in (password, token, SECRET[6:]):
        assert secret not in text
