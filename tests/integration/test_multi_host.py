"""Two hosts on one machine: two ``shoal run --workers 2`` supervisors, one group.

Each "host" is an independent supervisor with its own ``SHOAL_HOME`` (state folders)
and ``SHOAL_WORKER_ID`` (so its workers are ``hosta-w0``, ``hosta-w1`` and ``hostb-w0``,
``hostb-w1``). Together they run a job that repartitions through an internal topic
while 300k events stream in; midway one whole host is SIGKILLed (its supervisor and
both workers, as when a machine dies) and later started again. The read_committed
output must equal the brute-force reference exactly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.generator import Generator, GeneratorConfig
from tests.integration.chaos_jobs import WINDOW_MS
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.test_chaos_repartition import wait_for_outputs
from tests.integration.workers import Producer, chaos_line
from tests.reference.counts import window_counts

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
EVENTS = 300_000
RATE = 9_000.0


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


class Host:
    """One simulated host: a supervisor of two workers with its own home and id."""

    def __init__(self, name: str, kafka: str, group: str, binds: list[str], home: Path) -> None:
        self.name, self.kafka, self.group, self.binds, self.home = name, kafka, group, binds, home
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        cmd = [sys.executable, "-m", "runtime.cli.main", "-v", "run",
               "tests.integration.chaos_jobs:title_counts", "--workers", "2",
               "--bootstrap", self.kafka, "--group", self.group, "--quiet",
               "--checkpoint-ms", "500", "--state", "rocksdb", "--partitions", "2"]
        for b in self.binds:
            cmd += ["--bind", b]
        env = {**os.environ, "SHOAL_HOME": str(self.home), "SHOAL_WORKER_ID": self.name,
               "PYTHONUNBUFFERED": "1"}
        log = open(self.home / "host.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()

    def workers(self) -> list[int]:
        return children(self.proc.pid) if self.proc is not None else []

    def kill(self) -> None:
        """SIGKILL the supervisor and its workers at once, like a machine that dies."""
        assert self.proc is not None
        victims = [self.proc.pid, *self.workers()]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def log_tail(self) -> str:
        text = (self.home / "host.log").read_text(errors="replace")
        return f"--- {self.name}\n" + "\n".join(text.splitlines()[-40:])


def test_two_hosts_one_killed_exactly_once(kafka: str, tmp_path: Path) -> None:
    playback, out, dead = unique("hosts-in"), unique("hosts-out"), unique("hosts-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=303, users=1500, titles=40, late_rate=0.0,
                             malformed_rate=0.0, bad_timestamp_rate=0.0,
                             interaction_ratio=0.0)
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    group = unique("hosts")
    binds = [f"playback={playback}", f"title-counts={out}", f"dead-letters={dead}"]
    hosts = [Host(n, kafka, group, binds, tmp_path / n) for n in ("hosta", "hostb")]
    for host in hosts:
        host.start()
    producer = Producer(kafka, playback, records, RATE)
    producer.start()

    def logs() -> str:
        return "\n".join(h.log_tail() for h in hosts)

    try:
        time.sleep(8)
        assert len(hosts[1].workers()) == 2, logs()
        hosts[1].kill()  # a whole host dies mid-run
        time.sleep(12)  # the other host takes over once the dead members' sessions end
        assert hosts[0].proc is not None and hosts[0].proc.poll() is None, logs()
        hosts[1].start()  # and comes back
        producer.join(timeout=300)
        assert not producer.is_alive() and producer.error is None, producer.error
        last_ts = max(r.value["event_time_ms"] for r in records)
        close_all_windows(kafka, playback, last_ts + 3_600_000, PARTITIONS)
        reference = window_counts([r.value for r in records], WINDOW_MS, "title_id")

        class Watch:
            def crashed(self) -> bool:
                return any(h.proc is None or h.proc.poll() is not None for h in hosts)

            def log_tail(self) -> str:
                return logs()

        wait_for_outputs(kafka, out, len(reference), Watch(), 300)  # type: ignore[arg-type]
        codes = [h.stop() for h in hosts]
        assert codes == [0, 0], logs()
    finally:
        for host in hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.kill()
    outputs = decoded(read_all(kafka, out), "")
    line, lost, duplicated = chaos_line(sum(h.kills for h in hosts), len(records), outputs,
                                        reference, key="title_id", label="hosts")
    line = line.replace("hosts: ", "hosts: workers=4 ")
    print(line)
    assert lost == 0 and duplicated == 0, line
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")
