"""Where windows fire: keyed tumbling, hopping and session window aggregation.

Semantics (see ``runtime.api.windows``):

* A window ``[start, end)`` fires once the task watermark reaches ``end``; its result
  is emitted with event time ``end - 1``.
* A record is *late* when the last window it belongs to ended at least
  ``allowed_lateness`` before the current watermark (``last_end + lateness <= wm``);
  late records go to the late side output and are counted, never dropped silently.
* A record that lands in a window that already fired, but within allowed lateness,
  updates the window and re-emits its result at the end of the batch.
* Window state is purged when the watermark reaches ``end + allowed_lateness``;
  session state when it reaches ``end - 1 + gap + allowed_lateness``: until then a
  record that is not late (``ts + gap + lateness > wm``) can still overlap the session.
* Sessions: a record at ``ts`` opens ``[ts, ts + gap)``; sessions of a key that overlap
  (strictly: records exactly ``gap`` apart start a new session) merge, accumulators
  merged with ``AggregateFunction.merge``. When a late record bridges sessions that
  were already emitted, every absorbed session whose start differs from the merged
  one is re-emitted with result ``None`` (a retraction), then the merged session.
  A session whose running result went out as an early update counts as emitted.

The watermark a batch is judged against is the one before the batch; watermarks
advance between batches.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtime.api.functions import AggregateFunction, Window
from runtime.api.windows import Hopping, Session, Tumbling, WindowSpec
from runtime.engine.context import TaskContext
from runtime.engine.operators import Batch, Operator, Rec

if TYPE_CHECKING:
    from runtime.state.base import StateStore

_MISSING = object()
# Session states, about results under the session's start: never emitted / emitted
# and unchanged / emitted, then changed.
_OPEN, _EMITTED, _UPDATED = 0, 1, 2


class _TimeIndex:
    """Keys due at an event time: a heap of times plus the keys per time."""

    __slots__ = ("_heap", "_keys")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._keys: dict[int, set[Any]] = {}

    def add(self, at_ms: int, key: Any) -> None:
        keys = self._keys.get(at_ms)
        if keys is None:
            self._keys[at_ms] = {key}
            heapq.heappush(self._heap, at_ms)
        else:
            keys.add(key)

    def pop_due(self, watermark_ms: int) -> list[tuple[int, set[Any]]]:
        due = []
        heap = self._heap
        while heap and heap[0] <= watermark_ms:
            at = heapq.heappop(heap)
            due.append((at, self._keys.pop(at)))
        return due

    def __len__(self) -> int:
        return len(self._heap)


class WindowOperator(Operator):
    """Base of the window operators: late output, output building, early updates."""

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
        self.lateness = spec.allowed_lateness_ms
        self.late_children: list[Operator] = []
        self.index = _TimeIndex()
        self.early_every = spec.early_every_ms
        self._next_early: int | None = None
        self._touched: set[Any] = set()

    def emit_late(self, late: Batch) -> None:
        """Send late records to the late side output."""
        self.counters.late += len(late)
        for child in self.late_children:
            child.process(late)

    def result_record(self, key: Any, start: int, end: int, acc: Any) -> Rec | None:
        """Build an output record; a failing output function dead-letters the result."""
        try:
            result = None if acc is _MISSING else self.agg.result(acc)
            value = self.output(key, Window(start, end), result)
        except Exception as exc:
            self.task.dead_letter(self.name, exc, None, {"key": key, "window": (start, end)})
            return None
        return (key, value, end - 1, None)

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
        touched, self._touched = self._touched, set()
        self.emit(self.early_results(touched))

    def early_results(self, touched: set[Any]) -> Batch:
        """Running results of the open windows in ``touched``."""
        raise NotImplementedError


class FixedWindowOperator(WindowOperator):
    """Tumbling and hopping windows; state key ``(key, window_start)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = self.spec
        assert isinstance(spec, Tumbling | Hopping)
        self.size = spec.size_ms
        self.slide = spec.size_ms if isinstance(spec, Tumbling) else spec.slide_ms

    def restore_index(self) -> None:
        """Rebuild the firing index from state (after a restore)."""
        for (key, start), _ in self.store.items():
            end = start + self.size
            self.index.add(end, (key, start))
            if self.lateness:
                self.index.add(end + self.lateness, (key, start))

    def process(self, batch: Batch) -> None:
        """Fold records into their windows."""
        n = len(batch)
        self.counters.records_in += n
        wm = self.watermark
        lateness, size, slide = self.lateness, self.size, self.slide
        get, put = self.store.get, self.store.put
        create, add = self.agg.create, self.agg.add
        index_add = self.index.add
        track = self.early_every is not None
        late: Batch = []
        refire: set[tuple[Any, int]] = set()
        for rec in batch:
            k, v, t, _ = rec
            last_start = t - t % slide
            if last_start + size + lateness <= wm:
                late.append(rec)
                continue
            start = last_start - size + slide if size != slide else last_start
            try:
                while start <= last_start:
                    end = start + size
                    if end + lateness > wm:
                        sk = (k, start)
                        acc = get(sk, _MISSING)
                        if acc is _MISSING:
                            acc = create()
                            if end > wm:  # else it is emitted below, not again later
                                index_add(end, sk)
                            if lateness:
                                index_add(end + lateness, sk)
                        put(sk, add(acc, v))
                        if end <= wm:
                            refire.add(sk)
                        elif track:
                            self._touched.add(sk)
                    start += slide
            except Exception as exc:
                self.fail(exc, rec)
        if late:
            self.emit_late(late)
        if refire:
            out = []
            for key, start in sorted(refire, key=lambda s: s[1]):
                r = self.result_record(key, start, start + size, get((key, start)))
                if r is not None:
                    out.append(r)
            self.emit(out)

    def on_watermark(self, watermark_ms: int) -> None:
        """Fire windows whose end the watermark reached; purge expired state."""
        due = self.index.pop_due(watermark_ms)
        if not due:
            return
        size, lateness = self.size, self.lateness
        get, delete = self.store.get, self.store.delete
        result, output = self.agg.result, self.output
        touched = self._touched
        out: Batch = []
        append = out.append
        for at, keys in due:
            for sk in keys:
                key, start = sk
                end = start + size
                if at == end:
                    acc = get(sk, _MISSING)
                    if acc is not _MISSING:
                        # result_record inlined: this loop runs once per window fired
                        try:
                            value = output(key, Window(start, end), result(acc))
                            append((key, value, end - 1, None))
                        except Exception as exc:
                            self.task.dead_letter(
                                self.name, exc, None, {"key": key, "window": (start, end)}
                            )
                    if touched:
                        touched.discard(sk)
                    if not lateness:
                        delete(sk)
                else:
                    delete(sk)
        self.emit(out)

    def early_results(self, touched: set[Any]) -> Batch:
        """Running results of changed open windows."""
        out = []
        get = self.store.get
        for key, start in touched:
            acc = get((key, start), _MISSING)
            if acc is not _MISSING:
                r = self.result_record(key, start, start + self.size, acc)
                if r is not None:
                    out.append(r)
        return out


