"""Flink functions that run a job's steps: decode, stateless steps, windows, encode.

Elements between Flink operators are ``(key, value)`` pairs (``key`` is ``None``
until a ``key_by`` step sets it), serialized by PyFlink itself, so a key set upstream reaches
the windows and process steps downstream as on the native engine. Every function
wraps the job's own objects (timestamp functions, ``AggregateFunction``s, output
functions) and sends failures to the dead-letter side output (see ``failures``).

Event time: Flink's watermark is one below Shoal's (a bounded-disorder watermark
is ``max - disorder - 1`` there, ``max - disorder`` here) and Flink fires a window
when the watermark reaches ``end - 1``; both fire ``[start, end)`` at the same
input and emit it at ``end - 1``. ``shoal_watermark`` converts.

So an event-time timer at Shoal time ``ts`` is a Flink timer at ``ts - 1``, and
Flink stamps what the timer emits with ``ts - 1``. Those pairs are ``TimerPair``s:
every step downstream reads their event time as their Flink timestamp plus one
(``event_time``), so windows assign them, process steps see them and sinks stamp
them at ``ts``, as the native engine does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runtime.api.errors import TimestampError
from runtime.api.functions import AggregateFunction as ShoalAggregate
from runtime.api.functions import Window
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


def event_time(pair: Any, flink_timestamp: int) -> int:
    """Shoal's event time of an element with this Flink timestamp."""
    return flink_timestamp + 1 if type(pair) is TimerPair else flink_timestamp


def late_tag(step: str) -> Any:
    """The side-output tag of a window step's late records."""
    return pf.OutputTag(f"{step}.late", pf.Types.PICKLED_BYTE_ARRAY())


# -- sources ---------------------------------------------------------------------------
class DecodeStep(pf.ProcessFunction):  # type: ignore[misc]
    """Raw Kafka bytes -> ``(None, value)``; undecodable records and absurd event times
    are dead-lettered like the native engine does (``WatermarkStrategy`` bounds)."""

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
        # With "clamp", times ahead of the bound pass here; EventTime lowers them.
        self.clamp = strategy.future == "clamp"
        self.failures = failures
        self.codec: Any = None

    def open(self, runtime_context: Any) -> None:
        self.codec = self.codecs()(self.schema)

    def check_time(self, value: Any) -> None:
        """Raise ``TimestampError`` for a missing or absurd event time."""
        if self.timestamp is None:
            return
        t = self.timestamp(value)
        lo = self.min_valid_ms
        hi = (
            2**62
            if self.max_future_ms is None
            else time.time_ns() // 1_000_000 + self.max_future_ms
        )
        if type(t) is int and t > hi and self.clamp:
            return
        if type(t) is not int or not lo <= t <= hi:
            raise TimestampError(
                f"absurd or missing event time {t!r} (valid: {lo}..{hi})", step=self.failures.step
            )

    def process_element(self, raw: Any, ctx: Any) -> Iterator[Any]:
        data = bytes(raw) if raw is not None else None
        values, failed = self.codec.decode_batch([data])
        if failed:
            yield from self.failures.reject(failed[0][1], data, DEAD_LETTERS)
            return
        value = values[0]
        try:
            self.check_time(value)
        except Exception as exc:
            yield from self.failures.reject(exc, data, DEAD_LETTERS)
            return
        yield (None, value)


