"""Where windows fire on the native engine: the window step of a task.

The rules (which windows a record joins, lateness, merging, retractions, purging)
are the window operator's, shared with the Flink engine
(:mod:`runtime.engine.windowing.logic`); the kind of window is its assigner's
(:mod:`runtime.engine.windowing`). This module runs them on a task: state in the
step's state store, firing times in an in-memory index rebuilt from state after a
restore, late records to the late side output, early updates on the processing
clock.

The watermark a batch is judged against is the one before the batch; watermarks
advance between batches. Results of windows a batch changed after they were
complete go out at the end of that batch.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtime.api.functions import AggregateFunction, Window
from runtime.api.windows import WindowSpec
from runtime.engine.context import TaskContext
from runtime.engine.operators import Batch, Operator
from runtime.engine.windowing import MISSING, Emission, WindowLogic, assigner_for

if TYPE_CHECKING:
    from runtime.state.base import StateStore


class _TimeIndex:
    """Items due at an event time: a heap of times plus the items per time."""

    __slots__ = ("_heap", "_items")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._items: dict[int, set[Any]] = {}

    def add(self, at_ms: int, item: Any) -> None:
        items = self._items.get(at_ms)
        if items is None:
            self._items[at_ms] = {item}
            heapq.heappush(self._heap, at_ms)
        else:
            items.add(item)

    @property
    def by_time(self) -> dict[int, set[Any]]:
        """The items due at each time (read only)."""
        return self._items

    def pop_due(self, watermark_ms: int) -> list[tuple[int, set[Any]]]:
        due = []
        heap = self._heap
        while heap and heap[0] <= watermark_ms:
            at = heapq.heappop(heap)
            due.append((at, self._items.pop(at)))
        return due

    def __len__(self) -> int:
        return len(self._heap)


class WindowOperator(Operator):
    """A window step: the window operator's rules on this task's state and clocks.

    Args:
        name: the step's name.
        task: the task it belongs to.
        spec: the window spec; its registered assigner cuts event time.
        aggregate: the step's aggregate function.
        output: builds the emitted record from ``(key, window, result)``.
        store: the step's state store.
    """

    stateful = True

    def __init__(
        self,
        name: str,
        task: TaskContext,
        spec: WindowSpec,
        aggregate: AggregateFunction[Any, Any, Any],
        output: Callable[[Any, Window, Any], Any],
        store: StateStore,
    ) -> None:
        super().__init__(name, task)
        self.spec = spec
        self.agg = aggregate
        self.output = output
        self.store = store
        self.late_children: list[Operator] = []
        self.index = _TimeIndex()
        self.logic = WindowLogic(assigner_for(spec, name), aggregate, store, self.index.add)
        self.early_every = spec.early_every_ms
        self._next_early: int | None = None

    def restore_index(self) -> None:
        """Rebuild the firing index from state (after a restore)."""
        self.logic.reschedule()

    def process(self, batch: Batch) -> None:
        """Fold records into their windows; emit late records, retractions and the
        results of complete windows the batch changed."""
        self.counters.records_in += len(batch)
        changes = self.logic.add(batch, self.watermark)
        for exc, rec in changes.failed:
            self.fail(exc, rec)
        if changes.late:
            self.counters.late += len(changes.late)
            for child in self.late_children:
                child.process(changes.late)
        if changes.retracted:
            self.emit(self.records(changes.retracted))
        if changes.results:
            self.emit(self.records(changes.results))

    def on_watermark(self, watermark_ms: int) -> None:
        """Fire windows whose end the watermark reached; purge expired state."""
        due = self.index.pop_due(watermark_ms)
        if due:
            self.emit(self.records(self.logic.fire(due, watermark_ms)))

    def resume_watermark(self, watermark_ms: int) -> None:
        """After a restore: windows that ended by ``watermark_ms`` fired before the
        checkpoint; settle their schedule without firing them again."""
        self.watermark = watermark_ms
        due = self.index.pop_due(watermark_ms)
        if due:
            self.emit(self.records(self.logic.resume(due, watermark_ms)))

    def on_processing_time(self, now_ms: int) -> None:
        """Emit early (speculative) results of open windows that changed."""
        if self.early_every is None:
            return
        if self._next_early is None:
            self._next_early = now_ms + self.early_every
            return
        if now_ms < self._next_early:
            return
        self._next_early = now_ms + self.early_every
        touched = self.logic.take_touched()
        if touched:
            self.emit(self.records(self.logic.early(touched, self.watermark)))

    def records(self, emissions: list[Emission]) -> Batch:
        """Output records of window results; a failing output function dead-letters one."""
        out: Batch = []
        append = out.append
        result, output = self.agg.result, self.output
        for key, start, end, acc in emissions:
            try:
                value = output(key, Window(start, end), None if acc is MISSING else result(acc))
            except Exception as exc:
                self.task.dead_letter(self.name, exc, None, {"key": key, "window": (start, end)})
                continue
            append((key, value, end - 1, None))
        return out