class SessionWindowOperator(WindowOperator):
    """Merging session windows; state key ``key`` -> list of ``[start, end, acc, status]``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.spec, Session)
        self.gap = self.spec.gap_ms
        # How long past its end a session is kept: the last record that can still
        # overlap it (at ``end - 1``) stops being on time at ``end - 1 + gap + lateness``.
        self.retain = self.gap - 1 + self.lateness

    def restore_index(self) -> None:
        """Rebuild the firing index from state (after a restore)."""
        for key, sessions in self.store.items():
            for _start, end, _, _ in sessions:
                self.index.add(end, key)
                self.index.add(end + self.retain, key)

    def process(self, batch: Batch) -> None:
        """Add records to sessions, merging where they overlap."""
        self.counters.records_in += len(batch)
        wm = self.watermark
        gap, lateness = self.gap, self.lateness
        get, put = self.store.get, self.store.put
        agg = self.agg
        late: Batch = []
        complete: set[Any] = set()
        retractions: Batch = []
        for rec in batch:
            k, v, t, _ = rec
            if t + gap + lateness <= wm:
                late.append(rec)
                continue
            try:
                sessions = get(k, None) or []
                lo, hi = t, t + gap
                keep: list[list[Any]] = []
                hit: list[list[Any]] = []
                for s in sessions:
                    (hit if s[0] < hi and s[1] > lo else keep).append(s)
                if not hit:
                    acc = agg.add(agg.create(), v)
                    merged = [lo, hi, acc, _OPEN]
                else:
                    acc = hit[0][2]
                    for s in hit[1:]:
                        acc = agg.merge(acc, s[2])
                    acc = agg.add(acc, v)
                    lo = min(lo, min(s[0] for s in hit))
                    hi = max(hi, max(s[1] for s in hit))
                    # Only a result under the merged start needs updating; other
                    # emitted starts are retracted below.
                    emitted = any(s[3] != _OPEN and s[0] == lo for s in hit)
                    merged = [lo, hi, acc, _UPDATED if emitted else _OPEN]
                    for s in hit:
                        if s[3] != _OPEN and s[0] != lo:
                            r = self.result_record(k, s[0], s[1], _MISSING)
                            if r is not None:
                                retractions.append(r)
                keep.append(merged)
                keep.sort(key=lambda s: s[0])
                put(k, keep)
                self.index.add(hi, k)
                self.index.add(hi + self.retain, k)
                if hi <= wm:
                    complete.add(k)
                elif self.early_every is not None:
                    self._touched.add(k)
            except Exception as exc:
                self.fail(exc, rec)
        if late:
            self.emit_late(late)
        if retractions:
            self.emit(retractions)
        if complete:
            self.emit(self._fire(sorted(complete, key=repr), wm))

    def _fire(self, keys: Any, wm: int) -> Batch:
        """Emit complete sessions of ``keys`` not emitted in their current form; purge old."""
        get, put, delete = self.store.get, self.store.put, self.store.delete
        retain = self.retain
        out: Batch = []
        for k in keys:
            sessions = get(k, None)
            if not sessions:
                continue
            changed = False
            for s in sessions:
                if s[1] <= wm and s[3] != _EMITTED:
                    r = self.result_record(k, s[0], s[1], s[2])
                    if r is not None:
                        out.append(r)
                    s[3] = _EMITTED
                    changed = True
            alive = [s for s in sessions if s[1] + retain > wm]
            if not alive:
                delete(k)
            elif changed or len(alive) != len(sessions):
                put(k, alive)
        return out

    def on_watermark(self, watermark_ms: int) -> None:
        """Fire sessions that closed; purge those no record that is not late can reach."""
        keys: set[Any] = set()
        for _, ks in self.index.pop_due(watermark_ms):
            keys |= ks
        if keys:
            for k in keys:
                self._touched.discard(k)
            self.emit(self._fire(sorted(keys, key=repr), watermark_ms))

    def early_results(self, touched: set[Any]) -> Batch:
        """Running results of changed open sessions."""
        out = []
        wm = self.watermark
        get, put = self.store.get, self.store.put
        for k in touched:
            sessions = get(k, None)
            if not sessions:
                continue
            for s in sessions:
                if s[1] > wm:
                    r = self.result_record(k, s[0], s[1], s[2])
                    if r is not None:
                        out.append(r)
                    # Now emitted: if a merge moves its start, the old start is retracted.
                    s[3] = _UPDATED
            put(k, sessions)
        return out
