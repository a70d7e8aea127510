"""How a workload's implementations are measured: throughput, latency, scaling, recovery.

* ``throughput``: each implementation over the prepared input (``BENCH_ROUNDS``
  times; the fastest counts).
* ``scaling`` (W5): throughput; the last implementation's events/s divided by the
  first's is its speed-up.
* ``latency`` (W4): throughput first (the peak), then a run over fresh topics that
  this process writes at half of that peak while the job runs. The producer stamps
  each record with its produce time; the output topic stamps each result with its
  append time (``LogAppendTime``); a result names the event time of the latest event
  it reflects (``updated_ms``), which leads back to that event's produce time.
* ``recovery`` (W7): the job runs until it is well into the input with its state
  checkpointed, is killed with SIGKILL, and is started again at once (with its local
  RocksDB state, or with it deleted so that it restores from the changelog); the
  time from the kill to the end of the first batch the new process processed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.runner import Context, Impl, Outcome, check_output, run_impl, start_child, wait_all
from bench.workloads import Workload, env_int


def _log(text: str) -> None:
    print(text, flush=True)


def _show(o: Outcome) -> None:
    if o.unavailable:
        _log(f"  unavailable: {o.unavailable}")
        return
    _log(
        f"  {o.events_per_s or 0:,.0f} events/s, {o.cpu_s or 0:.1f} CPU s, "
        f"{o.max_rss_mb or 0:,.0f} MB; {o.check or 'no output to check'}"
    )


def throughput(impls: list[Impl], ctx: Context, rounds: int) -> list[Outcome]:
    """Each implementation ``rounds`` times; the fastest run counts."""
    outcomes = []
    for impl in impls:
        best: Outcome | None = None
        for r in range(rounds):
            _log(f"{ctx.name}: running {impl.name} (round {r + 1}/{rounds}) ...")
            o = run_impl(impl, ctx, r)
            _show(o)
            if o.unavailable:
                best = best or o
                break
            if best is None or best.unavailable or (o.events_per_s or 0) > (best.events_per_s or 0):
                best = o
        assert best is not None
        outcomes.append(best)
    return outcomes


def scaling(impls: list[Impl], ctx: Context, rounds: int) -> list[Outcome]:
    """Throughput; then the speed-up of each multi-worker run over the one-worker run."""
    outcomes = throughput(impls, ctx, rounds)
    base = next((o for i, o in zip(impls, outcomes, strict=True) if i.processes == 1), None)
    for impl, o in zip(impls, outcomes, strict=True):
        if impl.processes > 1 and base is not None and base.events_per_s and o.events_per_s:
            o.speedup = o.events_per_s / base.events_per_s
            _log(f"  {impl.name}: {o.speedup:.2f}x {base.name}")
    return outcomes


# --- latency --------------------------------------------------------------------------


def percentiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.99)) -> dict[str, float]:
    """Nearest-rank percentiles (``p50``, ``p99``, ...) of ``values``; empty without values."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {}
    for q in qs:
        rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least 1
        out[f"p{round(q * 100):d}"] = ordered[int(rank) - 1]
    return out


def match_latencies(
    produced_at: dict[tuple[str, int], int], outputs: list[tuple[str, int, int]]
) -> tuple[list[float], int]:
    """Latency in ms of each output ``(user, updated_ms, appended ms)`` that leads back to an
    input; also how many did not (e.g. emitted by a timer)."""
    found, unmatched = [], 0
    for user, updated_ms, appended in outputs:
        sent = produced_at.get((user, updated_ms))
        if sent is None:
            unmatched += 1
        else:
            found.append(float(appended - sent))
    return found, unmatched


def _paced_input(ctx: Context, count: int) -> list[tuple[str, bytes, bytes, str, int]]:
    """``count`` generated records, encoded: (stream, key, value, user, event time)."""
    from bench.inputs import SCHEMAS, clean_config
    from connectors.codecs import codec_factory
    from runtime.generator import Generator

    # Another seed than the peak run's input: these are new events.
    config = clean_config(
        int(ctx.settings.get("seed", 1)) + 1,
        int(ctx.settings.get("users", 1000)),
        interactions=True,
    )
    codecs = {s: codec_factory()(schema).encode for s, schema in SCHEMAS.items()}
    out = []
    for rec in Generator(config):
        v = rec.value
        out.append((rec.stream, rec.key, codecs[rec.stream](v), v["user_id"], v["event_time_ms"]))
        if len(out) >= count:
            break
    return out


