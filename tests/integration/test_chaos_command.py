"""``shoal chaos`` end to end: real broker, a real ``shoal run --workers 2`` supervisor.

The sessionization reference job runs under its supervisor while generated playback
and interaction events are produced; ``shoal chaos`` kills its workers at random
(at least ten times) and pauses the broker once, waits for the job to catch up, then
replays the input range through the job's own graph and compares with what the job
committed. The verdict must pass with nothing lost and nothing duplicated, and the
same-order brute-force reference (``tests/reference/sessionization.py``) must agree
with the committed sessions too.

The second test runs a deliberately broken job (``tests/integration/chaos_jobs.py``:
its sink writes outside the checkpoint's transaction): the verdict must fail, with
duplicates, and exit 1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from runtime.cli.supervisor import read_workers
from runtime.generator import GeneratedRecord, Generator, GeneratorConfig, corrupt_bytes
from tests.integration.helpers import SCHEMA, decoded, read_all, unique
from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS
from tests.reference.sessionization import assert_same_sessions, reference_sessions

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
LINE = re.compile(
    r"^chaos: kills=(\d+) broker_pauses=(\d+) sink_stalls=(\d+) events=(\d+) outputs=(\d+) "
    r"lost=(\d+) duplicated=(\d+) verdict=(pass|fail)$",
    re.MULTILINE,
)


class SteadyProducer(threading.Thread):
    """Produces generated records to their topics at ``rate`` records/s, then sentinels."""

    def __init__(
        self,
        bootstrap: str,
        topics: dict[str, str],
        records: list[GeneratedRecord],
        rate: float,
        sentinel_ms: int | None,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.records, self.rate = bootstrap, topics, records, rate
        self.sentinel_ms = sentinel_ms
        self.error: BaseException | None = None

    def run(self) -> None:
        import random

        try:
            codecs = codec_factory()
            sink = KafkaSink(self.bootstrap)
            rng = random.Random(3)
            t0 = time.monotonic()
            for i, rec in enumerate(self.records):
                if rec.stream not in self.topics:
                    continue
                data = codecs(SCHEMA[rec.stream]).encode(rec.value)
                if rec.corrupt is not None:
                    data = corrupt_bytes(data, rec.corrupt, rng)
                sink.write(self.topics[rec.stream], rec.key, data, None)
                if i % 250 == 249:
                    sink.poll()
                    ahead = (i + 1) / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            if self.sentinel_ms is not None:  # one far-later event per partition and topic
                for stream, topic in self.topics.items():
                    template = next(r.value for r in self.records if r.stream == stream)
                    for p in range(PARTITIONS):
                        value = {**template, "user_id": f"zz-end-{p}",
                                 "event_id": f"end-{stream}-{p}",
                                 "event_time_ms": self.sentinel_ms}  # fmt: skip
                        data = codecs(SCHEMA[stream]).encode(value)
                        sink.write(topic, value["user_id"].encode(), data, None, partition=p)
            sink.flush()
        except BaseException as exc:  # reported by the test
            self.error = exc


def _home(tmp_path: Path, broker_home: Path) -> Path:
    """A SHOAL_HOME whose local broker is the session's broker (for --broker-pause)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "broker").symlink_to(broker_home, target_is_directory=True)
    return home


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SHOAL_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _supervisor(
    job_spec: str, kafka: str, group: str, binds: list[str], home: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", job_spec, "--workers", "2",
           "--bootstrap", kafka, "--group", group, "--quiet", *extra]  # fmt: skip
    for b in binds:
        cmd += ["--bind", b]
    log = open(home / "supervisor.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(home), stdout=log, stderr=log,
                            start_new_session=True)  # fmt: skip
    log.close()
    state = home / "run" / f"{group}.workers.json"
    deadline = time.monotonic() + 60
    while len(read_workers(state).get("workers", {})) < 2:
        assert proc.poll() is None, (home / "supervisor.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the supervisor wrote no state file"
        time.sleep(0.2)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _chaos(job_spec: str, kafka: str, group: str, binds: list[str], home: Path,
           extra: list[str]) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "runtime.cli.main", "chaos", job_spec, "--bootstrap", kafka,
           "--group", group, "--from-start", "--catch-up-timeout", "180s", *extra]  # fmt: skip
    for b in binds:
        cmd += ["--bind", b]
    return subprocess.run(cmd, cwd=ROOT, env=_env(home), capture_output=True, text=True,
                          timeout=400)  # fmt: skip


