"""Protocols for the functions a job author writes.

User functions are pure: no I/O, no globals, time only from the record, the
watermark or the context's clock. The same function then runs on the local
engine, in the test driver and on Flink.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from runtime.api.watermarks import to_ms

A = TypeVar("A")
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
K_co = TypeVar("K_co", covariant=True)
K_contra = TypeVar("K_contra", contravariant=True)
V = TypeVar("V")
MK = TypeVar("MK")
MV = TypeVar("MV")
E = TypeVar("E")
S = TypeVar("S")


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


# Generic and frozen, but without slots: ``ValueState[int]("n", 0)`` sets
# ``__orig_class__`` on the new object; on Python 3.11 a frozen dataclass with slots
# turns that into a TypeError (without slots it is a FrozenInstanceError, which typing
# ignores).
@dataclass(frozen=True)
class ValueState(Generic[V]):
    """Describes a single value of type ``V`` per key.

    ``get()`` returns ``default`` while the key has no value: without a default, ``V``
    includes ``None`` (``ValueState[int | None]("last")``). ``ttl`` expires the value
    after that much processing time without a write.

    >>> COUNT = ValueState("count", 0)  # a ValueState[int]
    >>> COUNT.default, COUNT.ttl_ms
    (0, None)
    """

    name: str
    # None when not given: the constructor's signatures then make V include None.
    default: V = None  # type: ignore[assignment]
    ttl: timedelta | None = None

    if TYPE_CHECKING:  # the constructor as type checkers see it; dataclass makes it

        @overload
        def __init__(self, name: str, default: V, ttl: timedelta | None = None) -> None: ...

        @overload
        def __init__(
            self: ValueState[V | None], name: str, *, ttl: timedelta | None = None
        ) -> None: ...

        def __init__(self, name: str, default: Any = None, ttl: timedelta | None = None) -> None:
            """Name, default value and time to live."""

    @property
    def ttl_ms(self) -> int | None:
        """TTL in milliseconds, or None."""
        return None if self.ttl is None else to_ms(self.ttl, "ttl")


@dataclass(frozen=True)  # no slots: see ValueState
class MapState(Generic[MK, MV]):
    """Describes a dict ``MK -> MV`` per key (``MapState[str, int]("plays")``).

    ``ttl``: processing time without a write.
    """

    name: str
    ttl: timedelta | None = None

    @property
    def ttl_ms(self) -> int | None:
        """TTL in milliseconds, or None."""
        return None if self.ttl is None else to_ms(self.ttl, "ttl")


@dataclass(frozen=True)  # no slots: see ValueState
class ListState(Generic[E]):
    """Describes a list of ``E`` per key (``ListState[int]("times")``).

    ``ttl``: processing time without a write.
    """

    name: str
    ttl: timedelta | None = None

    @property
    def ttl_ms(self) -> int | None:
        """TTL in milliseconds, or None."""
        return None if self.ttl is None else to_ms(self.ttl, "ttl")


StateDescriptor = ValueState[Any] | MapState[Any, Any] | ListState[Any]
"""Any state descriptor."""


class StateHandle(Protocol[S]):
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


class ProcessContext(Protocol[K_co]):
    """What a ``process()`` function sees for one record or timer of a key of type ``K``."""

    @property
    def key(self) -> K_co:
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

    @overload
    def state(self, descriptor: ValueState[V]) -> StateHandle[V]: ...

    @overload
    def state(self, descriptor: MapState[MK, MV]) -> StateHandle[dict[MK, MV]]: ...

    @overload
    def state(self, descriptor: ListState[E]) -> StateHandle[list[E]]: ...

    def state(self, descriptor: StateDescriptor) -> StateHandle[Any]:
        """State of the current key for ``descriptor``: a value, a dict or a list."""
        ...


class KeyedProcessFunction(Protocol[K_contra, T_contra, R_co]):
    """Low-level keyed processing with state and timers.

    Type parameters: the key ``K``, the input records ``T``, the output records ``R``.
    Declare the states the function uses in ``states``; read and write them
    through ``ctx.state(descriptor)``; return outputs as an iterable.
    """

    @property
    def states(self) -> tuple[StateDescriptor, ...]:
        """The states the function uses (a class attribute is enough)."""
        ...

    def process(self, value: T_contra, ctx: ProcessContext[K_contra]) -> Iterable[R_co]:
        """Handle one record of the current key."""
        ...

    def on_timer(self, ts_ms: int, ctx: ProcessContext[K_contra]) -> Iterable[R_co]:
        """Handle a timer of the current key firing at ``ts_ms``."""
        ...