def _paced_run(impl: Impl, ctx: Context, rate: float, seconds: float) -> Outcome:
    from bench.inputs import Produced, _Writer
    from bench.topics import create_topics, read_topic_timed
    from connectors.codecs import codec_factory

    count = max(int(rate * seconds), 1)
    records = _paced_input(ctx, count)
    topics = {s: f"bench-{ctx.run_id}-w4-paced-{impl.name}-{s}" for s in ctx.inputs}
    create_topics(ctx.bootstrap, list(topics.values()), ctx.partitions)
    ends: dict[str, list[int]] = {}
    paced = replace(ctx, inputs=topics, events=len(records), ends=ends, topic=topics["playback"])
    ready = ctx.workdir / f"W4-{impl.name}-ready"
    ready.unlink(missing_ok=True)
    child = start_child(impl, paced, f"{impl.name}-paced", settings={"ready": str(ready)})
    deadline = time.monotonic() + 120
    while not ready.exists() and child.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    out = Outcome(impl.name)
    writer = _Writer(ctx.bootstrap, ctx.partitions, Produced())
    produced_at: dict[tuple[str, int], int] = {}
    started = time.monotonic()
    for n, (stream, key, value, user, t) in enumerate(records):
        due = started + n / rate
        now = time.monotonic()
        if due > now + 0.002:
            time.sleep(due - now)
        sent = time.time_ns() // 1_000_000
        writer.write(topics[stream], key, value, t, sent)
        produced_at[(user, t)] = sent
        if n % 1000 == 0:
            writer.sink.producer.poll(0)
    writer.flush()
    codes, cpu, peak_kb, timed_out = wait_all([child.proc], ctx.timeout_s)
    if timed_out or codes[0] != 0:
        out.unavailable = f"paced run failed (exit {codes[0]}, timed out: {timed_out})"
        return out
    decode = codec_factory().any_decoder("PersonalizationScore")
    rows = read_topic_timed(ctx.bootstrap, child.outputs["personalization-scores"])
    outputs = []
    for _, v, ts in rows:
        if v is not None:
            r = decode(v)
            outputs.append((r["user_id"], r["updated_ms"], ts))
    latencies, unmatched = match_latencies(produced_at, outputs)
    out.latency_ms = percentiles(latencies)
    out.extra.update(
        paced_rate=round(rate),
        paced_events=len(records),
        paced_outputs=len(outputs),
        unmatched_outputs=unmatched,
        paced_max_rss_mb=round((peak_kb or 0) / 1024),
    )
    return out


def latency(impls: list[Impl], ctx: Context, rounds: int) -> list[Outcome]:
    """Peak throughput, then latency p50/p99 at half of it (``BENCH_W4_SECONDS``, default 30)."""
    seconds = env_int("BENCH_W4_SECONDS", 30)
    outcomes = throughput(impls, ctx, rounds)
    for impl, o in zip(impls, outcomes, strict=True):
        if o.unavailable or not o.events_per_s:
            continue
        rate = o.events_per_s / 2
        _log(
            f"{ctx.name}: {impl.name} at {rate:,.0f} events/s for {seconds}s (half of its peak) ..."
        )
        paced = _paced_run(impl, ctx, rate, seconds)
        if paced.unavailable:
            o.extra["latency"] = paced.unavailable
            _log(f"  {paced.unavailable}")
            continue
        o.latency_ms = paced.latency_ms
        o.extra.update(paced.extra)
        _log(
            "  latency "
            + ", ".join(f"{k} {v:,.0f} ms" for k, v in o.latency_ms.items())
            + f" over {paced.extra['paced_outputs']:,} outputs"
        )
    return outcomes


# --- recovery -------------------------------------------------------------------------


