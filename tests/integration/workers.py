"""Worker processes for fault tests: start, kill -9, restart in the same slot, stop."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from connectors.codecs import codec_factory
from connectors.kafka.client import Consumer, KafkaError, KafkaException, TopicPartition
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import ASK_AGAIN
from runtime.generator import GeneratedRecord
from tests.integration.helpers import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


class WorkerPool:
    """``shoal run`` worker processes of one job in one consumer group."""

    def __init__(
        self,
        job_spec: str,
        bootstrap: str,
        group: str,
        binds: Sequence[str],
        home: Path,
        extra: Sequence[str] = (),
    ) -> None:
        self.job_spec = job_spec
        self.bootstrap = bootstrap
        self.group = group
        self.binds = list(binds)
        self.home = home
        self.extra = list(extra)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.kills = 0
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, slot: int) -> None:
        """Start (or restart) the worker of ``slot``."""
        cmd = [sys.executable, "-m", "runtime.cli.main", "-v", "run", self.job_spec,
               "--bootstrap", self.bootstrap, "--group", self.group,
               "--worker-id", f"w{slot}", "--quiet", *self.extra]
        for b in self.binds:
            cmd += ["--bind", b]
        log = open(self.logs / f"w{slot}.log", "ab")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "SHOAL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        self.procs[slot] = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env=env,
                                            start_new_session=True)
        log.close()

    def kill(self, slot: int) -> None:
        """SIGKILL the worker of ``slot``."""
        proc = self.procs[slot]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            self.kills += 1

    def kill_while(
        self, busy: Callable[[], bool], slots: Sequence[int], min_kills: int, seed: int
    ) -> None:
        """Every 1.5-2.5 s (seeded), SIGKILL a random worker of ``slots`` and start it
        again, while ``busy()`` and until at least ``min_kills`` kills."""
        rng = random.Random(seed)
        while busy() or self.kills < min_kills:
            assert not self.crashed(), self.log_tail()
            slot = rng.choice(list(slots))
            self.kill(slot)
            self.start(slot)
            time.sleep(rng.uniform(1.5, 2.5))

    def stop(self, slot: int, timeout_s: float = 60.0) -> int:
        """SIGTERM the worker of ``slot`` and wait for its graceful exit; returns the code."""
        proc = self.procs.pop(slot)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"worker w{slot} did not stop within {timeout_s}s") from None

    def stop_all(self) -> list[int]:
        """Stop every worker gracefully."""
        return [self.stop(slot) for slot in list(self.procs)]

    def alive(self) -> list[int]:
        """Slots whose process runs."""
        return [s for s, p in self.procs.items() if p.poll() is None]

    def crashed(self) -> dict[int, int]:
        """Slots whose process exited on its own (not killed by us), with exit codes."""
        return {s: p.returncode for s, p in self.procs.items()
                if p.poll() is not None and p.returncode not in (-9, 0)}

    def log_tail(self, lines: int = 30) -> str:
        """The end of every worker log (for assertion messages), with live stacks."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(0.5)
        out = []
        for path in sorted(self.logs.glob("w*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


class Producer(threading.Thread):
    """Produces generated records at a steady rate in the background: to ``topic``, or
    with a mapping of stream name to topic, each record to its stream's topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str | Mapping[str, str],
        records: list[GeneratedRecord],
        rate: float,
        corrupt: Any = None,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.records, self.rate = bootstrap, records, rate
        self.topics = dict(topic) if isinstance(topic, Mapping) else {"playback": topic}
        self.corrupt = corrupt
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            sink = KafkaSink(self.bootstrap)
            encoders = {s: codec_factory()(SCHEMA[s]).encode for s in self.topics}
            t0 = time.monotonic()
            for i, rec in enumerate(self.records):
                data = encoders[rec.stream](rec.value)
                if self.corrupt is not None and rec.corrupt is not None:
                    data = self.corrupt(data, rec.corrupt)
                sink.write(self.topics[rec.stream], rec.key, data, None)
                self.sent = i + 1
                if i % 500 == 499:
                    sink.poll()
                    ahead = (i + 1) / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            sink.flush()
        except BaseException as exc:  # reported by the test
            self.error = exc


def group_lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records of ``topic`` not yet committed by ``group`` (read_committed end offsets)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = consumer.committed(tps, timeout=30)
                break
            except KafkaException as exc:  # the coordinator moving or loading: ask again
                error = exc.args[0] if exc.args else None
                if not (isinstance(error, KafkaError) and error.code() in ASK_AGAIN):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        committed = {tp.partition: tp.offset for tp in answer}
        lag = 0
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            lag += high - max(committed.get(p, 0), 0)
        return lag
    finally:
        consumer.close()


def chaos_line(kills: int, events: int, outputs: list[dict[str, Any]],
               reference: dict[tuple[str, int], int], *, key: str = "user_id",
               label: str = "chaos") -> tuple[str, int, int]:
    """Compare windowed counts per (``key``, window) with the reference:
    (line, lost, duplicated)."""
    seen = Counter((o[key], o["window_start_ms"]) for o in outputs)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    got = {(o[key], o["window_start_ms"]): o["count"] for o in outputs}
    missing = [k for k in reference if k not in got]
    wrong = [k for k, v in reference.items() if k in got and got[k] != v]
    lost = len(missing) + len(wrong)
    extra = sum(1 for k in got if k not in reference)
    line = (f"{label}: kills={kills} events={events} outputs={len(outputs)} "
            f"lost={lost} duplicated={duplicated + extra}")
    if lost:
        starts = sorted(k[1] for k in missing + wrong)
        line += (f" (missing={len(missing)} wrong={len(wrong)} "
                 f"window starts {starts[0]}..{starts[-1]}; "
                 f"e.g. {[(k, reference[k], got.get(k)) for k in (wrong or missing)[:3]]})")
    return line, lost, duplicated + extra


def shuffled_slots(rng: random.Random, slots: list[int]) -> int:
    """A random slot."""
    return rng.choice(slots)
