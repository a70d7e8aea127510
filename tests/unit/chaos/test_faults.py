"""Faults on real processes: the local target kills a listed worker, pauses stop and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.api.errors import ConfigError
from runtime.chaos.campaign import Done, Record, Sample
from runtime.chaos.faults import LocalTarget, local_process, pause
from runtime.chaos.report import write_report
from runtime.chaos.verdict import compare
from runtime.cli.supervisor import read_workers, workers_file


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like worker ``w-w0`` of a supervisor (its command line)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "run", "--worker-id", "w-w0"],
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _state(path: Path, workers: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"supervisor": os.getpid(), "group": "g", "workers": workers}))


def test_local_target_lists_and_kills_the_workers_of_the_state_file(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = workers_file(tmp_path, "my job/1")
    assert path.name == "my_job_1.workers.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # w-w1's pid is alive but another program's (a reused pid): never a worker
        _state(path, {"w-w0": sleeper.pid, "w-w1": other.pid, "w-w2": 2**22 + 12345})
        target = LocalTarget(path)
        target.check()
        assert target.workers() == ["w-w0"]
        target.kill("w-w0")
        assert sleeper.wait(timeout=10) == -9
        assert target.workers() == []
        with pytest.raises(ConfigError, match="not running"):
            target.kill("w-w1")
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_no_supervisor_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no local supervisor"):
        LocalTarget(workers_file(tmp_path, "g")).check()
    assert read_workers(tmp_path / "missing.json") == {}


def _state_letter(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_pause_stops_the_process_and_resumes_it(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    seen = []

    def during(_: float) -> None:  # a signal arrives soon, not at once: look for a while
        for _ in range(200):
            seen.append(_state_letter(sleeper.pid))
            if seen[-1] == "T":
                return
            time.sleep(0.01)

    pause(sleeper.pid, 0.1, "sleeper", wait=during)
    assert seen[-1] == "T"  # stopped while paused
    for _ in range(200):
        if _state_letter(sleeper.pid) != "T":
            break
        time.sleep(0.01)
    assert _state_letter(sleeper.pid) in ("S", "R")  # running again
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{sleeper.pid}\n/data\n")
    assert local_process(pid_file, "redis") == sleeper.pid
    pid_file.write_text("nonsense\n")
    with pytest.raises(ConfigError, match="no pid"):
        local_process(pid_file, "redis")


def test_report_has_the_line_the_faults_and_a_timeline(tmp_path: Path) -> None:
    record = Record(
        [Done(1.5, "kill", "w-w0"), Done(4.0, "broker_pause", "broker paused for 3s")],
        [Sample(float(i), 10 * i, 100.0 if i else None) for i in range(6)]
        + [Sample(6.0, None, None)],
    )
    comparison = compare([("s", "k", "1")], [("s", "k", "1"), ("s", "k", "1")])
    paths = write_report(tmp_path / "r", "myjob", {"seed": "1"}, record, comparison, "chaos: x")
    assert [p.name for p in paths] == ["chaos.md", "timeline.png"]
    text = paths[0].read_text()
    assert "chaos: x" in text and "**Verdict: fail**" in text and "1 duplicated" in text
    assert "| 1.5 | kill | w-w0 | yes |" in text and "| 4.0 | broker_pause |" in text
    assert "highest lag 50 records" in text
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
