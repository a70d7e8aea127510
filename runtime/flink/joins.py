"""Interval join steps on Flink: Shoal's join rules on keyed state and event-time timers.

Flink's own interval join is not used: PyFlink (2.2) has no ``interval_join`` in its
DataStream API, and Flink's Java operator could not express Shoal's rules anyway (no
left outer joins, no allowed lateness: a record is late there as soon as its time is
below the watermark, and its late records are dropped, not sent to a side output).
So every join, inner or left, runs as one ``KeyedCoProcessFunction`` (:class:`JoinStep`)
over the two inputs connected and keyed by the pairs' keys, following the rules of
:mod:`runtime.engine.joins` exactly, with ``lower``/``upper`` the bounds, ``L`` the
allowed lateness and ``wm`` Shoal's watermark (Flink's plus one, ``shoal_watermark``),
the lower of both inputs' as Flink keeps it for a two-input operator:

* a record with ``ts + L < wm`` is late: it joins nothing and goes to the late side
  output of its input (``late_tag(step, "left" | "right")``), as it came;
* any other record pairs with the kept records of the other side of its key
  (``l + lower <= r <= l + upper``); each pair goes out at once with event time
  ``max(l, r)`` (a ``StampedPair`` when that is not the element's own time);
* it is kept until ``wm > l + upper + L`` (left) or ``wm > r - lower + L`` (right):
  a Flink event-time timer of the key at that bound (Shoal's timer at ``bound + 1``
  is Flink's at ``bound``) drops it, judged at the timer's own time; with
  ``how="left"``, a left record that paired with nothing goes out then, once, as
  ``output(key, left, None)`` at its own event time.

State: two Flink ``ValueState``s per key (checkpointed with the job), ``shoal.join.left``
and ``shoal.join.right``, each the side's kept records sorted by event time (arrival
order among equal times) as ``[ts, value, matched]`` lists. Timers are Flink's (one per
key and time, checkpointed too). A failing ``output`` function dead-letters the pair
``{"key", "left", "right"}``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from typing import Any

from runtime.flink import _pyflink as pf
from runtime.flink.failures import Failures
from runtime.flink.functions import (
    DEAD_LETTERS,
    Pair,
    event_time,
    late_tag,
    shoal_watermark,
    stamped,
)

__all__ = ["LEFT", "RIGHT", "SIDES", "JoinBounds", "JoinStep"]

LEFT, RIGHT = 0, 1
SIDES = ("left", "right")


def _ts(entry: list[Any]) -> int:
    ts: int = entry[0]
    return ts


class JoinBounds:
    """The bounds of a join step in milliseconds (``right.ts - left.ts`` within
    ``[lower, upper]``) and its allowed lateness."""

    __slots__ = ("lateness", "lower", "upper")

    def __init__(self, lower_ms: int, upper_ms: int, lateness_ms: int) -> None:
        self.lower = lower_ms
        self.upper = upper_ms
        self.lateness = lateness_ms

    def reach(self, side: int) -> int:
        """How far past a record's time of this side its last partner can be."""
        return self.upper if side == LEFT else -self.lower


class JoinStep(pf.KeyedCoProcessFunction):  # type: ignore[misc]
    """An interval join step (see the module docstring): input 1 is the left stream,
    input 2 the right one, both keyed by the pairs' keys.

    Args:
        step: the step's name (it names the late side outputs).
        bounds: the join's bounds and allowed lateness.
        outer: a left join (emit unmatched left records with ``None``).
        output: builds the emitted record from ``(key, left, right)``.
        failures: what to do with a failing ``output`` call.
    """

    def __init__(
        self,
        step: str,
        bounds: JoinBounds,
        outer: bool,
        output: Callable[[Any, Any, Any], Any],
        failures: Failures,
    ) -> None:
        self.step = step
        self.bounds = bounds
        self.outer = outer
        self.output = output
        self.failures = failures
        self.late = (late_tag(step, "left"), late_tag(step, "right"))
        self.states: tuple[Any, Any] = (None, None)

    def open(self, runtime_context: Any) -> None:
        self.states = tuple(
            runtime_context.get_state(
                pf.ValueStateDescriptor(f"shoal.join.{side}", pf.Types.PICKLED_BYTE_ARRAY())
            )
            for side in SIDES
        )

    def process_element1(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        return self._element(LEFT, pair, ctx)

    def process_element2(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        return self._element(RIGHT, pair, ctx)

    def _element(self, side: int, pair: Pair, ctx: Any) -> Iterator[Any]:
        key, value = pair
        b = self.bounds
        timers = ctx.timer_service()
        flink_ts = ctx.timestamp()
        ts = event_time(pair, flink_ts)
        if ts + b.lateness < shoal_watermark(timers.current_watermark()):
            yield self.late[side], pair
            return
        if side == LEFT:
            lo, hi = ts + b.lower, ts + b.upper
        else:
            lo, hi = ts - b.upper, ts - b.lower
        own_state, other_state = self.states[side], self.states[1 - side]
        others: list[list[Any]] = other_state.value() or []
        matching = others[bisect_left(others, lo, key=_ts) : bisect_right(others, hi, key=_ts)]
        if side == RIGHT and self.outer and any(not e[2] for e in matching):
            for e in matching:
                e[2] = True  # the entries are others' own lists: written back below
            other_state.update(others)
        own: list[list[Any]] = own_state.value() or []
        own.insert(bisect_right(own, ts, key=_ts), [ts, value, bool(matching)])
        own_state.update(own)
        # Shoal's cleanup timer at ``ts + reach + L + 1`` is Flink's one lower.
        timers.register_event_time_timer(ts + b.reach(side) + b.lateness)
        for other_ts, other, _ in matching:
            left, right = (value, other) if side == LEFT else (other, value)
            yield from self._pair(key, left, right, max(ts, other_ts), flink_ts)

    def _pair(self, key: Any, left: Any, right: Any, ts: int, flink_ts: int) -> Iterator[Any]:
        try:
            result = self.output(key, left, right)
        except Exception as exc:
            info = {"key": key, "left": left, "right": right}
            yield from self.failures.reject(exc, info, DEAD_LETTERS)
            return
        yield stamped((key, result), ts, flink_ts)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        # Judged at the timer's own time (Shoal's ``timestamp + 1``): records that
        # expire later have timers of their own.
        floor = timestamp + 1 - self.bounds.lateness
        key = ctx.get_current_key()
        for side in (LEFT, RIGHT):
            state = self.states[side]
            entries: list[list[Any]] | None = state.value()
            if not entries:
                continue
            reach = self.bounds.reach(side)
            kept = [e for e in entries if e[0] + reach >= floor]
            if len(kept) == len(entries):
                continue
            if side == LEFT and self.outer:
                for ts, value, matched in entries:
                    if not matched and ts + reach < floor:
                        yield from self._pair(key, value, None, ts, timestamp)
            if kept:
                state.update(kept)
            else:
                state.clear()
