"""Stateless operators and the operator base class.

Operators run over batches: a batch is a list of ``(key, value, ts_ms, origin)``
tuples, where ``origin`` is the raw source record (or ``None`` for derived records).
A user function that raises is retried record by record so that only the failing
records are dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from runtime.api.expressions import function_of
from runtime.engine.context import TaskContext

Rec = tuple[Any, Any, int, Any]
Batch = list[Rec]


class StepCounters:
    """Per-step counts, kept per batch: ``records_in = processed + late + dead_lettered``."""

    __slots__ = ("dead_lettered", "late", "records_in", "records_out")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.late = 0
        self.dead_lettered = 0

    @property
    def processed(self) -> int:
        """Records that were neither late nor dead-lettered."""
        return self.records_in - self.late - self.dead_lettered

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return {
            "in": self.records_in,
            "out": self.records_out,
            "processed": self.processed,
            "late": self.late,
            "dead_lettered": self.dead_lettered,
        }


class Operator:
    """A step of a task's pipeline: processes batches and pushes results to its children."""

    stateful = False
    #: How many repartition boundaries lie upstream: names the watermark this step uses.
    stage = 0

    def __init__(self, name: str, task: TaskContext) -> None:
        self.name = name
        self.task = task
        self.children: list[Operator] = []
        self.counters = StepCounters()
        self.watermark = -(2**63)

    def emit(self, out: Batch) -> None:
        """Send a batch to every child (and to a live tap of this step, if any)."""
        if not out:
            return
        self.counters.records_out += len(out)
        if self.task.taps:
            tap = self.task.taps.get(self.name)
            if tap is not None:
                tap(self.name, out)
        for child in self.children:
            child.process(out)

    def process(self, batch: Batch) -> None:
        """Handle a batch of records."""
        raise NotImplementedError

    def advance_watermark(self, watermark_ms: int) -> None:
        """Event time reached ``watermark_ms`` at this step (called in graph order)."""
        self.watermark = watermark_ms
        self.on_watermark(watermark_ms)

    def on_watermark(self, watermark_ms: int) -> None:
        """Event time advanced to ``watermark_ms``: fire what is due."""

    def resume_watermark(self, watermark_ms: int) -> None:
        """After a restore: event time is where the checkpoint left it. What was due
        by then was done before the checkpoint and is not done again."""
        self.watermark = watermark_ms

    def on_processing_time(self, now_ms: int) -> None:
        """The processing clock reached ``now_ms``."""

    def restore_index(self) -> None:
        """Rebuild in-memory indexes from restored state (stateful operators)."""

    def fail(self, exc: BaseException, rec: Rec) -> None:
        """Dead-letter (or skip, or fail on) one record whose user function raised."""
        self.counters.dead_lettered += 1
        self.task.dead_letter(self.name, exc, rec[3], rec[1])


class PassOperator(Operator):
    """Forwards records unchanged (merge steps, the late side output)."""

    def process(self, batch: Batch) -> None:
        """Forward."""
        self.counters.records_in += len(batch)
        self.emit(batch)


class MapOperator(Operator):
    """One output per input."""

    def __init__(self, name: str, task: TaskContext, fn: Callable[[Any], Any]) -> None:
        super().__init__(name, task)
        self.fn = function_of(fn)

    def process(self, batch: Batch) -> None:
        """Apply the function to every record."""
        self.counters.records_in += len(batch)
        fn = self.fn
        try:
            out = [(k, fn(v), t, o) for k, v, t, o in batch]
        except Exception:
            out = []
            for rec in batch:
                try:
                    out.append((rec[0], fn(rec[1]), rec[2], rec[3]))
                except Exception as exc:
                    self.fail(exc, rec)
        self.emit(out)


class FilterOperator(Operator):
    """Keeps the records the predicate accepts."""

    def __init__(self, name: str, task: TaskContext, fn: Callable[[Any], bool]) -> None:
        super().__init__(name, task)
        self.fn = function_of(fn)

    def process(self, batch: Batch) -> None:
        """Keep matching records."""
        self.counters.records_in += len(batch)
        fn = self.fn
        try:
            out = [r for r in batch if fn(r[1])]
        except Exception:
            out = []
            for rec in batch:
                try:
                    if fn(rec[1]):
                        out.append(rec)
                except Exception as exc:
                    self.fail(exc, rec)
        self.emit(out)


class FlatMapOperator(Operator):
    """Zero or more outputs per input."""

    def __init__(self, name: str, task: TaskContext, fn: Callable[[Any], Iterable[Any]]) -> None:
        super().__init__(name, task)
        self.fn = function_of(fn)

    def process(self, batch: Batch) -> None:
        """Expand every record."""
        self.counters.records_in += len(batch)
        fn = self.fn
        out: Batch = []
        for rec in batch:
            try:
                k, _, t, o = rec
                out.extend([(k, x, t, o) for x in fn(rec[1])])
            except Exception as exc:
                self.fail(exc, rec)
        self.emit(out)


class KeyByOperator(Operator):
    """Sets each record's key."""

    def __init__(self, name: str, task: TaskContext, fn: Callable[[Any], Any]) -> None:
        super().__init__(name, task)
        self.fn = function_of(fn)

    def process(self, batch: Batch) -> None:
        """Compute keys."""
        self.counters.records_in += len(batch)
        fn = self.fn
        try:
            out = [(fn(v), v, t, o) for _, v, t, o in batch]
        except Exception:
            out = []
            for rec in batch:
                try:
                    out.append((fn(rec[1]), rec[1], rec[2], rec[3]))
                except Exception as exc:
                    self.fail(exc, rec)
        self.emit(out)


class SinkOperator(Operator):
    """Collects records for a sink; the worker encodes and writes them per batch.

    Records keep their origin (the raw source record, or ``None``) until they are
    written, so one the sink's codec cannot encode is dead-lettered naming where it
    came from (see :mod:`runtime.engine.encoding`).
    """

    def __init__(self, name: str, task: TaskContext, key_fn: Callable[[Any], Any] | None) -> None:
        super().__init__(name, task)
        self.key_fn = function_of(key_fn) if key_fn is not None else None
        self.pending: Batch = []

    def process(self, batch: Batch) -> None:
        """Queue records for writing."""
        self.counters.records_in += len(batch)
        if self.task.taps:
            tap = self.task.taps.get(self.name)
            if tap is not None:
                tap(self.name, batch)
        key_fn = self.key_fn
        if key_fn is None:
            self.pending.extend(batch)
            self.counters.records_out += len(batch)
        else:
            for rec in batch:
                try:
                    self.pending.append((key_fn(rec[1]), rec[1], rec[2], rec[3]))
                    self.counters.records_out += 1
                except Exception as exc:
                    self.fail(exc, rec)

    def drain(self) -> Batch:
        """Take the queued ``(key, value, event time, origin)`` records."""
        out, self.pending = self.pending, []
        return out
