"""A job author's first hour, as the README tells it, against the real broker.

In a temporary folder: ``shoal init myjob``, then in ``myjob``: ``pytest`` (the project's
own tests), ``shoal generate`` into a topic of this test, ``shoal run myjob.job:job
--seconds 30``. The slow starts it writes are checked against a brute-force count over
the records the generator wrote (read back from the topic). A second ``shoal generate``
that starts behind the job's watermark says so; one that starts now does not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.sink import KafkaSink
from tests.integration.helpers import decoded, read_all, unique

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60_000
SLOW_START_MS = 2_000  # the scaffold's threshold (myjob/job.py)


def _env() -> dict[str, str]:
    """This checkout's Shoal first on the path, as an installed Shoal would be."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def shoal(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def slow_starts(events: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    """Brute force: a start whose first play or error is 2 s or more later (or never
    comes) is slow, counted in the minute of start + 2 s, per CDN."""
    starts: dict[str, tuple[str, int]] = {}
    answers: dict[str, int] = {}
    for e in events:
        playback, at = e["playback_id"], e["event_time_ms"]
        if e["event_type"] == "start":
            starts[playback] = (e["cdn"], at)
        elif e["event_type"] in ("play", "error"):
            answers[playback] = min(answers.get(playback, at), at)
    counts: Counter[tuple[str, int]] = Counter()
    for playback, (cdn, start) in starts.items():
        answer = answers.get(playback)
        if answer is None or answer - start >= SLOW_START_MS:
            slow_at = start + SLOW_START_MS
            counts[(cdn, slow_at - slow_at % MINUTE)] += 1
    return counts


def test_init_test_generate_run_against_the_broker(kafka: str, tmp_path: Path) -> None:
    made = shoal("init", "myjob", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "myjob"
    assert len((project / "README.md").read_text().splitlines()) == 5

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert re.search(r"^5 passed", tests.stdout, re.M), tests.stdout[-2000:]

    playback, out, dead = unique("fh-playback"), unique("fh-slow-starts"), unique("fh-dead")
    generated = shoal(
        "generate", "-n", "8000", "--lookback", "1800", "--bootstrap", kafka,
        "--playback-topic", playback, "--interactions-topic", unique("fh-interactions"),
        "--late-rate", "0", "--duplicate-rate", "0", "--malformed-rate", "0",
        "--bad-timestamp-rate", "0", "-q",
        cwd=project,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert "event time starts 30 min before now" in generated.stderr, generated.stderr
    events = decoded(read_all(kafka, playback), "PlaybackEvent")
    assert len(events) > 4000
    # One record per partition at the wall clock: every partition's watermark passes all
    # the generated windows and timers (a heartbeat: the job filters it out).
    closing = codec_factory()("PlaybackEvent").encode(
        {**events[0], "event_type": "heartbeat", "event_time_ms": time.time_ns() // 1_000_000}
    )
    sink = KafkaSink(kafka)
    for partition in range(KafkaAdmin(kafka).topics()[playback]):
        sink.write(playback, b"closing", closing, partition=partition)
    sink.flush()

    group = unique("fh-job")
    run = shoal(
        "run", "myjob.job:job", "--seconds", "30", "--bootstrap", kafka, "--group", group,
        "--bind", f"playback={playback}", "--bind", f"slow-starts={out}",
        "--bind", f"dead-letters={dead}", "--quiet",
        cwd=project,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dead-lettered 0" in run.stderr, run.stderr[-2000:]

    schemas = codec_factory([project / "myjob" / "schemas"])("SlowStarts")
    values, failures = schemas.decode_batch([m.value() for m in read_all(kafka, out)])
    assert not failures
    got = {(v["cdn"], v["window_start_ms"]): v["slow_starts"] for v in values}
    assert len(got) == len(values), "a window was written twice"
    want = slow_starts(events)
    assert sum(want.values()) > 10
    assert got == dict(want), (sorted(got.items()), sorted(want.items()))

    # The job's watermark is now past the generated records: a second run that starts
    # in the past says so, naming the job; one that starts now does not.
    again = ["-n", "20", "--bootstrap", kafka, "--playback-topic", playback,
             "--interactions-topic", unique("fh-interactions"), "-q"]  # fmt: skip
    behind = shoal("generate", *again, "--lookback", "1800", cwd=tmp_path)
    assert behind.returncode == 0, behind.stderr
    assert f"behind the watermark of job group {group!r}" in behind.stderr, behind.stderr
    now = shoal("generate", *again, cwd=tmp_path)
    assert now.returncode == 0, now.stderr
    assert "event time starts now" in now.stderr and group not in now.stderr, now.stderr


def test_run_finds_a_project_by_path_and_says_where_it_looked(tmp_path: Path) -> None:
    assert shoal("init", "proj", cwd=tmp_path).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = shoal("run", "proj.job:job", "--dry-run", cwd=elsewhere)
    assert missing.returncode == 1
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "no module named 'proj'" in lines[0], missing.stderr
    assert f"looked in {elsewhere.resolve()}" in lines[0]
    dry = shoal("run", "proj.job:job", "--path", "../proj", "--dry-run", cwd=elsewhere)
    assert dry.returncode == 0, dry.stderr
    assert "slow-starts -> topic slow-starts: SlowStarts" in dry.stdout, dry.stdout
    assert "proj.slow_start.changelog" in dry.stdout and "cleanup.policy=compact" in dry.stdout
    assert "nothing was connected to, created or started" in dry.stdout