def test_chaos_sessionization_passes(kafka: str, broker_home: Path, tmp_path: Path) -> None:
    playback, interactions = unique("chaos-playback"), unique("chaos-interactions")
    sessions, retractions, late, dead = (unique("chaos-sessions"), unique("chaos-retractions"),
                                         unique("chaos-late"), unique("chaos-dead"))  # fmt: skip
    KafkaAdmin(kafka).ensure_topics(
        [TopicSpec(playback, PARTITIONS), TopicSpec(interactions, PARTITIONS)]
    )
    now_ms = time.time_ns() // 1_000_000
    config = GeneratorConfig(
        start_ms=now_ms - 2 * 3_600_000, seed=41, users=300, late_rate=0.0,
        out_of_order_ms=2_000, duplicate_rate=0.01, malformed_rate=0.002,
        bad_timestamp_rate=0.0,
    )  # fmt: skip
    records = Generator(config).take(30_000)
    last_ms = max(r.value["event_time_ms"] for r in records if r.corrupt is None)
    binds = [f"playback={playback}", f"interactions={interactions}", f"sessions={sessions}",
             f"session-retractions={retractions}", f"sessions-late-events={late}",
             f"dead-letters={dead}"]  # fmt: skip
    home = _home(tmp_path, broker_home)
    group = unique("chaos-sessions")
    spec = "jobs.sessionization.job:demo_job"  # 5-minute gap: sessions close within the run
    supervisor = _supervisor(spec, kafka, group, binds, home, ["--checkpoint-ms", "500"])
    producer = SteadyProducer(kafka, {"playback": playback, "interactions": interactions},
                              records, 900.0, last_ms + 30 * 60_000)  # fmt: skip
    try:
        producer.start()
        result = _chaos(spec, kafka, group, binds, home,
                        ["--duration", "36s", "--every", "2.5s", "--seed", "5",
                         "--broker-pause", "--pause-for", "3s",
                         "--report", str(tmp_path / "report")])  # fmt: skip
        producer.join(timeout=60)
    finally:
        _stop(supervisor)
    logs = result.stderr[-4000:] + (home / "supervisor.log").read_text()[-3000:]
    assert producer.error is None, producer.error
    found = LINE.search(result.stdout)
    assert found is not None, result.stdout + logs
    print(found.group(0))
    kills, pauses, _, events, outputs, lost, duplicated, verdict = found.groups()
    assert int(kills) >= 10 and int(pauses) == 1, found.group(0)
    assert (lost, duplicated, verdict) == ("0", "0", "pass"), found.group(0) + "\n" + logs
    assert result.returncode == 0, logs
    assert int(events) == len(records) + 2 * PARTITIONS
    # The committed sessions also equal the independent brute-force reference.
    got_records = decoded(read_all(kafka, sessions), "SessionSummary")
    got = {(r["user_id"], r["device_id"], r["session_start_ms"]): r for r in got_records}
    assert len(got) == len(got_records), "a session was emitted twice"
    valid = [r.value for r in records if r.corrupt is None
             and MIN_VALID_MS <= r.value["event_time_ms"] <= now_ms + MAX_FUTURE_MS]  # fmt: skip
    want = reference_sessions(valid, 5 * 60_000)
    assert len(want) > 100
    assert int(outputs) >= len(want)
    assert_same_sessions({k: v for k, v in got.items() if not k[0].startswith("zz-end")}, want)
    report = (tmp_path / "report" / "chaos.md").read_text()
    assert found.group(0) in report and "broker_pause" in report
    assert (tmp_path / "report" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chaos_fails_a_job_that_writes_outside_its_checkpoints(
    kafka: str, broker_home: Path, tmp_path: Path
) -> None:
    playback, copies = unique("leaky-playback"), unique("leaky-copies")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    now_ms = time.time_ns() // 1_000_000
    config = GeneratorConfig(start_ms=now_ms - 3_600_000, seed=8, users=200, late_rate=0.0,
                             duplicate_rate=0.0, malformed_rate=0.0, bad_timestamp_rate=0.0,
                             interaction_ratio=0.0)  # fmt: skip
    records = [r for r in Generator(config).take(20_000) if r.stream == "playback"]
    binds = [f"playback={playback}", f"copies={copies}", f"dead-letters={unique('leaky-dead')}"]
    home = _home(tmp_path, broker_home)
    group = unique("leaky")
    spec = "tests.integration.chaos_jobs:leaky_copies"
    extra = ["--guarantee", "at_least_once", "--checkpoint-ms", "2000"]
    supervisor = _supervisor(spec, kafka, group, binds, home, extra)
    producer = SteadyProducer(kafka, {"playback": playback}, records, 1_000.0, None)
    try:
        producer.start()
        result = _chaos(spec, kafka, group, binds, home,
                        ["--duration", "16s", "--every", "2s", "--seed", "2"])  # fmt: skip
        producer.join(timeout=60)
    finally:
        _stop(supervisor)
    logs = result.stderr[-4000:] + (home / "supervisor.log").read_text()[-3000:]
    found = LINE.search(result.stdout)
    assert found is not None, result.stdout + logs
    print(found.group(0))
    kills, _, _, events, outputs, lost, duplicated, verdict = found.groups()
    assert int(kills) >= 4, found.group(0)
    assert verdict == "fail" and int(duplicated) > 0 and lost == "0", found.group(0) + logs
    assert result.returncode == 1
    # Independently: the copies topic holds some event more than once, and every one.
    got = [r["event_id"] for r in decoded(read_all(kafka, copies), "")]
    assert set(got) == {r.value["event_id"] for r in records}
    assert len(got) - len(set(got)) == int(duplicated)
    assert int(events) == len(records) and int(outputs) == len(got)


def test_chaos_cannot_judge_a_job_on_processing_time(
    kafka: str, broker_home: Path, tmp_path: Path
) -> None:
    playback, out = unique("quiet-playback"), unique("quiet-out")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 2)])
    binds = [f"playback={playback}", f"quiet-users={out}", f"dead-letters={unique('q-dead')}"]
    home = _home(tmp_path, broker_home)
    group = unique("quiet")
    spec = "tests.integration.chaos_jobs:quiet_users"
    supervisor = _supervisor(spec, kafka, group, binds, home, [])
    try:
        options = ["--duration", "4s", "--every", "1.5s", "--report", str(tmp_path / "r")]
        result = _chaos(spec, kafka, group, binds, home, options)
    finally:
        _stop(supervisor)
    assert result.returncode == 3, result.stdout + result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"chaos: kills=\d+ broker_pauses=0 sink_stalls=0 verdict=cannot-judge \(step 'quiet' "
        r"uses register_processing_time \(processing time\)\)",
        line,
    ), line
    assert "cannot judge" in (tmp_path / "r" / "chaos.md").read_text()