def _progress(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def _recover(impl: Impl, ctx: Context) -> Outcome:
    out = Outcome(impl.name)
    keys = int(ctx.settings.get("keys", ctx.events))
    kill_at = keys + (ctx.events - keys) // 4
    progress = ctx.workdir / f"W7-{impl.name}-progress.json"
    progress.unlink(missing_ok=True)
    state_dir = ctx.workdir / f"state-W7-{impl.name}"
    group = f"bench-{ctx.run_id}-w7-{impl.name}"
    first = start_child(
        impl,
        ctx,
        f"{impl.name}-before",
        group=group,
        settings={"stop": "ends", "progress": str(progress)},
        state_dir=state_dir,
    )
    deadline = time.monotonic() + ctx.timeout_s
    while first.proc.poll() is None and time.monotonic() < deadline:
        now = _progress(progress)
        # Mid-stream, with the state of every key in a committed checkpoint.
        if int(now.get("records", 0)) >= kill_at and int(now.get("checkpoints", 0)) >= 2:
            break
        time.sleep(0.02)
    if first.proc.poll() is not None:
        out.unavailable = f"the first run ended (exit {first.proc.returncode}) before the kill"
        return out
    os.killpg(first.proc.pid, signal.SIGKILL)
    killed = time.time()
    first.proc.wait()
    before = _progress(progress)
    if "changelog" in impl.name:
        shutil.rmtree(state_dir / "w0", ignore_errors=True)
    second = start_child(
        impl,
        ctx,
        f"{impl.name}-after",
        group=group,
        outputs=first.outputs,
        settings={"stop": "ends"},
        state_dir=state_dir,
        profile=Path(profile) if (profile := os.environ.get("BENCH_W7_PROFILE")) else None,
    )
    codes, cpu, peak_kb, timed_out = wait_all([second.proc], ctx.timeout_s)
    out.cpu_s, out.max_rss_mb = cpu, (peak_kb or 0) / 1024
    if timed_out or codes[0] != 0 or not second.report.exists():
        out.unavailable = f"the restarted run failed (exit {codes[0]}, timed out: {timed_out})"
        return out
    rep = json.loads(second.report.read_text())
    if rep.get("first_step_wall"):
        out.recovery_s = rep["first_step_wall"] - killed
    if rep.get("elapsed_s"):
        out.events_per_s = rep["records"] / rep["elapsed_s"]
    out.records = rep["records"]
    out.extra.update(
        killed_after_records=before.get("records"),
        checkpoints_before_kill=before.get("checkpoints"),
        restored_records=rep.get("restored_records"),
        restore_s=rep.get("restore_s"),
        first_record_after_kill_s=(
            round(rep["first_record_wall"] - killed, 3) if rep.get("first_record_wall") else None
        ),
        # Where the time to recover went: the new process's imports, its worker's
        # start (consumer, producer, transactions) and the rest to its first batch.
        imports_after_kill_s=round(rep["main_wall"] - killed, 3) if rep.get("main_wall") else None,
        worker_started_after_kill_s=(
            round(rep["runner_wall"] - killed, 3) if rep.get("runner_wall") else None
        ),
    )
    check_output(impl, ctx, first.outputs, out)
    return out


def recovery(impls: list[Impl], ctx: Context, rounds: int) -> list[Outcome]:
    """Kill -9 mid-stream and restart, for each implementation."""
    outcomes = []
    for impl in impls:
        _log(f"{ctx.name}: {impl.name}: run, kill -9 mid-stream, restart ...")
        o = _recover(impl, ctx)
        if o.unavailable:
            _log(f"  unavailable: {o.unavailable}")
        else:
            _log(
                f"  processing again {o.recovery_s or 0:.2f}s after the kill "
                f"(restored {o.extra.get('restored_records')} changelog records in "
                f"{o.extra.get('restore_s')}s; imports done at "
                f"{o.extra.get('imports_after_kill_s')}s, worker started at "
                f"{o.extra.get('worker_started_after_kill_s')}s, first record at "
                f"{o.extra.get('first_record_after_kill_s')}s); {o.check}"
            )
        outcomes.append(o)
    return outcomes


SCENARIOS = {
    "throughput": throughput,
    "scaling": scaling,
    "latency": latency,
    "recovery": recovery,
}


def run_workload(workload: Workload, impls: list[Impl], ctx: Context, rounds: int) -> list[Outcome]:
    """Measure ``impls`` on ``workload`` the way its scenario says."""
    return SCENARIOS[workload.scenario](impls, ctx, rounds)
