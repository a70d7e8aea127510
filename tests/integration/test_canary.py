"""``shoal canary`` end to end: a real broker, a real baseline under ``shoal run``.

A counting job (``tests/integration/canary_jobs.py``) runs as the baseline on live
input (event time = the wall clock). Candidates are judged in shadow beside it: a
behaviour-preserving refactor passes; a window one second shorter fails on output
agreement; a version that dead-letters one record in twenty fails on the dead-letter
rate; a version that burns CPU on every record fails on throughput (records per CPU
second). The last refactor is promoted: the baseline stops with a savepoint, the
candidate takes over on the production sink, and the production output over the whole
input equals a brute-force count, nothing lost or doubled across the switch.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from runtime.cli.supervisor import read_workers
from runtime.generator import Generator, GeneratorConfig
from tests.integration.canary_jobs import WINDOW_MS
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.workers import group_lag

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
USERS = 40
VERDICT = re.compile(r"^canary: verdict=(pass|marginal|fail) score=([\d.]+)", re.MULTILINE)


class LiveProducer(threading.Thread):
    """Playback events stamped with the wall clock at ``rate``/s until stopped; then
    one event per partition a minute ahead, which closes every window."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.sent: list[tuple[str, int]] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            template = next(
                r.value for r in Generator(GeneratorConfig(seed=2)).take(50)
                if r.stream == "playback" and r.corrupt is None
            )  # fmt: skip
            encode = codec_factory()("PlaybackEvent").encode
            sink = KafkaSink(self.bootstrap, linger_ms=20)
            t0, i = time.monotonic(), 0
            while not self.halt.is_set():
                user = f"u{i % USERS:03d}"
                now = time.time_ns() // 1_000_000
                value = {**template, "user_id": user, "event_id": f"e{i}", "event_time_ms": now}
                sink.write(self.topic, user.encode(), encode(value), None)
                self.sent.append((user, now))
                i += 1
                if i % 50 == 0:
                    sink.poll()
                    ahead = i / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            end = time.time_ns() // 1_000_000 + 60_000
            for p in range(PARTITIONS):
                value = {**template, "user_id": f"zz-end-{p}", "event_id": f"end-{p}",
                         "event_time_ms": end}  # fmt: skip
                sink.write(self.topic, b"zz", encode(value), None, partition=p)
            sink.flush()
        except BaseException as exc:  # reported by the test
            self.error = exc


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SHOAL_HOME": str(home), "PYTHONUNBUFFERED": "1"}


