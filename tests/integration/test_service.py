"""The worker's HTTP service on a real job and the real broker, read by a real HTTP client.

``jobs.user_counts`` runs in a ``KafkaRunner`` loop on a thread with the service on a
free port, as ``shoal run --http 127.0.0.1:0`` runs it. Generated traffic is produced
while it runs; /metrics, an SSE tap with a filter, /state and /health are read over
HTTP with httpx2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.user_counts import job as user_counts
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.composition import kafka_runner
from runtime.engine.worker import Worker, WorkerOptions
from runtime.generator import GeneratorConfig
from runtime.runner import RunConfig
from runtime.service import ServiceHandle, start_service
from tests.integration.helpers import produce_generated, unique

MINUTE = 60_000


def recent_start_ms() -> int:
    """An event-time origin a few hours back: recent enough for the broker's retention."""
    return (time.time_ns() // 1_000_000 - 3 * 3_600_000) // MINUTE * MINUTE


class ServedJob:
    """A job in a runner loop on a thread, with its HTTP service on a free port.

    Args:
        kafka: bootstrap address.
        job: the job.
        binds: ``NAME=TOPIC`` bindings (unique topics per test).
        tmp: folder for state.
        idle_timeout_s: a tap whose reader takes nothing this long is disconnected.
    """

    def __init__(
        self, kafka: str, job: Job, binds: list[str], tmp: Path, idle_timeout_s: float = 30.0
    ) -> None:
        self.job = job
        config = RunConfig(
            bootstrap=kafka,
            state="memory",
            state_dir=tmp,
            group=f"{job.name}-{uuid.uuid4().hex[:6]}",
            worker_id="w0",
            options=WorkerOptions(batch_size=2000, checkpoint_interval_ms=300),
        )
        self.runner = kafka_runner(job, Bindings.for_job(job, binds), config)
        assert self.runner.worker is not None
        self.worker: Worker = self.runner.worker
        self.service: ServiceHandle = start_service(
            self.runner, "127.0.0.1", 0, keepalive_s=1.0, idle_timeout_s=idle_timeout_s
        )
        self.url = self.service.url
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="job-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run(should_stop=self._stop.is_set)
        except BaseException as exc:  # surfaced by the tests through .check()
            self.error = exc

    def check(self) -> None:
        """Fail the test when the job loop died."""
        assert self.error is None, f"the job loop failed: {self.error!r}"
        assert self.thread.is_alive(), "the job loop stopped"

    def on_worker(self, fn: Callable[[Worker], Any]) -> Any:
        """Run ``fn`` on the worker thread (between batches) and return its result."""
        self.check()
        return self.worker.call(fn).result(timeout=30)

    def wait_read(self, records: int, timeout_s: float = 90.0) -> None:
        """Wait until the worker has read ``records`` input records and checkpointed them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            read, lag = self.on_worker(lambda w: (w.records_read, sum(w.lag.values())))
            if read >= records and lag == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"the job read {read} of {records} records in {timeout_s}s")

    def close(self) -> None:
        """Stop the service, then the job loop."""
        self.service.stop()
        self._stop.set()
        self.thread.join(60)


#: The base labels of the served worker's series.
BASE = (("shoal_job", "user_counts"), ("worker", "w0"))


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    text = httpx2.get(f"{url}/metrics", timeout=30).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def settled_scrape(sj: ServedJob) -> tuple[dict[Any, float], dict[str, dict[str, int]]]:
    """/metrics and the worker's own step counters, taken while the counters stood still
    (the worker may fire a window between the two reads)."""
    deadline = time.monotonic() + 30
    while True:
        before = sj.on_worker(lambda w: w.counters())
        samples = scrape(sj.url)
        after = sj.on_worker(lambda w: w.counters())
        if before == after or time.monotonic() > deadline:
            return samples, after
        time.sleep(0.2)


def step_values(samples: dict[Any, float], name: str, job: str) -> dict[str, float]:
    """Per-step values of one metric."""
    return {
        dict(labels)["step"]: v
        for (n, labels), v in samples.items()
        if n == name and dict(labels).get("shoal_job") == job
    }


class SSE:
    """Reads one SSE stream on a thread into a list of ``(event, data)``."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, Any]] = []
        self.opened = threading.Event()
        self.done = threading.Event()
        self.status = 0
        self.body = ""
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with httpx2.stream("GET", url, timeout=httpx2.Timeout(60.0)) as r:
                self.status = r.status_code
                if r.status_code != 200:
                    self.body = r.read().decode()
                    return
                name = "message"
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((name, json.loads(line[6:])))
                        if name == "open":
                            self.opened.set()
                    elif line == "":
                        name = "message"
        finally:
            self.opened.set()
            self.done.set()

    def records(self) -> list[Any]:
        """The ``message`` events."""
        return [d for n, d in self.events if n == "message"]


@pytest.fixture(scope="module")
def served(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedJob, str]]:
    """``jobs.user_counts`` served on a free port, reading a fresh playback topic."""
    playback = unique("playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4)])
    sj = ServedJob(
        kafka,
        user_counts,
        [
            f"playback={playback}",
            f"user-counts={unique('counts')}",
            f"dead-letters={unique('dead')}",
        ],
        tmp_path_factory.mktemp("service-state"),
    )
    try:
        yield sj, playback
    finally:
        sj.close()


def traffic(seed: int, start_ms: int) -> GeneratorConfig:
    """Playback only, few users (so event time moves fast), a little of every fault."""
    return GeneratorConfig(
        seed=seed, users=150, start_ms=start_ms, interaction_ratio=0.0, late_rate=0.0
    )


def test_metrics_follow_the_worker_counters(served: tuple[ServedJob, str], kafka: str) -> None:
    sj, playback = served
    start = recent_start_ms()
    sent = len(produce_generated(kafka, {"playback": playback}, traffic(1, start), 3000))
    sj.wait_read(sent)
    first, counters = settled_scrape(sj)
    got_in = step_values(first, "shoal_step_records_in_total", "user_counts")
    assert got_in == {step: c["in"] for step, c in counters.items()}
    for metric, key in (
        ("shoal_step_records_out_total", "out"),
        ("shoal_step_records_late_total", "late"),
        ("shoal_step_records_dead_lettered_total", "dead_lettered"),
    ):
        assert step_values(first, metric, "user_counts") == {
            step: c[key] for step, c in counters.items()
        }, metric
    assert got_in["playback"] == sent
    assert (
        step_values(first, "shoal_step_records_dead_lettered_total", "user_counts")["playback"] > 0
    )  # the generator corrupts a few records
    lag = {
        dict(k)["partition"]: v for (n, k), v in first.items() if n == "shoal_consumer_lag_records"
    }
    assert sorted(lag) == ["0", "1", "2", "3"] and set(lag.values()) == {0.0}
    watermark_lag = [v for (n, _), v in first.items() if n == "shoal_task_watermark_lag_seconds"]
    assert watermark_lag and all(v > 3_000 for v in watermark_lag)  # event time is hours back
    assert first[("shoal_checkpoints_total", BASE)] > 0
    assert first[("shoal_worker_responsive", BASE)] == 1.0

    # more traffic: the numbers move, and still match the worker's own
    more = len(
        produce_generated(kafka, {"playback": playback}, traffic(2, start + 40 * MINUTE), 2000)
    )
    sj.wait_read(sent + more)
    # the records just read are committed by the next checkpoint: wait for it
    checkpoints_before = first[("shoal_checkpoints_total", BASE)]
    deadline = time.monotonic() + 30
    while sj.on_worker(lambda w: w.checkpoints) <= checkpoints_before:
        assert time.monotonic() < deadline, "no checkpoint after new records"
        time.sleep(0.2)
    second, counters = settled_scrape(sj)
    got_in = step_values(second, "shoal_step_records_in_total", "user_counts")
    assert got_in == {step: c["in"] for step, c in counters.items()}
    assert got_in["playback"] == sent + more
    assert second[("shoal_records_read_total", BASE)] == sent + more
    assert (
        second[("shoal_checkpoints_total", BASE)]
        > first[("shoal_checkpoints_total", BASE)]
    )


def test_sse_tap_returns_only_matching_records(served: tuple[ServedJob, str], kafka: str) -> None:
    sj, playback = served
    expr = (
        'cdn == "cdn-b" and event_type in ["heartbeat", "bitrate_change"] '
        "and not (bitrate_kbps < 3000)"
    )
    query = httpx2.QueryParams({"filter": expr, "limit": "40"})
    tap = SSE(f"{sj.url}/streams/user_counts/playback?{query}")
    assert tap.opened.wait(30) and tap.status == 200, tap.body
    # a second subscriber to the window step's output, sampled one in two
    rows = SSE(f"{sj.url}/streams/user_counts/counts_10s?sample=1/2&limit=5")
    assert rows.opened.wait(30) and rows.status == 200, rows.body
    sent = produce_generated(
        kafka, {"playback": playback}, traffic(3, recent_start_ms() + 80 * MINUTE), 4000
    )
    assert tap.done.wait(60), "the tap did not deliver its 40 records"
    got = tap.records()
    assert len(got) == 40
    for rec in got:
        v = rec["value"]
        assert v["cdn"] == "cdn-b" and v["event_type"] in ("heartbeat", "bitrate_change"), v
        assert v["bitrate_kbps"] >= 3000, v
        assert isinstance(rec["event_time_ms"], int) and rec["key"] is None
    # the records are real inputs, in order of arrival within their partition
    sent_ids = {r.value["event_id"] for r in sent if r.corrupt is None}
    assert {rec["value"]["event_id"] for rec in got} <= sent_ids
    assert tap.events[0][0] == "open" and tap.events[-1] == ("end", {"sent": 40, "dropped": 0})
    assert rows.done.wait(60)
    window_rows = rows.records()
    assert len(window_rows) == 5 and all(
        {"user_id", "count"} <= set(r["value"]) for r in window_rows
    )
    # the taps unsubscribed: nothing stays attached to the engine
    deadline = time.monotonic() + 10
    while sj.on_worker(lambda w: dict(w.taps)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sj.on_worker(lambda w: dict(w.taps)) == {}


def test_state_endpoint_returns_the_state(served: tuple[ServedJob, str], kafka: str) -> None:
    sj, playback = served
    before = sj.on_worker(lambda w: w.records_read)
    sent = produce_generated(
        kafka, {"playback": playback}, traffic(4, recent_start_ms() + 120 * MINUTE), 1500
    )
    sj.wait_read(before + len(sent))
    # At rest (no input, so no window fires): the open windows, read on the worker thread.
    live = sj.on_worker(
        lambda w: sorted((k, v) for t in w.tasks.values() for s in t.stores for k, v in s.items())
    )
    assert live, "no open window to ask about"
    user = live[-1][0][0]
    # Window state keys are (key, window start, window end).
    want = sorted((start, end, n) for (u, start, end), n in live if u == user)
    r = httpx2.get(f"{sj.url}/state/user_counts/counts_10s/{user}", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"] == user and body["kind"] == "window" and body["step"] == "counts_10s"
    got = sorted((e["window_start_ms"], e["window_end_ms"], e["value"]) for e in body["entries"])
    assert got == want
    missing = httpx2.get(f"{sj.url}/state/user_counts/counts_10s/nobody-{uuid.uuid4().hex}")
    assert missing.status_code == 404 and "no state" in missing.json()["error"]


def test_health_and_clear_errors(served: tuple[ServedJob, str]) -> None:
    sj, _ = served
    health = httpx2.get(f"{sj.url}/health", timeout=30)
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok" and body["job"] == "user_counts"
    assert len(body["tasks"]) == 4 and body["last_checkpoint_age_s"] < 30
    wrong_job = httpx2.get(f"{sj.url}/streams/qoe/playback")
    assert wrong_job.status_code == 404 and "user_counts" in wrong_job.json()["error"]
    wrong_step = httpx2.get(f"{sj.url}/streams/user_counts/nope")
    assert wrong_step.status_code == 404 and "counts_10s" in wrong_step.json()["steps"]
    bad = httpx2.get(f"{sj.url}/streams/user_counts/playback", params={"filter": "cdn = 1"})
    assert bad.status_code == 400 and "==" in bad.json()["error"]
    stateless = httpx2.get(f"{sj.url}/state/user_counts/by_user/u-1")
    assert stateless.status_code == 404 and stateless.json()["stateful_steps"] == ["counts_10s"]
    topo = httpx2.get(f"{sj.url}/topology", timeout=30).json()
    assert [s["name"] for s in topo["steps"]] == [
        "playback",
        "by_user",
        "counts_10s",
        "user-counts",
    ]
    assert topo["panels"] == {
        "qoe": None, "alerts": None, "sessions": None, "scores": None, "attribution": None
    }  # fmt: skip


def test_shoal_run_serves_with_http(kafka: str, tmp_path: Path) -> None:
    """What ``make demo`` will do: ``shoal run JOB --http 127.0.0.1:0`` prints its address."""
    playback = unique("playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 2)])
    produce_generated(kafka, {"playback": playback}, traffic(6, recent_start_ms()), 500)
    base = [
        sys.executable,
        "-m",
        "runtime.cli.main",
        "run",
        "jobs.user_counts:job",
        "--bootstrap",
        kafka,
        "--state",
        "memory",
        "-q",
        "--bind",
        f"playback={playback}",
        "--bind",
        f"user-counts={unique('counts')}",
        "--bind",
        f"dead-letters={unique('dead')}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SHOAL_HOME": str(tmp_path)}
    refused = subprocess.run(
        [*base, "--http", "0.0.0.0:0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: refusing to serve on 0.0.0.0: binding beyond loopback needs a bearer token"
        )
    )
    with subprocess.Popen(
        [*base, "--http", "127.0.0.1:0", "--group", unique("g")],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stderr is not None
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                line = proc.stderr.readline()
                assert line, "shoal run ended before serving"
                m = re.search(r"live page (http://127\.0\.0\.1:\d+)/", line)
                url = m.group(1) if m else None
            assert url is not None
            deadline = time.monotonic() + 60
            read = 0.0
            while read < 500 and time.monotonic() < deadline:
                metrics = scrape(url)
                # this worker's id is the host's default (HOST-w0): match any worker
                read = sum(v for (n, _), v in metrics.items() if n == "shoal_records_read_total")
                time.sleep(0.2)
            assert read == 500
            assert httpx2.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
