"""Protocols for the functions a job author writes.

User functions are pure: no I/O, no globals, time only from the record, the
watermark or the context's clock. The same function then runs on the local
engine, in the test driver and on Flink.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from runtime.api.watermarks import to_ms

A = TypeVar("A")
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class AggregateFunction(Protocol[T_contra, A, R_co]):
    """Incremental aggregation: ``create`` / ``add`` / ``merge`` / ``result``.

    ``add`` and ``merge`` may mutate and return the accumulator they are given.
    Accumulators must be picklable: they are stored in state and changelogs.
    """

    def create(self) -> A:
        """A fresh, empty accumulator."""
        ...

    def add(self, acc: A, value: T_contra) -> A:
        """Fold one value into ``acc``."""
        ...

    def merge(self, a: A, b: A) -> A:
        """Combine two accumulators (session merges, hopping panes)."""
        ...

    def result(self, acc: A) -> R_co:
        """The output for ``acc``; must not change ``acc``."""
        ...


@dataclass(frozen=True, slots=True)
class Window:
    """A window ``[start_ms, end_ms)`` of event time, handed to window output functions."""

    start_ms: int
    end_ms: int


class TimerService(Protocol):
    """Timers of the current key in a ``process()`` step."""

    def register_event_time(self, ts_ms: int) -> None:
        """Call ``on_timer`` once the watermark reaches ``ts_ms``."""
        ...

    def register_processing_time(self, ts_ms: int) -> None:
        """Call ``on_timer`` once the processing clock reaches ``ts_ms``."""
        ...

    def delete_event_time(self, ts_ms: int) -> None:
        """Forget an event-time timer of the current key."""
        ...

    def delete_processing_time(self, ts_ms: int) -> None:
        """Forget a processing-time timer of the current key."""
        ...


@dataclass(frozen=True, slots=True)
class ValueState:
    """Describes a single value per key.

    ``ttl`` expires it after that much processing time without a write.
    """

    name: str
    default: Any = None
    ttl: timedelta | None = None

    @property
    def ttl_ms(self) -> int | None:
        """TTL in milliseconds, or None."""
        return None if self.ttl is None else to_ms(self.ttl, "ttl")


@dataclass(frozen=True, slots=True)
class MapState:
    """Describes a dict per key. ``ttl``: processing time without a write."""

    name: str
    ttl: timedelta | None = None

    @property
    def ttl_ms(self) -> int | None:
        """TTL in milliseconds, or None."""
        return None if self.ttl is None else to_ms(self.ttl, "ttl")


@dataclass(frozen=True, slots=True)
class ListState:
    """Describes a list per key. ``ttl``: processing time without a write."""

    name: str
    ttl: timedelta | None = None

    @property
    def ttl_ms(self) -> int | None:
        """TTL in milliseconds, or None."""
        return None if self.ttl is None else to_ms(self.ttl, "ttl")


StateDescriptor = ValueState | MapState | ListState

S = TypeVar("S")


class StateHandle(Protocol, Generic[S]):
    """Access to one state of the current key."""

    def get(self) -> S:
        """The current value (the descriptor's default, ``{}`` or ``[]`` when unset)."""
        ...

    def set(self, value: S) -> None:
        """Replace the value; for maps and lists, store the mutated object back with this."""
        ...

    def clear(self) -> None:
        """Remove the value."""
        ...


class ProcessContext(Protocol):
    """What a ``process()`` function sees for one record or timer."""

    @property
    def key(self) -> Any:
        """The current key."""
        ...

    @property
    def timestamp_ms(self) -> int:
        """Event time of the current record, or the firing time of the current timer."""
        ...

    @property
    def watermark_ms(self) -> int:
        """The task's current watermark."""
        ...

    @property
    def processing_time_ms(self) -> int:
        """The processing clock (injected: manual in the test driver)."""
        ...

    @property
    def timers(self) -> TimerService:
        """Timers of the current key."""
        ...

    def state(self, descriptor: StateDescriptor) -> StateHandle[Any]:
        """State of the current key for ``descriptor``."""
        ...


class KeyedProcessFunction(Protocol):
    """Low-level keyed processing with state and timers.

    Declare the states the function uses in ``states``; read and write them
    through ``ctx.state(descriptor)``; return outputs as an iterable.
    """

    states: tuple[StateDescriptor, ...]

    def process(self, value: Any, ctx: ProcessContext) -> Iterable[Any]:
        """Handle one record of the current key."""
        ...

    def on_timer(self, ts_ms: int, ctx: ProcessContext) -> Iterable[Any]:
        """Handle a timer of the current key firing at ``ts_ms``."""
        ...
