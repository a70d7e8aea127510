"""A job author's first hour, as the README tells it, against the real broker.

In a temporary folder: ``shoal init myjob``, then in ``myjob``: ``pytest`` (the project's
own tests), ``shoal generate`` into a topic of this test, ``shoal run myjob.job:job
--seconds 30``. The slow starts it writes are checked against a brute-force count over
the records the generator wrote (read back from the topic). A second ``shoal generate``
that starts behind the job's watermark says so; one that starts now does not. Bound to
PostgreSQL, the same job's sink makes its table from the project's own schema.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.sink import KafkaSink
from tests.integration.helpers import decoded, read_all, unique

if TYPE_CHECKING:
    from tests.services import PostgresServer

pytest_plugins = ["tests.services"]

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


@dataclass(frozen=True)
class Project:
    """A project ``shoal init`` made, whose tests passed, and its generated input."""

    folder: Path
    playback: str
    events: list[dict[str, Any]]


@pytest.fixture
def project(kafka: str, tmp_path: Path) -> Project:
    """``shoal init myjob``, ``pytest`` in it, then ``shoal generate`` (30 minutes of the
    past, replayed at once) into a topic of this test, read back as the reference's
    input; then one record per partition at the wall clock, so that every partition's
    watermark passes every generated window and timer (a heartbeat: the job filters it
    out). A test of its own each: one writes more to its topic."""
    made = shoal("init", "myjob", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "myjob"
    assert len((folder / "README.md").read_text().splitlines()) == 5

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert re.search(r"^5 passed", tests.stdout, re.M), tests.stdout[-2000:]

    playback = unique("fh-playback")
    generated = shoal(
        "generate", "-n", "8000", "--lookback", "1800", "--bootstrap", kafka,
        "--playback-topic", playback, "--interactions-topic", unique("fh-interactions"),
        "--late-rate", "0", "--duplicate-rate", "0", "--malformed-rate", "0",
        "--bad-timestamp-rate", "0", "-q",
        cwd=folder,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert "event time starts 30 min before now" in generated.stderr, generated.stderr
    events = decoded(read_all(kafka, playback), "PlaybackEvent")
    assert len(events) > 4000
    closing = codec_factory()("PlaybackEvent").encode(
        {**events[0], "event_type": "heartbeat", "event_time_ms": time.time_ns() // 1_000_000}
    )
    sink = KafkaSink(kafka)
    for partition in range(KafkaAdmin(kafka).topics()[playback]):
        sink.write(playback, b"closing", closing, partition=partition)
    sink.flush()
    return Project(folder, playback, events)


def run_job(kafka: str, project: Project, group: str, *binds: str) -> str:
    """``shoal run myjob.job:job --seconds 30`` in the project's folder; its log."""
    run = shoal(
        "--log-level", "info", "run", "myjob.job:job", "--seconds", "30",
        "--bootstrap", kafka, "--group", group,
        "--bind", f"playback={project.playback}", *[a for b in binds for a in ("--bind", b)],
        "--quiet",
        cwd=project.folder,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # every record in time, nothing dead-lettered (the input has no late or bad records)
    assert re.search(r"late 0, dead-lettered 0$", run.stderr, re.M), run.stderr[-2000:]
    return run.stderr


def test_init_test_generate_run_against_the_broker(kafka: str, project: Project) -> None:
    out, group = unique("fh-slow-starts"), unique("fh-job")
    log = run_job(kafka, project, group, f"slow-starts={out}", f"dead-letters={out}-dead")

    schema = codec_factory([project.folder / "myjob" / "schemas"])("SlowStarts")
    values, failures = schema.decode_batch([m.value() for m in read_all(kafka, out)])
    assert not failures
    got = {(v["cdn"], v["window_start_ms"]): v["slow_starts"] for v in values}
    assert len(got) == len(values), "a window was written twice"
    want = slow_starts(project.events)
    assert sum(want.values()) > 10
    assert got == dict(want), (sorted(got.items()), sorted(want.items()), log[-4000:])

    # The job's watermark is now past the generated records: a second run that starts
    # in the past says so, naming the job; one that starts now does not.
    again = ["-n", "20", "--bootstrap", kafka, "--playback-topic", project.playback,
             "--interactions-topic", unique("fh-interactions"), "-q"]  # fmt: skip
    behind = shoal("generate", *again, "--lookback", "1800", cwd=project.folder.parent)
    assert behind.returncode == 0, behind.stderr
    assert f"behind the watermark of job group {group!r}" in behind.stderr, behind.stderr
    now = shoal("generate", *again, cwd=project.folder.parent)
    assert now.returncode == 0, now.stderr
    assert "event time starts now" in now.stderr and group not in now.stderr, now.stderr


def test_the_projects_own_schema_makes_a_postgresql_table(
    kafka: str, project: Project, postgres: PostgresServer
) -> None:
    """Bound to PostgreSQL, the sink's table comes from the project's own SlowStarts
    schema (not a built-in one), keyed by CDN and minute; rows equal the reference."""
    table = f"slow_{uuid.uuid4().hex[:8]}"
    url = postgres.sink_url(table=table, key="cdn,window_start_ms")
    binds = (f"slow-starts={url}", f"dead-letters={table}-dead")
    log = run_job(kafka, project, unique("fh-pg"), *binds)
    with psycopg.connect(postgres.url) as conn:
        rows = conn.execute(f"SELECT cdn, window_start_ms, slow_starts FROM {table}").fetchall()
    want = slow_starts(project.events)
    assert {(cdn, start): n for cdn, start, n in rows} == dict(want), log[-4000:]
    assert len(rows) == len(want) > 3


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
