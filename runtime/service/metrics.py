"""``/metrics``: Prometheus metrics of one worker, read from the worker on each scrape.

A custom collector on an injected ``CollectorRegistry`` (never the global one, so
several workers, or tests, live in one process) turns a snapshot of the worker
into metric families. The engine keeps plain per-batch counters; nothing here adds
work to the hot path. Every family has the labels ``shoal_job`` (the Shoal job's name:
not ``job``, which Prometheus sets to the scrape job itself, so no ``honor_labels`` is
needed) and ``worker`` (the worker's id); per-step families add ``step``, lag adds
``topic`` and ``partition``, watermarks add ``task``. The process, platform and garbage
collector families of the Prometheus client are registered beside them
(:func:`register_standard`).

Metric names are a contract: ``deploy/grafana`` and ``deploy/prometheus`` use them,
and a test checks that every name they use is exported (:data:`METRIC_NAMES`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from runtime.service.handle import NO_WATERMARK, WorkerHandle

# The one module that imports prometheus_client; the rest of the service uses these names.
__all__ = [
    "CONTENT_TYPE",
    "METRIC_NAMES",
    "CollectorRegistry",
    "WorkerCollector",
    "register_standard",
    "render",
]

_BASE = ("shoal_job", "worker")

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: step counter key -> metric family (``_total`` is appended on exposition)
_STEP_COUNTERS = {
    "in": ("shoal_step_records_in", "Records that reached the step."),
    "out": ("shoal_step_records_out", "Records the step emitted."),
    "processed": ("shoal_step_records_processed", "Records neither late nor dead-lettered."),
    "late": ("shoal_step_records_late", "Records after allowed lateness (late output)."),
    "dead_lettered": (
        "shoal_step_records_dead_lettered",
        "Records the step rejected (dead letters, or skipped by the error policy).",
    ),
}

#: Every sample name the collector exports (as it appears in a scrape).
METRIC_NAMES: frozenset[str] = frozenset(
    [f"{name}_total" for name, _ in _STEP_COUNTERS.values()]
    + [
        "shoal_step_state_entries",
        "shoal_consumer_lag_records",
        "shoal_task_watermark_timestamp_seconds",
        "shoal_task_watermark_lag_seconds",
        "shoal_checkpoint_duration_seconds",
        "shoal_checkpoint_seconds_bucket",
        "shoal_checkpoint_seconds_sum",
        "shoal_checkpoint_seconds_count",
        "shoal_event_to_sink_seconds_bucket",
        "shoal_event_to_sink_seconds_sum",
        "shoal_event_to_sink_seconds_count",
        "shoal_checkpoint_size_records",
        "shoal_checkpoints_total",
        "shoal_checkpoint_failures_total",
        "shoal_last_checkpoint_age_seconds",
        "shoal_state_restore_seconds_total",
        "shoal_state_restored_records_total",
        "shoal_records_read_total",
        "shoal_rewinds_total",
        "shoal_phase_seconds_total",
        "shoal_tasks",
        "shoal_worker_responsive",
        "shoal_tap_subscribers",
        "shoal_tap_records_total",
        "shoal_tap_dropped_records_total",
    ]
)


class WorkerCollector(Collector):
    """Collects one worker's metrics from a fresh (or shared, recent) snapshot."""

    def __init__(self, handle: WorkerHandle) -> None:
        self.handle = handle

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not wait for the worker thread."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metric families of the current snapshot."""
        handle = self.handle
        snap = handle.snapshot()
        job = base = (handle.job_name, handle.worker_id)
        step_families = {
            key: CounterMetricFamily(name, doc, labels=[*_BASE, "step"])
            for key, (name, doc) in _STEP_COUNTERS.items()
        }
        for step in handle.steps:
            counts = snap.stats.counters.get(step.name, {})
            for key, family in step_families.items():
                family.add_metric([*base, step.name], counts.get(key, 0))
        yield from step_families.values()

        entries = GaugeMetricFamily(
            "shoal_step_state_entries",
            "Keyed state entries of a stateful step (values, windows and timers).",
            labels=[*_BASE, "step"],
        )
        for step in handle.steps:
            if step.stateful:
                entries.add_metric([*base, step.name], snap.stats.state_entries.get(step.name, 0))
        yield entries

        lag = GaugeMetricFamily(
            "shoal_consumer_lag_records",
            "Records behind the end of an input partition (as of the last checkpoint).",
            labels=[*_BASE, "topic", "partition"],
        )
        for (topic, partition), behind in sorted(snap.stats.lag.items()):
            lag.add_metric([*base, topic, str(partition)], behind)
        yield lag

        mark = GaugeMetricFamily(
            "shoal_task_watermark_timestamp_seconds",
            "Event-time watermark of a task (UTC epoch seconds).",
            labels=[*_BASE, "task"],
        )
        mark_lag = GaugeMetricFamily(
            "shoal_task_watermark_lag_seconds",
            "Wall clock minus the task's watermark.",
            labels=[*_BASE, "task"],
        )
        for tid, wm in sorted(snap.stats.watermarks.items()):
            if wm == NO_WATERMARK:
                continue
            mark.add_metric([*base, str(tid)], wm / 1000)
            mark_lag.add_metric([*base, str(tid)], (snap.time_ms - wm) / 1000)
        yield mark
        yield mark_lag

        yield _gauge(
            "shoal_checkpoint_duration_seconds",
            "Duration of the last committed checkpoint.",
            job,
            snap.stats.checkpoint_seconds,
        )
        if snap.stats.checkpoint_histogram is not None:
            yield _histogram(
                "shoal_checkpoint_seconds",
                "Durations of committed checkpoints.",
                job,
                snap.stats.checkpoint_histogram,
            )
        if snap.stats.latency_histogram is not None:
            yield _histogram(
                "shoal_event_to_sink_seconds",
                "Wall clock at the sink write minus the output record's event time.",
                job,
                snap.stats.latency_histogram,
            )
        yield _gauge(
            "shoal_checkpoint_size_records",
            "State changes (changelog records) written by the last committed checkpoint.",
            job,
            snap.stats.checkpoint_records,
        )
        yield _counter("shoal_checkpoints", "Committed checkpoints.", job, snap.stats.checkpoints)
        yield _counter(
            "shoal_checkpoint_failures",
            "Checkpoints that aborted (the worker rewound to the last committed one).",
            job,
            snap.stats.checkpoint_failures,
        )
        if snap.stats.last_checkpoint_ms is not None:
            yield _gauge(
                "shoal_last_checkpoint_age_seconds",
                "Time since the last checkpoint pass (committed, or nothing to commit).",
                job,
                max(0.0, (snap.time_ms - snap.stats.last_checkpoint_ms) / 1000),
            )
        yield _counter(
            "shoal_state_restore_seconds",
            "Time spent restoring state from changelogs.",
            job,
            snap.stats.restore_seconds,
        )
        yield _counter(
            "shoal_state_restored_records",
            "Changelog records applied while restoring state.",
            job,
            snap.stats.restored_records,
        )
        yield _counter("shoal_records_read", "Input records read.", job, snap.stats.records_read)
        yield _counter(
            "shoal_rewinds", "Rewinds to the last committed checkpoint.", job, snap.stats.rewinds
        )
        phases = CounterMetricFamily(
            "shoal_phase_seconds",
            "Seconds the worker loop spent per phase (fetch, decode, operators, emit, state, "
            "commit).",
            labels=[*_BASE, "phase"],
        )
        for phase, seconds in snap.stats.phase_seconds.items():
            phases.add_metric([*job, phase], seconds)
        yield phases
        yield _gauge(
            "shoal_tasks",
            "Tasks (input partitions' pipelines) running.",
            job,
            len(snap.stats.watermarks),
        )
        yield _gauge(
            "shoal_worker_responsive",
            "1 when the worker thread answered the scrape in time, else 0 (stale values).",
            job,
            1.0 if snap.responsive else 0.0,
        )
        yield from self._taps(job)

    def _taps(self, job: tuple[str, str]) -> Iterator[Metric]:
        subscribers = GaugeMetricFamily(
            "shoal_tap_subscribers", "Live SSE subscribers of a step.", labels=[*_BASE, "step"]
        )
        sent = CounterMetricFamily(
            "shoal_tap_records", "Records queued to live tap subscribers.", labels=[*_BASE, "step"]
        )
        dropped = CounterMetricFamily(
            "shoal_tap_dropped_records",
            "Records dropped because a tap subscriber read too slowly.",
            labels=[*_BASE, "step"],
        )
        for step, (n, queued, lost) in sorted(self.handle.taps.stats().items()):
            subscribers.add_metric([*job, step], n)
            sent.add_metric([*job, step], queued)
            dropped.add_metric([*job, step], lost)
        yield subscribers
        yield sent
        yield dropped


def _gauge(name: str, doc: str, job: tuple[str, str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(_BASE))
    family.add_metric(list(job), value)
    return family


def _counter(name: str, doc: str, job: tuple[str, str], value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(_BASE))
    family.add_metric(list(job), value)
    return family


def _histogram(
    name: str, doc: str, job: tuple[str, str], hist: tuple[tuple[float, ...], list[int], float]
) -> HistogramMetricFamily:
    bounds, counts, total = hist
    family = HistogramMetricFamily(name, doc, labels=list(_BASE))
    cumulative, running = [], 0
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        running += n
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
    family.add_metric(list(job), cumulative, total)
    return family


def register_standard(registry: CollectorRegistry) -> None:
    """Add the process (CPU, memory, file descriptors), platform and GC families."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry``."""
    return generate_latest(registry)
