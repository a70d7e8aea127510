"""``shoal run --engine flink --jobmanager HOST:PORT`` on a real standalone Flink cluster.

The fixture starts a session cluster (a JobManager and a TaskManager JVM) from the
installed pyflink distribution on free loopback ports, and stops it afterwards,
checking that no process of it is left. The test submits ``jobs.user_counts`` to it
through the command line, as a user would, waits until every window the watermark
has passed is in the output, stops the command (which cancels the job) and compares
the output with the brute-force reference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.flink.cluster import StandaloneCluster
from runtime.settings import REPO_ROOT
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_flink_equality import (
    FLINK_MARKS,
    SIZE_MS,
    produce_playback,
)
from tests.reference.counts import window_counts

pytestmark = FLINK_MARKS
DISORDER_MS = 5_000  # jobs.user_counts' bounded disorder


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    cluster = StandaloneCluster(tmp_path_factory.mktemp("flink-cluster"), slots=4)
    cluster.start()
    pids = cluster.pids
    assert len(pids) == 2
    try:
        yield cluster
    finally:
        cluster.stop()
        assert not [p for p in pids if alive(p)], "a Flink cluster process is still running"


def failure(log: Path) -> str:
    """The command's error line(s), not its whole traceback."""
    lines = log.read_text().splitlines()
    return "\n".join([ln for ln in lines if "error" in ln.lower()][-5:] or lines[-20:])


def rest(cluster: StandaloneCluster, path: str) -> Any:
    with urllib.request.urlopen(f"http://{cluster.address}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def test_jobmanager_submits_to_a_standalone_cluster(
    kafka: str, flink_cluster: StandaloneCluster, tmp_path: Path
) -> None:
    playback, values = produce_playback(kafka, 8_000, seed=23)
    out, dead = unique("cluster-counts"), unique("cluster-dead")
    # Every partition's events span the whole input, so the job's watermark passes the
    # end of every window that ends DISORDER_MS before the earliest partition's last event.
    last_by_partition: dict[int, int] = {}
    for m in read_all(kafka, playback):
        t = decoded([m], "PlaybackEvent")[0]["event_time_ms"]
        last_by_partition[m.partition()] = max(last_by_partition.get(m.partition(), t), t)
    assert len(last_by_partition) == 4
    watermark = min(last_by_partition.values()) - DISORDER_MS
    want = window_counts(values, SIZE_MS)
    closed = {k: n for k, n in want.items() if k[1] + SIZE_MS <= watermark}
    assert len(closed) > 500

    cmd = [
        sys.executable, "-m", "runtime.cli.main", "run", "jobs.user_counts:job",
        "--engine", "flink", "--jobmanager", flink_cluster.address, "--bootstrap", kafka,
        "--group", unique("cluster"), "--bind", f"playback={playback}",
        "--bind", f"user-counts={out}", "--bind", f"dead-letters={dead}",
    ]  # fmt: skip
    env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home")}
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        got: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + 180
        while not closed.keys() <= got.keys():
            assert proc.poll() is None, failure(tmp_path / "run.log")
            assert time.monotonic() < deadline, f"{len(got)} of {len(closed)} windows"
            messages = read_all(kafka, out, idle_s=1.0, first_wait_s=5)
            rows = decoded(messages, "")
            assert [m.key() for m in messages] == [r["user_id"].encode() for r in rows]
            got = {(r["user_id"], r["window_start_ms"]): r["count"] for r in rows}
            assert len(got) == len(rows), "a window was emitted twice"
        running = [
            j for j in rest(flink_cluster, "/jobs/overview")["jobs"] if j["state"] == "RUNNING"
        ]
        assert [j["name"] for j in running] == ["user_counts"]
    finally:
        proc.send_signal(signal.SIGTERM)  # the command cancels its job and exits
        code = proc.wait(60)
        log.close()
    assert code == 0, failure(tmp_path / "run.log")
    assert "Flink cluster 127.0.0.1:" in (tmp_path / "run.log").read_text()
    assert {k: got[k] for k in closed} == closed
    assert all(want[k] == n for k, n in got.items())  # windows past `closed` are exact too
    deadline = time.monotonic() + 30
    while (states := {j["state"] for j in rest(flink_cluster, "/jobs/overview")["jobs"]}) != {
        "CANCELED"
    }:
        assert time.monotonic() < deadline, states  # the cancel the command asked for
        time.sleep(0.5)
