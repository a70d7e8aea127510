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

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Impl:
    """An implementation of a workload: which module runs it, in which environment."""

    name: str
    module: str
    variant: str = ""
    peer: str | None = None
    #: How its output is read (a key of the workload's parsers); ``None``: no output.
    output: str | None = "w1-json"
    about: str = ""
    #: Run without being named in BENCH_ONLY.
    default: bool = True
    #: Worker processes run side by side in one consumer group (W5).
    processes: int = 1


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

#: W1's job on Shoal's Flink engine (W1F: its own, smaller input; see bench.workloads).
FLINK_IMPL = Impl(
    "shoal-flink",
    "bench.impl_flink",
    about="Shoal's Flink engine (PyFlink local mini cluster, exactly-once, RocksDB)",
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
    reference: Any
    #: The workload (``bench.workloads.Workload``).
    workload: Any = None
    #: Source name -> input topic (``{"playback": topic}`` for W1).
    inputs: dict[str, str] = field(default_factory=dict)
    #: Input topic -> records per partition (its end offsets).
    ends: dict[str, list[int]] = field(default_factory=dict)
    #: Settings every implementation process of the workload gets.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The workload's name."""
        return str(self.workload.name)


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
    #: Event-to-output latency percentiles (W4), recovery seconds (W7), speed-up (W5).
    latency_ms: dict[str, float] = field(default_factory=dict)
    recovery_s: float | None = None
    speedup: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON form (``None`` fields left out)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {}) and k != "name"}

    @property
    def failed(self) -> bool:
        """Whether there is no measurement."""
        return self.unavailable is not None


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


def wait_all(
    procs: list[subprocess.Popen[bytes]], timeout_s: float
) -> tuple[list[int], float, int | None, bool]:
    """Wait for several children at once.

    Returns:
        Their exit codes, their CPU seconds together, the largest peak RSS in kB and
        whether the deadline passed (all are killed then).
    """
    deadline = time.monotonic() + timeout_s
    timed_out = False
    peak: int | None = None
    codes: dict[int, int] = {}
    cpu = 0.0
    while len(codes) < len(procs):
        for proc in procs:
            if proc.pid in codes:
                continue
            hwm = _peak_rss_kb(proc.pid)
            if hwm is not None:
                peak = hwm if peak is None else max(peak, hwm)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                codes[proc.pid] = proc.returncode = os.waitstatus_to_exitcode(status)
                cpu += usage.ru_utime + usage.ru_stime
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
            for proc in procs:
                if proc.pid not in codes:
                    os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)
    return [codes[p.pid] for p in procs], cpu, peak, timed_out


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


@dataclass
class Child:
    """A started implementation process: its files and its output topics."""

    proc: subprocess.Popen[bytes]
    report: Path
    log: Path
    outputs: dict[str, str]


def output_topics(impl: Impl, ctx: Context, tag: str) -> dict[str, str]:
    """Sink name -> output topic of one run (created here with unlimited retention)."""
    sinks = ctx.workload.sinks
    topics = {sink: f"bench-{ctx.run_id}-{ctx.name.lower()}-out-{tag}-{sink}" for sink in sinks}
    create_topics(ctx.bootstrap, list(topics.values()), ctx.partitions, ctx.workload.output_config)
    return topics


