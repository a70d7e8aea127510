"""``shoal-*``: a workload's Shoal job, run the way the CLI runs jobs (``KafkaRunner``).

The jobs use only the public API, as a job author would write it: W1 and W5 the
per-user count below, W2 ``jobs.sessionization``, W3 ``jobs.qoe``, W4
``jobs.personalization``, W6 and W7 the per-key count below. Variants:

* ``memory``: at-least-once, memory state;
* ``rocksdb``: at-least-once, RocksDB state;
* ``rocksdb-eos``: exactly-once (Kafka transactions), RocksDB state — the default
  configuration of ``shoal run``.

Every second the worker checkpoints: outputs, state changes (to the changelog
topic) and input offsets, together.

Settings from the parent (``--settings``): input and output topics by name; how to
stop (after ``--events`` input records, or once every assigned input partition
reached its end offset: ``"stop": "ends"``, for workers that share the input);
``ready`` (a file created once the worker has its partitions, for a paced
producer); ``progress`` (a file rewritten after each checkpoint, for a parent that
kills the worker mid-stream).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import BOUND_MS, WINDOW_MS, Stopwatch, package_version, parse_args, w1_value
from connectors.avro import native as native_decoder
from runtime import (
    Job,
    Json,
    ProcessContext,
    ValueState,
    WatermarkStrategy,
    Window,
    field,
    windows,
)
from runtime.aggregates import Count
from runtime.api.bindings import Bindings
from runtime.api.choices import Guarantee, StateBackendName
from runtime.composition import kafka_runner
from runtime.engine.worker import WorkerOptions
from runtime.runner import RunConfig

VARIANTS: dict[str, tuple[StateBackendName, Guarantee]] = {
    "memory": ("memory", "at_least_once"),
    "rocksdb": ("rocksdb", "at_least_once"),
    "rocksdb-eos": ("rocksdb", "exactly_once"),
}


def per_user(user: str, window: Window, count: int) -> dict[str, Any]:
    """One closed window."""
    return w1_value(user, window.start_ms, count)


def build_w1(name: str) -> Job:
    """W1: PlaybackEvents per user in 10-second tumbling event-time windows."""
    job = Job(name)
    plays = job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=field("event_time_ms"),
        watermarks=WatermarkStrategy.bounded(timedelta(milliseconds=BOUND_MS)),
    )
    (
        plays.key_by("by_user", field("user_id"), repartition=False)
        .window("per_user_10s", windows.tumbling(timedelta(milliseconds=WINDOW_MS)))
        .aggregate(Count(), output=per_user)
        .sink("counts", Json())
    )
    return job


COUNT = ValueState("count", default=0)


class CountPerKey:
    """``KeyedProcessFunction``: a count per key; emits a key's count from its second event."""

    states = (COUNT,)

    def process(self, value: dict[str, Any], ctx: ProcessContext) -> Iterable[dict[str, Any]]:
        """Count one event."""
        state = ctx.state(COUNT)
        n = state.get() + 1
        state.set(n)
        return [{"key": value["user_id"], "count": n}] if n > 1 else []


def build_keyed(name: str) -> Job:
    """W6/W7: a count per key (user id) in keyed state, never expired."""
    job = Job(name)
    (
        job.source(
            "playback",
            schema="PlaybackEvent",
            timestamp=lambda e: e["event_time_ms"],
            watermarks=WatermarkStrategy.bounded(timedelta(milliseconds=BOUND_MS)),
        )
        .key_by("by_key", lambda e: e["user_id"], repartition=False)
        .process("count_per_key", CountPerKey())
        .sink("counts", Json())
    )
    return job


def build_w4(name: str, seed: int, users: int) -> Job:
    """W4: ``jobs.personalization`` with the bench's settings, over the generated input's
    catalogue (the one the reference scores)."""
    from bench.checks import W4_PARAMS, personalization_catalogue
    from jobs.personalization import Catalogue
    from jobs.personalization import build as build_personalization

    p = W4_PARAMS
    return build_personalization(
        half_life=timedelta(milliseconds=p.half_life_ms),
        top_n=p.top_n,
        catalogue=Catalogue.of(personalization_catalogue(seed, users)),
        abandon_after=timedelta(milliseconds=p.abandon_after_ms),
        min_change=p.min_change,
        max_out_of_order=timedelta(milliseconds=BOUND_MS),
        name=name,
    )


def build_job(workload: str, name: str, settings: dict[str, Any] | None = None) -> Job:
    """The Shoal job of a workload (``settings``: the parent's, for W4's seed and users)."""
    if workload in ("W1", "W1F", "W5"):
        return build_w1(name)
    if workload == "W2":
        from jobs.sessionization import build

        return build(name=name)
    if workload == "W3":
        from jobs.qoe import build as build_qoe

        return build_qoe(name=name)
    if workload == "W4":
        settings = settings or {}
        return build_w4(name, int(settings.get("seed", 1)), int(settings.get("users", 1000)))
    if workload in ("W6", "W7"):
        return build_keyed(name)
    raise SystemExit(f"no Shoal job for workload {workload!r}")


