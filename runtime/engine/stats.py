"""Plain histograms the worker fills, and the typed snapshot the service reads.

The engine never imports a metrics library: it counts into fixed buckets (a list of
ints and a sum), and ``runtime.service.metrics`` turns a copy into Prometheus
histogram families. Observing is a ``bisect`` and two additions.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "CHECKPOINT_BOUNDS_S",
    "LATENCY_BOUNDS_S",
    "PHASES",
    "Histogram",
    "Phases",
    "WorkerStats",
]

#: Checkpoint durations (seconds): from a quick commit to one that nears the timeout.
CHECKPOINT_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Event-to-sink latency (seconds): wall clock at the write minus the record's event time.
LATENCY_BOUNDS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class Histogram:
    """Counts per bucket ``value <= bound`` (and one above the last bound), and a sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: Iterable[float]) -> None:
        """Count many values."""
        bounds, counts = self.bounds, self.counts
        total = 0.0
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            total += v
        self.total += total

    def snapshot(self) -> tuple[tuple[float, ...], list[int], float]:
        """``(bounds, counts, sum)``: a copy, safe to read on another thread."""
        return self.bounds, list(self.counts), self.total


HistogramSnapshot = tuple[tuple[float, ...], list[int], float]

#: Where a worker's time goes, in the order a record meets them: waiting for and
#: fetching input (``fetch``), decoding it (``decode``), the job's steps with their
#: state and timers (``operators``), encoding and handing outputs to the producer
#: (``emit``), writing state changes to changelogs and local stores (``state``), and
#: committing the checkpoint (``commit``: external sinks, offsets, the transaction).
PHASES = ("fetch", "decode", "operators", "emit", "state", "commit")


class Phases:
    """Seconds spent per phase of :data:`PHASES` (wall clock, summed per batch)."""

    __slots__ = PHASES

    def __init__(self) -> None:
        self.fetch = 0.0
        self.decode = 0.0
        self.operators = 0.0
        self.emit = 0.0
        self.state = 0.0
        self.commit = 0.0

    def snapshot(self) -> dict[str, float]:
        """Seconds per phase: a copy."""
        return {name: getattr(self, name) for name in PHASES}


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What a worker reports about itself, copied on the worker thread (a snapshot).

    The HTTP service, ``shoal run``'s counters and tests read this instead of the
    worker's own attributes.

    Attributes:
        failed: the worker loop failed (it is about to exit for a restart).
        uncommitted: records were read or outputs written since the last commit.
        counters: per-step counters summed over tasks, including closed ones.
        lag: records behind each input partition's end (when the consumer reports it).
        watermarks: task id -> watermark.
        partitions: task id -> its input partitions, sorted.
        state_entries: stateful step -> entries in its stores.
        checkpoints: committed checkpoints.
        checkpoint_seconds: duration of the last committed checkpoint.
        checkpoint_records: state changes in the last committed checkpoint.
        checkpoint_failures: checkpoints that lost a race with a rebalance.
        last_checkpoint_ms: wall clock of the last checkpoint pass (committed, or
            nothing to commit).
        checkpoint_interval_ms: how often a checkpoint is due.
        restore_seconds: time spent restoring state.
        restored_records: changelog records replayed.
        records_read: input records read.
        rewinds: rewinds to the last committed checkpoint.
        checkpoint_histogram: checkpoint durations (bounds, counts, sum).
        latency_histogram: event-to-sink latency (bounds, counts, sum).
        phase_seconds: seconds spent per phase of the loop (:data:`PHASES`).
    """

    failed: bool = False
    uncommitted: bool = False
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)
    partitions: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    state_entries: dict[str, int] = field(default_factory=dict)
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0
    checkpoint_records: int = 0
    checkpoint_failures: int = 0
    last_checkpoint_ms: int | None = None
    checkpoint_interval_ms: int = 1000
    restore_seconds: float = 0.0
    restored_records: int = 0
    records_read: int = 0
    rewinds: int = 0
    checkpoint_histogram: HistogramSnapshot | None = None
    latency_histogram: HistogramSnapshot | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
