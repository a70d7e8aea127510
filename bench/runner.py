"""Run one implementation in its own process and measure it.

The child reports its record count and the wall-clock span from its first record
to the end of its last (``bench.common.Stopwatch``); the parent takes CPU seconds
(user + system) from the child's resource usage (``wait4``), samples its peak
resident set (``VmHWM``) while it runs, and checks the child's output topic
against the reference.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import PeerUnavailable, peer_python
from bench.topics import create_topics, read_topic
from bench.w1 import PARSERS, Reference, Verdict, verify

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Impl:
    """An implementation of a workload: which module runs it, in which environment."""

    name: str
    module: str
    variant: str = ""
    peer: str | None = None
    #: How its output is read (a key of ``bench.w1.PARSERS``); ``None``: no output.
    output: str | None = "w1-json"
    about: str = ""
    #: Run without being named in BENCH_ONLY.
    default: bool = True


W1_IMPLS: tuple[Impl, ...] = (
    Impl("count", "bench.impl_count", output=None, about="consume only: the client limit"),
    Impl("raw", "bench.impl_raw", about="hand-written confluent-kafka + fastavro loop"),
    Impl("shoal-memory", "bench.impl_shoal", "memory", about="Shoal, memory state"),
    Impl("shoal-rocksdb", "bench.impl_shoal", "rocksdb", about="Shoal, RocksDB state"),
    Impl(
        "shoal-eos",
        "bench.impl_shoal",
        "rocksdb-eos",
        about="Shoal, RocksDB state, exactly-once (the default of shoal run)",
    ),
    Impl("quix", "bench.impl_quix", peer="quix", about="Quix Streams, RocksDB state"),
    Impl("bytewax", "bench.impl_bytewax", peer="bytewax", about="Bytewax, event-time clock"),
    Impl(
        "bytewax-sysclock",
        "bench.impl_bytewax",
        "system-clock",
        peer="bytewax",
        about="Bytewax, default event clock (advances with wall time)",
        default=False,
    ),
    Impl(
        "faust",
        "bench.impl_faust",
        peer="faust",
        output="faust-changelog",
        about="Faust, RocksDB table; results read from the table's changelog",
    ),
)


@dataclass
class Context:
    """What every run of a workload shares."""

    bootstrap: str
    topic: str
    events: int
    partitions: int
    run_id: str
    workdir: Path
    timeout_s: float
    reference: Reference


@dataclass
class Outcome:
    """The measurements of one implementation (or why there are none)."""

    name: str
    events_per_s: float | None = None
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    elapsed_s: float | None = None
    cpu_measured_s: float | None = None
    #: Events per CPU second of the measured span: less sensitive to a shared machine.
    events_per_cpu_s: float | None = None
    records: int | None = None
    correct: bool | None = None
    check: str | None = None
    unavailable: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON form (``None`` fields left out)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {}) and k != "name"}


def _peak_rss_kb(pid: int) -> int | None:
    """The high-water mark of a live process's resident set (``VmHWM``), in kB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, Any, int | None, bool]:
    """Wait for the child.

    Returns:
        Exit code, resource usage, peak RSS in kB and whether it timed out. The peak
        is sampled from ``/proc`` while the child runs: ``ru_maxrss`` of a child is
        useless here, because Linux carries the high-water mark of the forked copy
        of this (large) parent across ``exec`` into it.
    """
    deadline = time.monotonic() + timeout_s
    timed_out = False
    peak: int | None = None
    while True:
        hwm = _peak_rss_kb(proc.pid)
        if hwm is not None:
            peak = hwm if peak is None else max(peak, hwm)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            return code, usage, peak, timed_out
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _tail(path: Path, lines: int = 12) -> str:
    """The last non-empty lines of a log, without terminal escape sequences."""
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def _reason(tail: str, code: int) -> str:
    """The line of a log tail that best says why a run failed."""
    lines = tail.splitlines()
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln.strip()[:200]
    return lines[-1].strip()[:200] if lines else f"exit code {code}"


def run_impl(
    impl: Impl, ctx: Context, round_no: int = 0, *, profile: Path | None = None
) -> Outcome:
    """Run ``impl`` over the context's input and measure it.

    Args:
        impl: the implementation.
        ctx: the shared input and settings.
        round_no: names the run's topics and files.
        profile: run under cProfile, writing the statistics there (times are then
            the profiler's, not the implementation's).
    """
    out = Outcome(impl.name)
    try:
        python = peer_python(impl.peer) if impl.peer else Path(sys.executable)
    except PeerUnavailable as exc:
        out.unavailable = str(exc)
        return out
    tag = f"{impl.name}-{'profile' if profile is not None else round_no}"
    out_topic = f"bench-{ctx.run_id}-out-{tag}"
    create_topics(ctx.bootstrap, [out_topic], ctx.partitions)
    report = ctx.workdir / f"{tag}.json"
    log = ctx.workdir / f"{tag}.log"
    state_dir = ctx.workdir / f"state-{tag}"
    state_dir.mkdir(parents=True, exist_ok=True)
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    cmd = [
        str(python),
        *profiler,
        "-m",
        impl.module,
        "--bootstrap", ctx.bootstrap,
        "--topic", ctx.topic,
        "--out-topic", out_topic,
        "--group", f"bench-{ctx.run_id}-{tag}",
        "--events", str(ctx.events),
        "--partitions", str(ctx.partitions),
        "--schema", str(REPO / "schemas" / "PlaybackEvent.avsc"),
        "--report", str(report),
        "--state-dir", str(state_dir),
        "--variant", impl.variant,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        code, usage, peak_kb, timed_out = _wait(proc, ctx.timeout_s)
    out.cpu_s = usage.ru_utime + usage.ru_stime
    out.max_rss_mb = peak_kb / 1024 if peak_kb is not None else None
    if timed_out:
        out.unavailable = f"did not finish {ctx.events:,} events within {ctx.timeout_s:.0f}s"
        return out
    if code != 0 or not report.exists():
        tail = _tail(log)
        out.unavailable = f"failed (exit {code}): {_reason(tail, code)}"
        out.extra["log_tail"] = tail
        return out
    rep = json.loads(report.read_text())
    out.records = rep.pop("records")
    out.elapsed_s = rep.pop("elapsed_s")
    out.cpu_measured_s = rep.pop("cpu_measured_s", None)
    out.versions = rep.pop("versions", {})
    if out.elapsed_s:
        out.events_per_s = out.records / out.elapsed_s
    if out.cpu_measured_s:
        out.events_per_cpu_s = out.records / out.cpu_measured_s
    if out.records != ctx.events:
        out.correct = False
        out.check = f"read {out.records} records, expected {ctx.events}"
    if impl.output is not None and out.correct is None:
        topic = rep.pop("output_topic", out_topic)
        verdict: Verdict = verify(
            ctx.reference, PARSERS[impl.output](read_topic(ctx.bootstrap, topic))
        )
        out.correct = verdict.correct
        out.check = verdict.summary()
    out.extra.update(rep)
    return out
