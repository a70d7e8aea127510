"""``process()`` steps on Flink: the job's ``KeyedProcessFunction`` on Flink keyed state and timers.

State: every descriptor is one Flink ``ValueState`` of ``(value, last_write_ms)``
(maps and lists are stored whole), so TTL reads exactly as on the native engine: a
value not written for ``ttl`` of processing time reads as unset and is cleared.
Timers: an event-time timer at ``ts`` is a Flink timer at ``ts - 1``, so it fires
when Shoal's watermark reaches ``ts`` (Flink's watermark is one lower; see
``functions``; what it emits are ``TimerPair``s, read as ``ts`` downstream);
processing-time timers are Flink's as they are. Flink keeps one
timer per key and time, checkpointed with the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from runtime.api.functions import KeyedProcessFunction as ShoalProcess
from runtime.api.functions import ListState, MapState, StateDescriptor
from runtime.flink import _pyflink as pf
from runtime.flink.failures import Failures
from runtime.flink.functions import DEAD_LETTERS, TimerPair, event_time, like, shoal_watermark


class _Handle:
    """``StateHandle`` over one Flink ``ValueState`` of the current key."""

    __slots__ = ("_clock", "_desc", "_state", "_ttl")

    def __init__(self, state: Any, desc: StateDescriptor, clock: Any) -> None:
        self._state = state
        self._desc = desc
        self._ttl = desc.ttl_ms
        self._clock = clock

    def _empty(self) -> Any:
        if isinstance(self._desc, MapState):
            return {}
        if isinstance(self._desc, ListState):
            return []
        return self._desc.default

    def get(self) -> Any:
        entry = self._state.value()
        if entry is None:
            return self._empty()
        value, written = entry
        if self._ttl is not None and self._clock() - written >= self._ttl:
            self._state.clear()
            return self._empty()
        return value

    def set(self, value: Any) -> None:
        self._state.update((value, self._clock()))

    def clear(self) -> None:
        self._state.clear()


class _Timers:
    """``TimerService`` over Flink's timer service of the current key."""

    __slots__ = ("_service",)

    def __init__(self, service: Any) -> None:
        self._service = service

    def register_event_time(self, ts_ms: int) -> None:
        self._service.register_event_time_timer(int(ts_ms) - 1)

    def register_processing_time(self, ts_ms: int) -> None:
        self._service.register_processing_time_timer(int(ts_ms))

    def delete_event_time(self, ts_ms: int) -> None:
        self._service.delete_event_time_timer(int(ts_ms) - 1)

    def delete_processing_time(self, ts_ms: int) -> None:
        self._service.delete_processing_time_timer(int(ts_ms))


class _Context:
    """``ProcessContext`` for one record or timer."""

    __slots__ = ("_ctx", "_step", "key", "timestamp_ms")

    def __init__(self, step: ProcessStep, ctx: Any, key: Any, timestamp_ms: int) -> None:
        self._step = step
        self._ctx = ctx
        self.key = key
        self.timestamp_ms = timestamp_ms

    @property
    def watermark_ms(self) -> int:
        return shoal_watermark(self._ctx.timer_service().current_watermark())

    @property
    def processing_time_ms(self) -> int:
        return int(self._ctx.timer_service().current_processing_time())

    @property
    def timers(self) -> _Timers:
        return _Timers(self._ctx.timer_service())

    def state(self, descriptor: StateDescriptor) -> _Handle:
        return self._step.handle(descriptor, self._ctx)


class ProcessStep(pf.KeyedProcessFunction):  # type: ignore[misc]
    """Runs the job's ``KeyedProcessFunction``; outputs keep the key."""

    def __init__(self, fn: ShoalProcess[Any, Any, Any], failures: Failures) -> None:
        self.fn = fn
        self.failures = failures
        self._runtime: Any = None
        self._states: dict[str, tuple[StateDescriptor, Any]] = {}

    def open(self, runtime_context: Any) -> None:
        self._runtime = runtime_context
        for desc in getattr(self.fn, "states", ()):
            self._open_state(desc)

    def _open_state(self, desc: StateDescriptor) -> Any:
        state = self._runtime.get_state(
            pf.ValueStateDescriptor(desc.name, pf.Types.PICKLED_BYTE_ARRAY())
        )
        self._states[desc.name] = (desc, state)
        return state

    def handle(self, desc: StateDescriptor, ctx: Any) -> _Handle:
        """State handle of the current key for ``desc``."""
        found = self._states.get(desc.name)
        state = found[1] if found is not None else self._open_state(desc)
        service = ctx.timer_service()
        return _Handle(state, desc, lambda: int(service.current_processing_time()))

    def _run(self, calls: Iterable[Any], key: Any, failed_value: Any, source: Any) -> Iterator[Any]:
        try:
            out = [like(source, (key, x)) for x in calls or ()]
        except Exception as exc:
            yield from self.failures.reject(exc, failed_value, DEAD_LETTERS)
            return
        yield from out

    def process_element(self, pair: tuple[Any, Any], ctx: Any) -> Iterator[Any]:
        key, value = pair
        context = _Context(self, ctx, key, event_time(pair, ctx.timestamp()))
        try:
            calls = self.fn.process(value, context)
        except Exception as exc:
            yield from self.failures.reject(exc, value, DEAD_LETTERS)
            return
        # Outputs keep the record's Flink timestamp, so they keep its kind of pair.
        yield from self._run(calls, key, value, pair)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        key = ctx.get_current_key()
        timed = ctx.time_domain() == pf.TimeDomain.EVENT_TIME
        ts = timestamp + 1 if timed else timestamp
        context = _Context(self, ctx, key, ts)
        info = {"key": key, "timer_ms": ts}
        try:
            calls = self.fn.on_timer(ts, context)
        except Exception as exc:
            yield from self.failures.reject(exc, info, DEAD_LETTERS)
            return
        # Flink stamps them ``timestamp`` (= ts - 1): TimerPairs read as ts downstream.
        yield from self._run(calls, key, info, TimerPair(()) if timed else ())
