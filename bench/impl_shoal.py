"""``shoal-*``: W1 as a Shoal job, run the way the CLI runs jobs (``KafkaRunner``).

The job uses only the public API, as a job author would write it. Variants:

* ``memory``: at-least-once, memory state;
* ``rocksdb``: at-least-once, RocksDB state;
* ``rocksdb-eos``: exactly-once (Kafka transactions), RocksDB state — the default
  configuration of ``shoal run``.

Every second the worker checkpoints: outputs, state changes (to the changelog
topic) and input offsets, together.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bench.common import BOUND_MS, WINDOW_MS, Stopwatch, package_version, parse_args, w1_value
from runtime import Job, WatermarkStrategy, Window, windows
from runtime.aggregates import Count
from runtime.api.bindings import Bindings
from runtime.engine.worker import WorkerOptions
from runtime.runner import KafkaRunner, RunConfig

VARIANTS = {
    "memory": ("memory", "at_least_once"),
    "rocksdb": ("rocksdb", "at_least_once"),
    "rocksdb-eos": ("rocksdb", "exactly_once"),
}


def per_user(user: str, window: Window, count: int) -> dict[str, Any]:
    """One closed window."""
    return w1_value(user, window.start_ms, count)


def build_job(name: str) -> Job:
    """W1: PlaybackEvents per user in 10-second tumbling event-time windows."""
    job = Job(name)
    plays = job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(milliseconds=BOUND_MS)),
    )
    (
        plays.key_by("by_user", lambda e: e["user_id"], repartition=False)
        .window("per_user_10s", windows.tumbling(timedelta(milliseconds=WINDOW_MS)))
        .aggregate(Count(), output=per_user)
        .sink("counts", schema=None)
    )
    return job


class TimedSource:
    """The source as the worker sees it, starting the stopwatch at the first record."""

    def __init__(self, source: Any, watch: Stopwatch) -> None:
        self.source = source
        self.watch = watch

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        """Poll the real source."""
        msgs = self.source.poll(max_records, timeout_s)
        if msgs:
            self.watch.start()
        return msgs

    def close(self) -> None:
        """Close the real source."""
        self.source.close()


def main() -> None:
    """Run W1 over ``--events`` records."""
    args = parse_args(__doc__ or "")
    if args.variant not in VARIANTS:
        raise SystemExit(f"unknown variant {args.variant!r}: one of {', '.join(VARIANTS)}")
    state, guarantee = VARIANTS[args.variant]
    # The group names the job too, so changelog topics are fresh for every run.
    job = build_job(args.group)
    bindings = Bindings.for_job(job, [f"playback={args.topic}", f"counts={args.out_topic}"])
    config = RunConfig(
        bootstrap=args.bootstrap,
        guarantee=guarantee,
        state=state,
        state_dir=args.state_dir,
        group=args.group,
        worker_id="w0",
        output_partitions=args.partitions,
        options=WorkerOptions(batch_size=10_000),
    )
    runner = KafkaRunner(job, bindings, config)
    worker = runner.worker
    assert worker is not None
    watch = Stopwatch()
    source = TimedSource(runner.source, watch)
    wanted, step = args.events, worker.step
    try:
        while worker.records_read < wanted:
            step(source)
        watch.stop()
        worker.checkpoint()
        counters = worker.counters()
    finally:
        runner.close()
    watch.records = worker.records_read
    watch.extra.update(
        outputs=counters["counts"]["in"],
        late=counters["per_user_10s"]["late"],
        dead_lettered=sum(c["dead_lettered"] for c in counters.values()),
        checkpoints=worker.checkpoints,
        versions={"shoal": package_version("shoal")},
    )
    watch.write(args.report)


if __name__ == "__main__":
    main()
