"""Built-in aggregates: count, sum, min, max, mean, quantile sketches, reduce, collect.

Each takes an optional ``of`` function that picks the number out of a record;
without it the record itself is the number. The record type ``T`` of ``Sum[T]``,
``Mean[T]`` ... is what ``of`` reads: a type checker infers it from the stream the
aggregate is used on (``Count`` takes records of any type).

>>> agg = Mean(of=lambda e: e["bitrate_kbps"])
>>> acc = agg.create()
>>> for e in ({"bitrate_kbps": 1000}, {"bitrate_kbps": 3000}):
...     acc = agg.add(acc, e)
>>> agg.result(acc)
2000.0
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ddsketch import DDSketch
from ddsketch.store import DenseStore

__all__ = ["Collect", "Count", "Max", "Mean", "Min", "Quantiles", "Reduce", "Sum"]

Sketch = DDSketch
"""The accumulator class of :class:`Quantiles` (state backends register its encoding)."""

T = TypeVar("T")
DEFAULT_QUANTILES = (0.5, 0.9, 0.99)


def _get(of: Callable[[Any], float] | None, value: Any) -> Any:
    return value if of is None else of(value)


@dataclass(frozen=True, slots=True)
class Count:
    """Number of records (of any type)."""

    def create(self) -> int:
        """Zero."""
        return 0

    def add(self, acc: int, value: object) -> int:
        """One more."""
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        """Sum of counts."""
        return a + b

    def result(self, acc: int) -> int:
        """The count."""
        return acc


# Generic and frozen, but without slots: ``Sum[float]()`` sets ``__orig_class__`` on the new
# object; on Python 3.11 a frozen dataclass with slots turns that into a TypeError
# (without slots it is a FrozenInstanceError, which typing ignores).
@dataclass(frozen=True)
class Sum(Generic[T]):
    """Sum of ``of(record)``."""

    of: Callable[[T], float] | None = None

    if TYPE_CHECKING:  # without ``of`` the records are the numbers

        @overload
        def __init__(self: Sum[float], of: None = None) -> None: ...

        @overload
        def __init__(self, of: Callable[[T], float]) -> None: ...

        def __init__(self, of: Callable[[T], float] | None = None) -> None:
            """What to sum."""

    def create(self) -> float:
        """Zero."""
        return 0

    def add(self, acc: float, value: T) -> float:
        """Add the record's number."""
        return acc + float(_get(self.of, value))

    def merge(self, a: float, b: float) -> float:
        """Sum of sums."""
        return a + b

    def result(self, acc: float) -> float:
        """The sum."""
        return acc


@dataclass(frozen=True)  # no slots: see Sum
class Min(Generic[T]):
    """Smallest ``of(record)``; ``None`` for no records."""

    of: Callable[[T], float] | None = None

    if TYPE_CHECKING:  # without ``of`` the records are the numbers

        @overload
        def __init__(self: Min[float], of: None = None) -> None: ...

        @overload
        def __init__(self, of: Callable[[T], float]) -> None: ...

        def __init__(self, of: Callable[[T], float] | None = None) -> None:
            """What to take the minimum of."""

    def create(self) -> float | None:
        """No value yet."""
        return None

    def add(self, acc: float | None, value: T) -> float | None:
        """Keep the smaller."""
        v = _get(self.of, value)
        return v if acc is None or v < acc else acc

    def merge(self, a: float | None, b: float | None) -> float | None:
        """Smaller of two minima."""
        if a is None:
            return b
        return a if b is None or a <= b else b

    def result(self, acc: float | None) -> float | None:
        """The minimum."""
        return acc


@dataclass(frozen=True)  # no slots: see Sum
class Max(Generic[T]):
    """Largest ``of(record)``; ``None`` for no records."""

    of: Callable[[T], float] | None = None

    if TYPE_CHECKING:  # without ``of`` the records are the numbers

        @overload
        def __init__(self: Max[float], of: None = None) -> None: ...

        @overload
        def __init__(self, of: Callable[[T], float]) -> None: ...

        def __init__(self, of: Callable[[T], float] | None = None) -> None:
            """What to take the maximum of."""

    def create(self) -> float | None:
        """No value yet."""
        return None

    def add(self, acc: float | None, value: T) -> float | None:
        """Keep the larger."""
        v = _get(self.of, value)
        return v if acc is None or v > acc else acc

    def merge(self, a: float | None, b: float | None) -> float | None:
        """Larger of two maxima."""
        if a is None:
            return b
        return a if b is None or a >= b else b

    def result(self, acc: float | None) -> float | None:
        """The maximum."""
        return acc


