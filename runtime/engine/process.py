"""Keyed process steps: per-key state (value, map, list; optional TTL) and timers.

State of a key lives in the step's store under ``(key, state_name)`` as
``(value, last_write_ms)``; with a TTL, a value not written for ``ttl`` of
processing time reads as unset and is removed. Event-time timers fire once the
watermark reaches them (``ts <= watermark``), processing-time timers once the
processing clock does; each (key, time) fires once. Timers are kept in the store
too, so they are checkpointed with the state.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from runtime.api.functions import KeyedProcessFunction, ListState, MapState, StateDescriptor
from runtime.engine.context import TaskContext
from runtime.engine.operators import Batch, Operator

if TYPE_CHECKING:
    from runtime.state.base import StateStore

_MISSING = object()
_EVENT, _PROC = "\x00timer:event", "\x00timer:proc"


class _Handle:
    """State of the current key for one descriptor."""

    __slots__ = ("_desc", "_op", "_ttl")

    def __init__(self, op: ProcessOperator, desc: StateDescriptor) -> None:
        self._op = op
        self._desc = desc
        self._ttl = desc.ttl_ms

    def _empty(self) -> Any:
        if isinstance(self._desc, MapState):
            return {}
        if isinstance(self._desc, ListState):
            return []
        return self._desc.default

    def get(self) -> Any:
        op = self._op
        sk = (op.ctx_key, self._desc.name)
        entry = op.store.get(sk, _MISSING)
        if entry is _MISSING:
            return self._empty()
        value, written = entry
        if self._ttl is not None and op.task.now_ms() - written >= self._ttl:
            op.store.delete(sk)
            return self._empty()
        return value

    def set(self, value: Any) -> None:
        op = self._op
        op.store.put((op.ctx_key, self._desc.name), (value, op.task.now_ms()))

    def clear(self) -> None:
        op = self._op
        op.store.delete((op.ctx_key, self._desc.name))


class _Timers:
    """Timer registration for the current key."""

    __slots__ = ("_op",)

    def __init__(self, op: ProcessOperator) -> None:
        self._op = op

    def register_event_time(self, ts_ms: int) -> None:
        self._op.add_timer(_EVENT, int(ts_ms))

    def register_processing_time(self, ts_ms: int) -> None:
        self._op.add_timer(_PROC, int(ts_ms))

    def delete_event_time(self, ts_ms: int) -> None:
        self._op.delete_timer(_EVENT, int(ts_ms))

    def delete_processing_time(self, ts_ms: int) -> None:
        self._op.delete_timer(_PROC, int(ts_ms))


class ProcessOperator(Operator):
    """Runs a ``KeyedProcessFunction`` record by record with its key's context."""

    stateful = True

    def __init__(
        self, name: str, task: TaskContext, fn: KeyedProcessFunction, store: StateStore
    ) -> None:
        super().__init__(name, task)
        self.fn = fn
        self.store = store
        self.ctx_key: Any = None
        self._ts = 0
        self._handles = {d.name: _Handle(self, d) for d in getattr(fn, "states", ())}
        self._timer_api = _Timers(self)
        self._heaps: dict[str, list[tuple[int, Any]]] = {_EVENT: [], _PROC: []}
        self.restore_index()

    # -- ProcessContext -------------------------------------------------------------
    @property
    def key(self) -> Any:
        """The current key."""
        return self.ctx_key

    @property
    def timestamp_ms(self) -> int:
        """Event time of the record (or timer) being handled."""
        return self._ts

    @property
    def watermark_ms(self) -> int:
        """The task watermark."""
        return self.watermark

    @property
    def processing_time_ms(self) -> int:
        """The processing clock."""
        return self.task.now_ms()

    @property
    def timers(self) -> _Timers:
        """Timers of the current key."""
        return self._timer_api

    def state(self, descriptor: StateDescriptor) -> _Handle:
        """State handle of the current key."""
        handle = self._handles.get(descriptor.name)
        if handle is None:
            handle = self._handles[descriptor.name] = _Handle(self, descriptor)
        return handle

    # -- timers ---------------------------------------------------------------------
    def restore_index(self) -> None:
        """Rebuild the timer heaps from state."""
        for kind in (_EVENT, _PROC):
            heap = self._heaps[kind]
            for sk, _ in self.store.items_with_prefix((kind,)):
                if len(sk) == 3:
                    heap.append((sk[1], sk[2]))
            heapq.heapify(heap)

    def add_timer(self, kind: str, ts: int) -> None:
        sk = (kind, ts, self.ctx_key)
        if sk not in self.store:
            self.store.put(sk, 1)
            heapq.heappush(self._heaps[kind], (ts, self.ctx_key))

    def delete_timer(self, kind: str, ts: int) -> None:
        self.store.delete((kind, ts, self.ctx_key))

    def _fire(self, kind: str, upto: int) -> None:
        heap = self._heaps[kind]
        out: Batch = []
        while heap and heap[0][0] <= upto:
            ts, key = heapq.heappop(heap)
            sk = (kind, ts, key)
            if sk not in self.store:
                continue  # deleted, or a duplicate heap entry
            self.store.delete(sk)
            self.ctx_key, self._ts = key, ts
            try:
                out.extend([(key, x, ts, None) for x in self.fn.on_timer(ts, self) or ()])
            except Exception as exc:
                self.counters.dead_lettered += 0  # a timer is not an input record
                self.task.dead_letter(self.name, exc, None, {"key": key, "timer_ms": ts})
        self.emit(out)

    def on_watermark(self, watermark_ms: int) -> None:
        """Fire event-time timers up to the watermark."""
        self._fire(_EVENT, watermark_ms)

    def on_processing_time(self, now_ms: int) -> None:
        """Fire processing-time timers up to the clock."""
        self._fire(_PROC, now_ms)

    # -- records --------------------------------------------------------------------
    def process(self, batch: Batch) -> None:
        """Call the function for every record with its key's context."""
        self.counters.records_in += len(batch)
        fn = self.fn.process
        out: Batch = []
        for rec in batch:
            k, v, t, o = rec
            self.ctx_key, self._ts = k, t
            try:
                results: Iterable[Any] = fn(v, self) or ()
                out.extend([(k, x, t, o) for x in results])
            except Exception as exc:
                self.fail(exc, rec)
        self.emit(out)
