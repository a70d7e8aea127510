"""Flink functions that run a job's steps: decode, stateless steps, encode (windows:
``runtime.flink.windows``; process steps: ``runtime.flink.process``).

Elements between Flink operators are ``(key, value)`` pairs (``key`` is ``None``
until a ``key_by`` step sets it), serialized by PyFlink itself, so a key set upstream
reaches the windows and process steps downstream as on the native engine. Every
function wraps the job's own objects (timestamp functions, map and filter functions)
and sends failures to the dead-letter side output (see ``failures``).

Event time: Flink's watermark is one below Shoal's (a bounded-disorder watermark
is ``max - disorder - 1`` there, ``max - disorder`` here); ``shoal_watermark``
converts.

So an event-time timer at Shoal time ``ts`` is a Flink timer at ``ts - 1``, and
Flink stamps what the timer emits with ``ts - 1``. Those pairs are ``TimerPair``s:
every step downstream reads their event time as their Flink timestamp plus one
(``event_time``), so windows assign them, process steps see them and sinks stamp
them at ``ts``, as the native engine does.

A join emits pairs whose event time is neither the Flink timestamp of the element
being processed nor of the timer (a pair's time is the later of its two records; an
unmatched left record of a left join goes out at its own time when its cleanup timer
fires). Those are ``StampedPair``s, which carry their event time; stateless and process
steps downstream keep it (``like``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runtime.api.errors import TimestampError
from runtime.api.io import CodecFactory
from runtime.api.watermarks import WatermarkStrategy as ShoalWatermarks
from runtime.engine.topics import key_bytes
from runtime.flink import _pyflink as pf
from runtime.flink.failures import DEAD_LETTER_TAG, Failures

LONG_MIN = -(2**63)
DEAD_LETTERS = pf.OutputTag(DEAD_LETTER_TAG, pf.Types.PICKLED_BYTE_ARRAY())
Pair = tuple[Any, Any]


def shoal_watermark(flink_watermark: int) -> int:
    """Shoal's watermark for Flink's (one higher, except before the first one)."""
    return flink_watermark if flink_watermark <= LONG_MIN else flink_watermark + 1


class TimerPair(tuple):  # type: ignore[type-arg]
    """A ``(key, value)`` pair whose event time is its Flink timestamp plus one: emitted
    by an event-time timer (or derived from such a pair by a stateless step)."""

    __slots__ = ()


class StampedPair(tuple):  # type: ignore[type-arg]
    """A ``(key, value)`` pair that carries its own event time (``ts``), whatever its
    Flink timestamp is: emitted by a join step."""

    ts: int

    def __new__(cls, pair: Pair, ts: int) -> StampedPair:
        obj = super().__new__(cls, pair)
        obj.ts = ts
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (StampedPair, (tuple(self), self.ts))


def event_time(pair: Any, flink_timestamp: int) -> int:
    """Shoal's event time of an element with this Flink timestamp."""
    kind = type(pair)
    if kind is TimerPair:
        return flink_timestamp + 1
    if kind is StampedPair:
        return int(pair.ts)
    return flink_timestamp


def stamped(pair: Pair, ts: int, flink_timestamp: int) -> Pair:
    """``pair`` as an element whose event time is ``ts`` when Flink stamps it
    ``flink_timestamp``: a plain pair when the two agree, else a ``StampedPair``."""
    return pair if ts == flink_timestamp else StampedPair(pair, ts)


def like(source: Any, pair: Pair) -> Pair:
    """``pair`` derived from ``source`` (same Flink timestamp): the same event time."""
    kind = type(source)
    if kind is TimerPair:
        return TimerPair(pair)
    if kind is StampedPair:
        return StampedPair(pair, source.ts)
    return pair


def late_tag(step: str, side: str = "") -> Any:
    """The side-output tag of a window step's late records (``side``: of a join step's
    ``"left"`` or ``"right"`` input)."""
    name = f"{step}.late" if not side else f"{step}.late_{side}"
    return pf.OutputTag(name, pf.Types.PICKLED_BYTE_ARRAY())