@dataclass(frozen=True)  # no slots: see Sum
class Mean(Generic[T]):
    """Arithmetic mean of ``of(record)``; ``None`` for no records."""

    of: Callable[[T], float] | None = None

    if TYPE_CHECKING:  # without ``of`` the records are the numbers

        @overload
        def __init__(self: Mean[float], of: None = None) -> None: ...

        @overload
        def __init__(self, of: Callable[[T], float]) -> None: ...

        def __init__(self, of: Callable[[T], float] | None = None) -> None:
            """What to average."""

    def create(self) -> list[float]:
        """[sum, count]."""
        return [0.0, 0]

    def add(self, acc: list[float], value: T) -> list[float]:
        """Add one number."""
        acc[0] += _get(self.of, value)
        acc[1] += 1
        return acc

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        """Add sums and counts."""
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, acc: list[float]) -> float | None:
        """sum / count."""
        return acc[0] / acc[1] if acc[1] else None


@dataclass(frozen=True)  # no slots: see Sum
class Quantiles(Generic[T]):
    """Mergeable quantile sketch (DDSketch) of ``of(record)``.

    The result maps each requested quantile to its estimate, whose relative error is
    at most ``relative_accuracy`` (1% by default); ``None`` values for no records.
    A well-kept sketch library does this better than code we would write by hand:
    it is small, pure Python, mergeable and has a proven relative-error bound.
    """

    quantiles: Sequence[float] = DEFAULT_QUANTILES
    of: Callable[[T], float] | None = None
    relative_accuracy: float = 0.01

    if TYPE_CHECKING:  # without ``of`` the records are the numbers

        @overload
        def __init__(
            self: Quantiles[float],
            quantiles: Sequence[float] = DEFAULT_QUANTILES,
            of: None = None,
            relative_accuracy: float = 0.01,
        ) -> None: ...

        @overload
        def __init__(
            self,
            quantiles: Sequence[float],
            of: Callable[[T], float],
            relative_accuracy: float = 0.01,
        ) -> None: ...

        @overload
        def __init__(
            self,
            quantiles: Sequence[float] = DEFAULT_QUANTILES,
            *,
            of: Callable[[T], float],
            relative_accuracy: float = 0.01,
        ) -> None: ...

        def __init__(
            self,
            quantiles: Sequence[float] = DEFAULT_QUANTILES,
            of: Callable[[T], float] | None = None,
            relative_accuracy: float = 0.01,
        ) -> None:
            """Which quantiles, of what, how accurately."""

    def create(self) -> DDSketch:
        """An empty sketch."""
        return DDSketch(relative_accuracy=self.relative_accuracy)

    def add(self, acc: DDSketch, value: T) -> DDSketch:
        """Add one (non-negative) number."""
        acc.add(_get(self.of, value))
        return acc

    def merge(self, a: DDSketch, b: DDSketch) -> DDSketch:
        """Merge two sketches."""
        a.merge(b)
        return a

    def result(self, acc: DDSketch) -> dict[float, float | None]:
        """Quantile -> estimate."""
        if acc.count == 0:
            return {q: None for q in self.quantiles}
        return {q: acc.get_quantile_value(q) for q in self.quantiles}