def start_child(
    impl: Impl,
    ctx: Context,
    tag: str,
    *,
    group: str | None = None,
    outputs: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    profile: Path | None = None,
    python: Path | None = None,
    state_dir: Path | None = None,
) -> Child:
    """Start one implementation process (its own session, output to a log file)."""
    outputs = outputs if outputs is not None else output_topics(impl, ctx, tag)
    report = ctx.workdir / f"{ctx.name}-{tag}.json"
    log = ctx.workdir / f"{ctx.name}-{tag}.log"
    report.unlink(missing_ok=True)
    state_dir = state_dir or ctx.workdir / f"state-{ctx.name}-{tag}"
    state_dir.mkdir(parents=True, exist_ok=True)
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    every = {
        **ctx.settings,
        "workload": ctx.name,
        "inputs": ctx.inputs or {"playback": ctx.topic},
        "outputs": outputs,
        "ends": ctx.ends,
        **(settings or {}),
    }
    cmd = [
        str(python or sys.executable),
        *profiler,
        "-m",
        impl.module,
        "--bootstrap", ctx.bootstrap,
        "--topic", ctx.topic,
        "--out-topic", next(iter(outputs.values())),
        "--group", group or f"bench-{ctx.run_id}-{ctx.name.lower()}-{tag}",
        "--events", str(ctx.events),
        "--partitions", str(ctx.partitions),
        "--schema", str(REPO / "schemas" / "PlaybackEvent.avsc"),
        "--report", str(report),
        "--state-dir", str(state_dir),
        "--variant", impl.variant,
        "--settings", json.dumps(every),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Child(proc, report, log, outputs)


def read_report(child: Child, code: int, out: Outcome) -> dict[str, Any] | None:
    """The child's report, or ``None`` with ``out.unavailable`` saying why."""
    if code != 0 or not child.report.exists():
        tail = _tail(child.log)
        out.unavailable = f"failed (exit {code}): {_reason(tail, code)}"
        out.extra["log_tail"] = tail
        return None
    rep: dict[str, Any] = json.loads(child.report.read_text())
    return rep


def check_output(impl: Impl, ctx: Context, outputs: dict[str, str], out: Outcome) -> None:
    """Compare the run's output topics with the reference (sets ``correct`` and ``check``)."""
    if impl.output is None or out.correct is not None:
        return
    # An implementation may say where its results really are (Faust: its table's changelog).
    elsewhere = out.extra.pop("output_topic", None)
    if elsewhere:
        outputs = {next(iter(outputs)): elsewhere}
    read = {sink: read_topic(ctx.bootstrap, topic) for sink, topic in outputs.items()}
    verdict = ctx.workload.check(ctx.reference, impl.output, read)
    out.correct = verdict.correct
    out.check = verdict.summary()


def run_impl(
    impl: Impl,
    ctx: Context,
    round_no: int = 0,
    *,
    profile: Path | None = None,
    settings: dict[str, Any] | None = None,
    check: bool = True,
) -> Outcome:
    """Run ``impl`` over the context's input and measure it.

    With ``impl.processes`` > 1, that many workers run side by side in one consumer
    group; events/s is then the input over the span from the first record any of
    them received to the end of the last one any of them processed.

    Args:
        impl: the implementation.
        ctx: the shared input and settings.
        round_no: names the run's topics and files.
        profile: run under cProfile, writing the statistics there (times are then
            the profiler's, not the implementation's).
        settings: more settings for the implementation process.
        check: compare the output with the reference.
    """
    out = Outcome(impl.name)
    try:
        python = peer_python(impl.peer) if impl.peer else Path(sys.executable)
    except PeerUnavailable as exc:
        out.unavailable = str(exc)
        return out
    tag = f"{impl.name}-{'profile' if profile is not None else round_no}"
    outputs = output_topics(impl, ctx, tag)
    group = f"bench-{ctx.run_id}-{ctx.name.lower()}-{tag}"
    children = [
        start_child(
            impl,
            ctx,
            tag if impl.processes == 1 else f"{tag}-w{i}",
            group=group,
            outputs=outputs,
            settings={
                # Workers sharing the input stop at its end offsets, not at a count.
                **({"stop": "ends"} if impl.processes > 1 else {}),
                **(settings or {}),
                "worker_id": f"w{i}",
                "processes": impl.processes,
            },
            profile=profile,
            python=python,
            state_dir=ctx.workdir / f"state-{ctx.name}-{tag}",
        )
        for i in range(impl.processes)
    ]
    codes, cpu, peak_kb, timed_out = wait_all([c.proc for c in children], ctx.timeout_s)
    out.cpu_s = cpu
    out.max_rss_mb = peak_kb / 1024 if peak_kb is not None else None
    if timed_out:
        out.unavailable = f"did not finish {ctx.events:,} events within {ctx.timeout_s:.0f}s"
        return out
    reports = []
    for child, code in zip(children, codes, strict=True):
        rep = read_report(child, code, out)
        if rep is None:
            return out
        reports.append(rep)
    merge_reports(reports, out)
    if out.records != ctx.events:
        out.correct = False
        out.check = f"read {out.records} records, expected {ctx.events}"
    if check:
        check_output(impl, ctx, outputs, out)
    return out


def merge_reports(reports: list[dict[str, Any]], out: Outcome) -> None:
    """Fill ``out`` from the reports of one or more worker processes."""
    out.records = sum(int(r.pop("records")) for r in reports)
    elapsed = [r.pop("elapsed_s") for r in reports]
    cpu = [r.pop("cpu_measured_s", None) for r in reports]
    firsts = [r.pop("wall_first", None) for r in reports]
    lasts = [r.pop("wall_last", None) for r in reports]
    out.versions = reports[0].pop("versions", {})
    settled = [r.pop("wall_settled", None) for r in reports]
    settled_records = [r.pop("records_settled", None) for r in reports]
    measured = out.records
    if len(reports) == 1:
        out.elapsed_s = elapsed[0]
    elif all(firsts) and all(lasts):
        end = max(x for x in lasts if x)
        if all(settled) and all(n is not None for n in settled_records):
            # From the moment the group settled (the first worker holding its share):
            # the records the workers read before it, and their joins, are left out.
            start = min(x for x in settled if x)
            measured = out.records - sum(n for n in settled_records if n is not None)
            out.extra["settled_after_records"] = out.records - measured
        else:
            start = min(x for x in firsts if x)
        out.elapsed_s = end - start
        out.extra["workers"] = [
            {"records": r.get("worker_records"), "elapsed_s": e}
            for r, e in zip(reports, elapsed, strict=True)
        ]
    if all(c is not None for c in cpu):
        out.cpu_measured_s = sum(c for c in cpu if c is not None)
    if out.elapsed_s:
        out.events_per_s = measured / out.elapsed_s
    if out.cpu_measured_s:
        out.events_per_cpu_s = out.records / out.cpu_measured_s
    for rep in reports:
        rep.pop("worker_records", None)
        for k, v in rep.items():
            if isinstance(v, int | float) and isinstance(out.extra.get(k), int | float):
                out.extra[k] += v
            else:
                out.extra.setdefault(k, v)
