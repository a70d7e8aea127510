"""Two workers with one id in one group are refused at once, with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from tests.integration.helpers import unique
from tests.integration.workers import WorkerPool

ROOT = Path(__file__).resolve().parents[2]


def test_second_worker_with_a_live_id_is_refused(kafka: str, tmp_path: Path) -> None:
    playback = unique("ident-in")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 2)])
    group = unique("ident")
    binds = [f"playback={playback}", f"user-counts={unique('ident-out')}"]
    pool = WorkerPool("jobs.user_counts:job", kafka, group, binds, tmp_path / "a")
    pool.start(0)  # worker id w0
    try:
        admin = KafkaAdmin(kafka)
        deadline = time.monotonic() + 90
        while not any(m.instance_id == f"{group}-w0" for m in admin.group_members(group)):
            assert time.monotonic() < deadline, "the first worker never joined\n" + pool.log_tail()
            assert not pool.crashed(), pool.log_tail()
            time.sleep(0.5)
        cmd = [sys.executable, "-m", "runtime.cli.main", "run", "jobs.user_counts:job",
               "--bootstrap", kafka, "--group", group, "--worker-id", "w0", "--quiet",
               "--seconds", "30"]
        for b in binds:
            cmd += ["--bind", b]
        env = {**os.environ, "SHOAL_HOME": str(tmp_path / "b")}
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), second.stderr
        assert "worker id 'w0' is already live" in lines[0] and group in lines[0]
        # The first worker was not disturbed.
        assert pool.alive() == [0], pool.log_tail()
    finally:
        pool.stop_all()


def test_restart_in_the_same_slot_takes_over(kafka: str, tmp_path: Path) -> None:
    playback = unique("ident-in")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 2)])
    group = unique("ident")
    binds = [f"playback={playback}", f"user-counts={unique('ident-out')}"]
    pool = WorkerPool("jobs.user_counts:job", kafka, group, binds, tmp_path)
    pool.start(0)
    try:
        admin = KafkaAdmin(kafka)
        deadline = time.monotonic() + 90
        while not admin.group_members(group):
            assert time.monotonic() < deadline, pool.log_tail()
            time.sleep(0.5)
        pool.kill(0)  # SIGKILL: its static membership outlives it for a while
        pool.start(0)
        time.sleep(8)
        assert pool.alive() == [0] and not pool.crashed(), pool.log_tail()
    finally:
        pool.stop_all()