# -- sources ---------------------------------------------------------------------------
class DecodeStep(pf.ProcessFunction):  # type: ignore[misc]
    """Raw Kafka bytes -> ``(None, value)``, or ``((None, value), event time)`` when the
    source has a timestamp function (``pf.stamp_with_event_time`` takes it from there);
    undecodable records and absurd event times are dead-lettered like the native engine
    does (``WatermarkStrategy`` bounds). With ``future="clamp"``, a time further ahead
    of the wall clock than the bound is lowered to it."""

    def __init__(
        self,
        schema: str,
        timestamp: Callable[[Any], int] | None,
        strategy: ShoalWatermarks,
        failures: Failures,
        codecs: Callable[[], CodecFactory],
    ) -> None:
        self.schema = schema
        self.codecs = codecs
        self.timestamp = timestamp
        self.min_valid_ms = strategy.min_valid_ms
        self.max_future_ms = strategy.max_future_ms
        self.clamp = strategy.future == "clamp"
        self.failures = failures
        self.codec: Any = None

    def open(self, runtime_context: Any) -> None:
        self.codec = self.codecs()(self.schema)

    def event_time(self, value: Any) -> int:
        """The value's event time (clamped); ``TimestampError`` for a missing or absurd one."""
        t = self.timestamp(value)  # type: ignore[misc]
        lo = self.min_valid_ms
        hi = (
            2**62
            if self.max_future_ms is None
            else time.time_ns() // 1_000_000 + self.max_future_ms
        )
        if type(t) is int and t > hi and self.clamp:
            return hi
        if type(t) is not int or not lo <= t <= hi:
            raise TimestampError(
                f"absurd or missing event time {t!r} (valid: {lo}..{hi})", step=self.failures.step
            )
        return t

    def process_element(self, raw: Any, ctx: Any) -> Iterator[Any]:
        if isinstance(raw, pf.Row):  # ``Row(raw)`` of the steps jar's ``RawValues``
            raw = raw[0]
        data = bytes(raw) if raw is not None else None
        values, failed = self.codec.decode_batch([data])
        if failed:
            yield from self.failures.reject(failed[0][1], data, DEAD_LETTERS)
            return
        value = values[0]
        if self.timestamp is None:
            yield (None, value)
            return
        try:
            t = self.event_time(value)
        except Exception as exc:
            yield from self.failures.reject(exc, data, DEAD_LETTERS)
            return
        yield ((None, value), t)


# -- stateless steps -------------------------------------------------------------------
class _Step(pf.ProcessFunction):  # type: ignore[misc]
    """A user function over the value of each pair; exceptions go to the error policy."""

    def __init__(self, fn: Callable[[Any], Any], failures: Failures) -> None:
        self.fn = fn
        self.failures = failures

    def apply(self, key: Any, value: Any) -> Iterable[Pair]:
        raise NotImplementedError

    def process_element(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        try:
            out = list(self.apply(*pair))
        except Exception as exc:
            yield from self.failures.reject(exc, pair[1], DEAD_LETTERS)
            return
        if type(pair) is not tuple:
            out = [like(pair, p) for p in out]
        yield from out


class MapStep(_Step):
    """One output per input."""

    def apply(self, key: Any, value: Any) -> Iterable[Pair]:
        return ((key, self.fn(value)),)


class FilterStep(_Step):
    """Keeps the pairs whose value the predicate accepts."""

    def apply(self, key: Any, value: Any) -> Iterable[Pair]:
        return ((key, value),) if self.fn(value) else ()


class FlatMapStep(_Step):
    """Zero or more outputs per input."""

    def apply(self, key: Any, value: Any) -> Iterable[Pair]:
        return [(key, x) for x in self.fn(value)]


class KeyStep(_Step):
    """Sets the key of each pair."""

    def apply(self, key: Any, value: Any) -> Iterable[Pair]:
        return ((self.fn(value), value),)


def pair_key(pair: Pair) -> Any:
    """Flink's key selector: the key of a pair."""
    return pair[0]


# -- sinks -----------------------------------------------------------------------------
class EncodeStep(pf.ProcessFunction):  # type: ignore[misc]
    """``(key, value)`` -> ``Row(key bytes, value bytes, timestamp ms)`` for the sink: the
    value as Avro single-object (or JSON for no schema), the message key as the native
    engine writes it (the sink's ``key=`` function of the value, else the stream's key),
    the record's event time (``None`` when it has none)."""

    def __init__(
        self,
        schema: str,
        failures: Failures,
        codecs: Callable[[], CodecFactory],
        key: Callable[[Any], Any] | None = None,
    ) -> None:
        self.schema = schema
        self.failures = failures
        self.codecs = codecs
        self.key = key
        self.encode: Any = None

    def open(self, runtime_context: Any) -> None:
        self.encode = self.codecs()(self.schema).encode

    def process_element(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        key, value = pair
        try:
            data = self.encode(value)
            key_data = key_bytes(key if self.key is None else self.key(value))
        except Exception as exc:
            yield from self.failures.reject(exc, value, DEAD_LETTERS)
            return
        yield pf.Row(key_data, data, event_time(pair, ctx.timestamp()))


def encode_dead_letter(codecs: Callable[[], CodecFactory], record: dict[str, Any]) -> Any:
    """A dead letter as ``DeadLetter`` Avro (single-object encoding), keyed like the
    native engine's (by the failed record's key, which Flink's readers do not see)."""
    data: bytes = codecs()("DeadLetter").encode(record)
    return pf.Row(record["original_key"], data, None)


__all__ = [
    "DEAD_LETTERS",
    "DecodeStep",
    "EncodeStep",
    "FilterStep",
    "FlatMapStep",
    "KeyStep",
    "MapStep",
    "StampedPair",
    "TimerPair",
    "encode_dead_letter",
    "event_time",
    "late_tag",
    "like",
    "pair_key",
    "shoal_watermark",
    "stamped",
]
