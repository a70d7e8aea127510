"""Plain histograms the worker fills and the metrics endpoint reads.

The engine never imports a metrics library: it counts into fixed buckets (a list of
ints and a sum), and ``runtime.service.metrics`` turns a copy into Prometheus
histogram families. Observing is a ``bisect`` and two additions.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["CHECKPOINT_BOUNDS_S", "LATENCY_BOUNDS_S", "Histogram"]

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