class EventTime(pf.TimestampAssigner):  # type: ignore[misc]
    """The job's timestamp function on the value of a ``(key, value)`` pair.

    With ``clamp_ahead_ms``, a time further than that ahead of the wall clock is
    lowered to the bound (``WatermarkStrategy(future="clamp")``).
    """

    def __init__(self, timestamp: Callable[[Any], int], clamp_ahead_ms: int | None = None) -> None:
        self.timestamp = timestamp
        self.clamp_ahead_ms = clamp_ahead_ms

    def extract_timestamp(self, value: Pair, record_timestamp: int) -> int:
        t = self.timestamp(value[1])
        if self.clamp_ahead_ms is not None:
            t = min(t, time.time_ns() // 1_000_000 + self.clamp_ahead_ms)
        return t


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
        if type(pair) is TimerPair:
            out = [TimerPair(p) for p in out]
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


# -- windows ---------------------------------------------------------------------------
class Aggregate(pf.AggregateFunction):  # type: ignore[misc]
    """The job's ``AggregateFunction`` as Flink's (incremental, for tumbling/hopping windows).

    The accumulator is ``[shoal_accumulator, failures]``: a value whose ``add`` raised
    is kept out of the aggregate and reported by ``WindowOutput`` as a dead letter.
    """

    MAX_FAILURES = 100  # per window; more are counted in the last one's message

    def __init__(self, agg: ShoalAggregate[Any, Any, Any], failures: Failures) -> None:
        self.agg = agg
        self.failures = failures

    def create_accumulator(self) -> list[Any]:
        return [self.agg.create(), []]

    def add(self, pair: Pair, acc: list[Any]) -> list[Any]:
        try:
            acc[0] = self.agg.add(acc[0], pair[1])
        except Exception as exc:
            # ``reject`` raises under the fail policy; skip keeps nothing.
            for _, record in self.failures.reject(exc, pair[1], DEAD_LETTERS):
                if len(acc[1]) < self.MAX_FAILURES:
                    acc[1].append(record)
        return acc

    def get_result(self, acc: list[Any]) -> list[Any]:
        return acc

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [self.agg.merge(a[0], b[0]), (a[1] + b[1])[: self.MAX_FAILURES]]


class WindowOutput(pf.ProcessWindowFunction):  # type: ignore[misc]
    """Builds a fixed window's output record from ``(key, Window, result)``."""

    def __init__(
        self,
        agg: ShoalAggregate[Any, Any, Any],
        output: Callable[[Any, Window, Any], Any],
        failures: Failures,
    ) -> None:
        self.agg = agg
        self.output = output
        self.failures = failures
        self.reported: Any = None

    def open(self, runtime_context: Any) -> None:
        self.reported = pf.ValueStateDescriptor("shoal.reported_failures", pf.Types.INT())

    def process(self, key: Any, context: Any, accs: Iterable[list[Any]]) -> Iterator[Any]:
        acc, failed = next(iter(accs))
        if failed:
            # A window fires again for late records within allowed lateness: report
            # each failure once.
            state = context.window_state().get_state(self.reported)
            done = state.value() or 0
            for record in failed[done:]:
                yield DEAD_LETTERS, record
            state.update(len(failed))
        w = context.window()
        try:
            value = self.output(key, Window(w.start, w.end), self.agg.result(acc))
        except Exception as exc:
            yield from self.failures.reject(
                exc, {"key": key, "window": (w.start, w.end)}, DEAD_LETTERS
            )
            return
        yield (key, value)

    def clear(self, context: Any) -> None:
        context.window_state().get_state(self.reported).clear()


class Tumbling(pf.TumblingEventTimeWindows):  # type: ignore[misc]
    """Flink's tumbling event-time windows on Shoal's event time (see ``TimerPair``)."""

    def assign_windows(self, element: Any, timestamp: int, context: Any) -> Any:
        return super().assign_windows(element, event_time(element, timestamp), context)


class Hopping(pf.SlidingEventTimeWindows):  # type: ignore[misc]
    """Flink's sliding event-time windows on Shoal's event time (see ``TimerPair``)."""

    def assign_windows(self, element: Any, timestamp: int, context: Any) -> Any:
        return super().assign_windows(element, event_time(element, timestamp), context)


class Sessions(pf.MergingWindowAssigner):  # type: ignore[misc]
    """Event-time sessions that merge only when they overlap strictly.

    Flink's own session assigner also merges sessions that just touch (records exactly
    ``gap`` apart); Shoal starts a new session there.
    """

    def __init__(self, gap_ms: int) -> None:
        self.gap_ms = gap_ms

    def assign_windows(self, element: Any, timestamp: int, context: Any) -> list[Any]:
        t = event_time(element, timestamp)
        return [pf.TimeWindow(t, t + self.gap_ms)]

    def merge_windows(self, windows: Iterable[Any], callback: Any) -> None:
        for group in overlapping_groups(sorted(windows, key=lambda w: (w.start, w.end))):
            if len(group) > 1:
                merged = pf.TimeWindow(min(w.start for w in group), max(w.end for w in group))
                callback.merge(group, merged)

    def get_default_trigger(self, env: Any) -> Any:
        return pf.EventTimeTrigger()

    def get_window_serializer(self) -> Any:
        return pf.TimeWindowSerializer()

    def is_event_time(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"ShoalSessions(gap_ms={self.gap_ms})"


def overlapping_groups(windows: list[Any]) -> list[list[Any]]:
    """Windows sorted by start, grouped where they overlap strictly (``start < end``)."""
    groups: list[list[Any]] = []
    end = LONG_MIN
    for w in windows:
        if groups and w.start < end:
            groups[-1].append(w)
            end = max(end, w.end)
        else:
            groups.append([w])
            end = w.end
    return groups


class SessionOutput(pf.ProcessWindowFunction):  # type: ignore[misc]
    """Aggregates a session's buffered records when it fires (correct under late merges).

    Incremental aggregation on merging windows gives wrong results when a late record
    bridges two sessions (measured), so sessions buffer their records and aggregate
    them with ``create``/``add`` at each firing. Emits ``(key, (start, end, result))``
    for ``SessionEmitter``, which builds the records and the retractions.
    """

    def __init__(self, agg: ShoalAggregate[Any, Any, Any], failures: Failures) -> None:
        self.agg = agg
        self.failures = failures

    def process(self, key: Any, context: Any, elements: Iterable[Pair]) -> Iterator[Any]:
        w = context.window()
        agg = self.agg
        acc = agg.create()
        for pair in elements:
            try:
                acc = agg.add(acc, pair[1])
            except Exception as exc:
                yield from self.failures.reject(exc, pair[1], DEAD_LETTERS)
        try:
            result = agg.result(acc)
        except Exception as exc:
            info = {"key": key, "window": (w.start, w.end)}
            yield from self.failures.reject(exc, info, DEAD_LETTERS)
            return
        yield (key, (w.start, w.end, result))


class SessionEmitter(pf.KeyedProcessFunction):  # type: ignore[misc]
    """Builds session records; retracts emitted sessions that a merge absorbed.

    A session that absorbed sessions already emitted under another start retracts
    them (output with a ``None`` result), then emits itself, as the native engine does.
    The sessions emitted per key are kept in keyed state until a record that is not
    late can no longer reach them (``end + gap - 1 + allowed lateness``). (PyFlink's
    window functions cannot keep such per-key state themselves: their ``global_state``
    fails on merging windows.)
    """

    def __init__(
        self,
        output: Callable[[Any, Window, Any], Any],
        gap_ms: int,
        lateness_ms: int,
        failures: Failures,
    ) -> None:
        self.output = output
        self.retain_ms = gap_ms - 1 + lateness_ms
        self.failures = failures
        self.emitted: Any = None

    def open(self, runtime_context: Any) -> None:
        self.emitted = runtime_context.get_state(
            pf.ValueStateDescriptor("shoal.emitted_sessions", pf.Types.PICKLED_BYTE_ARRAY())
        )

    def _record(self, key: Any, start: int, end: int, result: Any) -> Iterator[Any]:
        try:
            yield (key, self.output(key, Window(start, end), result))
        except Exception as exc:
            info = {"key": key, "window": (start, end)}
            yield from self.failures.reject(exc, info, DEAD_LETTERS)

    def process_element(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        key, (start, end, result) = pair
        emitted: dict[int, int] = self.emitted.value() or {}
        for s, e in sorted(emitted.items()):
            if s != start and s < end and e > start:
                del emitted[s]
                yield from self._record(key, s, e, None)
        emitted[start] = end
        self.emitted.update(emitted)
        # A Flink timer at t fires when Shoal's watermark reaches t + 1.
        ctx.timer_service().register_event_time_timer(end + self.retain_ms - 1)
        yield from self._record(key, start, end, result)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        wm = timestamp + 1
        emitted: dict[int, int] = self.emitted.value() or {}
        alive = {s: e for s, e in emitted.items() if e + self.retain_ms > wm}
        if alive:
            self.emitted.update(alive)
        else:
            self.emitted.clear()
        yield from ()


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
    "Aggregate",
    "DecodeStep",
    "EncodeStep",
    "EventTime",
    "FilterStep",
    "FlatMapStep",
    "Hopping",
    "KeyStep",
    "MapStep",
    "SessionEmitter",
    "SessionOutput",
    "Sessions",
    "TimerPair",
    "Tumbling",
    "WindowOutput",
    "encode_dead_letter",
    "event_time",
    "late_tag",
    "overlapping_groups",
    "pair_key",
    "shoal_watermark",
]