@dataclass(frozen=True, slots=True)
class Reduce:
    """``fn`` folded over ``of(record)``: ``fn(fn(a, b), c)``...; ``None`` for no records.

    ``fn`` must be associative and commutative (like ``max`` or ``operator.add``):
    records reach a window out of order, and merging sessions combine partial results.
    Its values must be storable in state (plain data).

    >>> r = Reduce(max, of=lambda e: e["v"])
    >>> acc = r.create()
    >>> for e in ({"v": 3}, {"v": 9}, {"v": 4}):
    ...     acc = r.add(acc, e)
    >>> r.result(acc)
    9
    """

    fn: Callable[[Any, Any], Any]
    of: Callable[[Any], Any] | None = None

    def create(self) -> tuple[Any, ...]:
        """No value yet: ``()``; then ``(value,)``."""
        return ()

    def add(self, acc: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
        """Fold one record in."""
        v = _get(self.of, value)
        return (self.fn(acc[0], v),) if acc else (v,)

    def merge(self, a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        """Fold two partial results."""
        if not a:
            return b
        return (self.fn(a[0], b[0]),) if b else a

    def result(self, acc: tuple[Any, ...]) -> Any:
        """The folded value."""
        return acc[0] if acc else None


@dataclass(frozen=True, slots=True)
class Collect:
    """Every ``of(record)`` of the window, in the order the records arrived (a merge
    puts the earlier session's first). Its values must be storable in state.

    >>> c = Collect(of=lambda e: e["id"])
    >>> c.result(c.add(c.add(c.create(), {"id": 7}), {"id": 2}))
    [7, 2]
    """

    of: Callable[[Any], Any] | None = None

    def create(self) -> list[Any]:
        """An empty list."""
        return []

    def add(self, acc: list[Any], value: Any) -> list[Any]:
        """Append one record's value."""
        acc.append(_get(self.of, value))
        return acc

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        """Both lists, one after the other."""
        return a + b

    def result(self, acc: list[Any]) -> list[Any]:
        """A copy of the values."""
        return list(acc)


# -- the sketch as plain fields, for state encodings -----------------------------------
# ddsketch has no public API for its full state (its protobuf form drops count, sum,
# min and max), so these read and set the attributes its own ``copy`` and ``merge``
# use. tests/unit/test_codec.py checks that a round trip keeps quantiles and merges.


def sketch_fields(sketch: DDSketch) -> list[Any]:
    """A sketch's exact state as plain values.

    Returns:
        ``[relative accuracy, count, zero count, sum, min, max, positive store,
        negative store]``, each store ``[offset, min key, max key, count, bins]`` with
        the keys ``None`` while the store is empty and the bins as little-endian doubles.
    """
    return [
        float(sketch._mapping.relative_accuracy),
        sketch._count,
        sketch._zero_count,
        sketch._sum,
        sketch._min,
        sketch._max,
        _store_fields(sketch._store),
        _store_fields(sketch._negative_store),
    ]


def sketch_from_fields(fields: list[Any]) -> DDSketch:
    """Rebuild a sketch from :func:`sketch_fields`.

    Raises:
        ValueError: the fields do not describe a valid sketch.
    """
    if len(fields) != 8:
        raise ValueError(f"a sketch has 8 fields, not {len(fields)}")
    accuracy, count, zero_count, total, low, high, positive, negative = fields
    if type(accuracy) is not float:
        raise ValueError("sketch relative accuracy is not a float")
    for number in (count, zero_count, total, low, high):
        if type(number) not in (int, float):
            raise ValueError(f"sketch field {number!r} is not a number")
    sketch = DDSketch(relative_accuracy=accuracy)  # checks 0 < accuracy < 1
    _set_store(sketch._store, positive)
    _set_store(sketch._negative_store, negative)
    sketch._count = count
    sketch._zero_count = zero_count
    sketch._sum = total
    sketch._min = low
    sketch._max = high
    return sketch


def _store_fields(store: DenseStore) -> list[Any]:
    """One dense store's state (see :func:`sketch_fields`)."""
    bins = store.bins
    empty = not bins
    return [
        store.offset,
        None if empty else store.min_key,
        None if empty else store.max_key,
        store.count,
        struct.pack(f"<{len(bins)}d", *bins),
    ]


def _set_store(store: DenseStore, fields: Any) -> None:
    """Give an empty dense store the state of :func:`_store_fields`, checked."""
    if type(fields) is not list or len(fields) != 5:
        raise ValueError("a sketch store has 5 fields")
    offset, min_key, max_key, count, raw = fields
    if type(offset) is not int or type(raw) is not bytes or len(raw) % 8:
        raise ValueError("malformed sketch store")
    if type(count) not in (int, float):
        raise ValueError("sketch store count is not a number")
    bins = list(struct.unpack(f"<{len(raw) // 8}d", raw))
    if bins:
        if type(min_key) is not int or type(max_key) is not int:
            raise ValueError("sketch store keys are not integers")
        if not offset <= min_key <= max_key < offset + len(bins):
            raise ValueError("sketch store keys lie outside its bins")
        store.min_key = min_key
        store.max_key = max_key
    elif min_key is not None or max_key is not None or offset != 0:
        raise ValueError("an empty sketch store has keys")
    store.offset = offset
    store.bins = bins
    store.count = count