class Baseline:
    """The running baseline: its topics, group, home and supervisor."""

    def __init__(self, kafka: str, home: Path) -> None:
        self.kafka, self.home = kafka, home
        self.events, self.counts = unique("canary-events"), unique("canary-counts")
        self.dead = unique("canary-dead")
        self.group = unique("canary-base")
        self.binds = [f"events={self.events}", f"counts={self.counts}",
                      f"dead-letters={self.dead}"]  # fmt: skip
        KafkaAdmin(kafka).ensure_topics(
            [TopicSpec(self.events, PARTITIONS), TopicSpec(self.counts, PARTITIONS)]
        )
        self.producer = LiveProducer(kafka, self.events, 1_500.0)
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "runtime.cli.main", "run",
               "tests.integration.canary_jobs:counts", "--workers", "1", "--bootstrap",
               self.kafka, "--group", self.group, "--quiet", "--checkpoint-ms", "500",
               "--http", "127.0.0.1:0"]  # fmt: skip
        for b in self.binds:
            cmd += ["--bind", b]
        log = open(self.home / "baseline.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(self.home), stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
        log.close()
        state = self.home / "run" / f"{self.group}.workers.json"
        deadline = time.monotonic() + 60
        while not read_workers(state).get("workers"):
            assert proc.poll() is None, (self.home / "baseline.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the baseline's supervisor wrote no state file"
            time.sleep(0.2)
        return proc

    def wait_running(self) -> None:
        """Until the baseline has checkpointed input (it runs and announced itself)."""
        admin = KafkaAdmin(self.kafka)
        deadline = time.monotonic() + 90
        while not any(tp[0] == self.events for tp in admin.group_offsets(self.group)):
            assert self.proc.poll() is None, (self.home / "baseline.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the baseline committed nothing"
            time.sleep(0.5)

    def canary(self, candidate: str, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "runtime.cli.main", "canary",
               "tests.integration.canary_jobs:counts", "--candidate",
               f"tests.integration.canary_jobs:{candidate}", "--bootstrap", self.kafka,
               "--group", self.group, "--duration", "12s", "--interval", "1s", *extra]  # fmt: skip
        for b in self.binds:
            cmd += ["--bind", b]
        return subprocess.run(cmd, cwd=ROOT, env=_env(self.home), capture_output=True,
                              text=True, timeout=400)  # fmt: skip


def _stop_group(proc: subprocess.Popen[bytes] | int) -> None:
    pid = proc if isinstance(proc, int) else proc.pid
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not isinstance(proc, int):
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def baseline(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    home = tmp_path_factory.mktemp("canary-home")
    base = Baseline(kafka, home)
    base.producer.start()
    try:
        base.wait_running()
        yield base
    finally:
        base.producer.halt.set()
        _stop_group(base.proc)


def _verdict(result: subprocess.CompletedProcess[str]) -> str:
    found = VERDICT.search(result.stdout)
    assert found is not None, result.stdout + result.stderr[-4000:]
    print(found.group(0))
    return found.group(1)


def _metric(result: subprocess.CompletedProcess[str], name: str) -> str:
    found = re.search(rf"^  {name}: .* (pass|marginal|fail)$", result.stderr, re.MULTILINE)
    assert found is not None, result.stderr[-4000:]
    return found.group(1)


def test_a_refactor_passes_and_its_shadow_is_removed(baseline: Baseline, tmp_path: Path) -> None:
    result = baseline.canary("refactored", "--report", str(tmp_path / "report"))
    assert _verdict(result) == "pass", result.stderr[-4000:]
    assert result.returncode == 0
    assert "outputs: agreement=100.00%" in result.stderr
    # both serve /metrics: lateness and event-to-sink latency are compared too
    assert _metric(result, "late_rate") == "pass"
    assert _metric(result, "latency_p99_ms") == "pass"
    matched = int(re.search(r"matched=(\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert matched >= USERS, result.stderr[-2000:]  # windows closed in both, compared
    report = (tmp_path / "report" / "canary.md").read_text()
    assert "verdict=pass" in report and "| throughput |" in report
    assert (tmp_path / "report" / "canary.png").read_bytes()[:4] == b"\x89PNG"
    admin = KafkaAdmin(baseline.kafka)
    assert f"{baseline.group}-canary" not in admin.groups()
    assert f"{baseline.counts}.canary" not in admin.topics()


def test_a_window_one_second_shorter_fails_on_output_agreement(baseline: Baseline) -> None:
    result = baseline.canary("shorter", "--allow-dropped-state")
    assert _verdict(result) == "fail" and result.returncode == 1
    assert "output agreement" in result.stdout, result.stdout


def test_five_percent_dead_letters_fail(baseline: Baseline) -> None:
    result = baseline.canary("dead_letters")
    assert _verdict(result) == "fail" and result.returncode == 1
    assert _metric(result, "dead_letter_rate") == "fail"


def test_a_candidate_that_burns_cpu_per_record_fails_on_throughput(baseline: Baseline) -> None:
    result = baseline.canary("slow")
    assert _verdict(result) == "fail" and result.returncode == 1
    assert _metric(result, "throughput") == "fail"
    assert _metric(result, "dead_letter_rate") == "pass"


def test_promote_hands_the_production_sink_over_with_nothing_lost(
    baseline: Baseline, tmp_path: Path
) -> None:
    result = baseline.canary("refactored", "--promote", "--report", str(tmp_path / "r"))
    assert _verdict(result) == "pass" and result.returncode == 0, result.stderr[-4000:]
    promoted = re.search(r"supervisor pid (\d+)", result.stderr)
    assert promoted is not None, result.stderr[-3000:]
    pid = int(promoted.group(1))
    try:
        baseline.proc.wait(timeout=60)  # the baseline stopped at its savepoint
        time.sleep(3)  # the promoted candidate has the input for a while
        baseline.producer.halt.set()
        baseline.producer.join(timeout=60)
        assert baseline.producer.error is None, baseline.producer.error
        deadline = time.monotonic() + 120
        while group_lag(baseline.kafka, baseline.group, baseline.events, PARTITIONS) > 0:
            assert time.monotonic() < deadline, (tmp_path / "r" / "promoted.log").read_text()
            time.sleep(1)
        time.sleep(2)
    finally:
        _stop_group(pid)
    got = [r for r in decoded(read_all(baseline.kafka, baseline.counts), "")
           if not r["user_id"].startswith("zz")]  # fmt: skip
    seen = Counter((r["user_id"], r["window_start_ms"]) for r in got)
    assert max(seen.values()) == 1, "a window was emitted twice"
    want = Counter((u, ts - ts % WINDOW_MS) for u, ts in baseline.producer.sent)
    assert {(r["user_id"], r["window_start_ms"]): r["n"] for r in got} == dict(want)