class TimedSource:
    """The source as the worker sees it: starts the stopwatch, counts input records."""

    def __init__(self, source: Any, watch: Stopwatch, inputs: set[str]) -> None:
        self.source = source
        self.watch = watch
        self.inputs = inputs
        self.records = 0
        #: Epoch time at which the first record arrived (W7 measures recovery with it).
        self.first_wall: float | None = None

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        """Poll the real source."""
        msgs = self.source.poll(max_records, timeout_s)
        if msgs:
            self.watch.start()
            if self.first_wall is None:
                self.first_wall = time.time()
            inputs = self.inputs
            self.records += sum(1 for m in msgs if m.topic() in inputs)
        return msgs

    def close(self) -> None:
        """Close the real source."""
        self.source.close()


def at_ends(worker: Any, ends: dict[str, list[int]]) -> bool:
    """Whether the worker holds input partitions and has read each to its end offset."""
    mine = [(t, p) for (t, p) in worker.positions if t in ends]
    return bool(mine) and all(worker.positions[(t, p)] >= ends[t][p] for t, p in mine)


def drain(worker: Any, source: TimedSource, watch: Stopwatch, quiet_s: float = 3.0) -> None:
    """Commit, then keep stepping until internal (repartition) topics stay quiet.

    Downstream tasks of a repartitioning ``key_by`` read the records (and watermark
    markers) of the last input only after they are committed; the measured span ends
    when the last of them has been processed.
    """
    while True:
        worker.checkpoint()
        deadline = time.monotonic() + quiet_s
        read = 0
        while time.monotonic() < deadline:
            n = worker.step(source)
            if n:
                read += n
                watch.stop()
                deadline = time.monotonic() + quiet_s
        if not read:
            return


def write_progress(path: Path, worker: Any, source: TimedSource) -> None:
    """Rewrite the progress file (atomically): input records and checkpoints so far.

    Once per batch of up to 10,000 records: a small cost, paid only where a parent
    watches (W7).
    """
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"records": source.records, "checkpoints": worker.checkpoints}))
    os.replace(tmp, path)


def main() -> None:
    """Run the workload's job over its input."""
    main_wall = time.time()  # imports done (W7 splits its recovery time with it)
    args = parse_args(__doc__ or "")
    if args.variant not in VARIANTS:
        raise SystemExit(f"unknown variant {args.variant!r}: one of {', '.join(VARIANTS)}")
    state, guarantee = VARIANTS[args.variant]
    settings = args.settings
    workload = settings.get("workload", "W1")
    inputs = settings.get("inputs") or {"playback": args.topic}
    outputs = settings.get("outputs") or {"counts": args.out_topic}
    ends: dict[str, list[int]] = settings.get("ends") or {}
    # The group names the job too, so changelog topics are fresh for every run.
    job = build_job(workload, args.group, settings)
    binds = [f"{n}={t}" for n, t in {**inputs, **outputs}.items()]
    bindings = Bindings.for_job(job, binds)
    config = RunConfig(
        bootstrap=args.bootstrap,
        guarantee=guarantee,
        state=state,
        state_dir=args.state_dir,
        group=args.group,
        worker_id=settings.get("worker_id", "w0"),
        output_partitions=args.partitions,
        options=WorkerOptions(batch_size=10_000),
    )
    runner = kafka_runner(job, bindings, config)
    runner_wall = time.time()
    worker = runner.worker
    assert worker is not None
    watch = Stopwatch()
    source = TimedSource(runner.source, watch, set(inputs.values()))
    step = worker.step
    by_ends = settings.get("stop") == "ends"
    progress = Path(settings["progress"]) if settings.get("progress") else None
    first_step_wall = None
    # Several workers in one group (W5): the group is settled once this worker holds
    # its share of the input partitions; the rate is measured from there, so that the
    # first joins and their rebalance are not part of it.
    processes = int(settings.get("processes", 1))
    share = args.partitions // processes if processes > 1 else None
    input_topics = set(inputs.values())
    try:
        if settings.get("ready"):
            while not worker.positions:
                step(source)
            Path(settings["ready"]).touch()
        while not (at_ends(worker, ends) if by_ends else source.records >= args.events):
            if step(source):
                if first_step_wall is None:
                    first_step_wall = time.time()
                if progress is not None:
                    write_progress(progress, worker, source)
            if share is not None and "wall_settled" not in watch.extra:
                held = sum(1 for t, _ in worker.positions if t in input_topics)
                if held == share:
                    watch.extra.update(wall_settled=time.time(), records_settled=source.records)
        watch.stop()
        if worker.internal_topics:
            drain(worker, source, watch)
        worker.checkpoint()
        counters = worker.counters()
        phases = worker.snapshot().phase_seconds
    finally:
        runner.close()
    watch.records = source.records
    sink_in = sum(counters[s.name]["in"] for s in job.sinks if s.name in counters)
    watch.extra.update(
        outputs=sink_in,
        late=sum(c.get("late", 0) for c in counters.values()),
        dead_lettered=sum(c["dead_lettered"] for c in counters.values()),
        checkpoints=worker.checkpoints,
        worker_records=source.records,
        first_record_wall=source.first_wall,
        first_step_wall=first_step_wall,
        main_wall=main_wall,
        runner_wall=runner_wall,
        restored_records=worker.restored_records,
        restore_s=round(worker.restore_seconds, 3),
        versions={"shoal": package_version("shoal")},
        # Which Avro decoder read the input (SHOAL_NATIVE_DECODER=0: fastavro).
        decoder="native" if native_decoder.enabled() else "fastavro",
        # Where the time went (the worker loop's counters; summed over W5's workers).
        **{f"phase_{name}_s": round(seconds, 4) for name, seconds in phases.items()},
    )
    watch.write(args.report)


if __name__ == "__main__":
    main()
