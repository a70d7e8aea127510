"""An independent, brute-force reference for windowed aggregation over event time.

It shares no code with the engine or the job API: it recomputes everything from
scratch from the arrival order of batches, as plainly as possible, so that the
property tests can compare the engine's answers with it.

The model:

* The watermark a batch is judged against is the one before the batch:
  ``W = max event time of all previous batches - bound`` (``-inf`` before the
  first batch). Watermarks move only between batches.
* A record is *late* iff ``last_end(ts) + lateness <= W``; ``last_end`` is the end of
  the last window the record belongs to (for sessions, of its own proto-session
  ``[ts, ts + gap)``). Late records go to the late output and nowhere else.
* A hopping or cumulative record that is not late may still miss some of its
  windows: a window with ``end + lateness <= W`` at the record's arrival does not
  get it. Cumulative windows of a ``size`` period all start at the period's start
  and end at each ``step`` after it; they are named by start and end.
* The *final view* holds, for every key and window, the aggregate over all records
  that got into that window. Sessions are rebuilt from the key's non-late event
  times: sorted, split where consecutive times differ by ``gap`` or more; a session
  spans ``[first_ts, last_ts + gap)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

NEG_INF = -math.inf


@dataclass(frozen=True)
class Event:
    """One generated input record."""

    key: str
    ts: int
    value: int
    id: int

    def as_record(self) -> dict[str, Any]:
        """The record as it is sent to a job."""
        return {"k": self.key, "ts": self.ts, "v": self.value, "id": self.id}


@dataclass(frozen=True)
class RefTumbling:
    """Tumbling windows of ``size`` ms, aligned to the epoch."""

    size: int
    lateness: int = 0


@dataclass(frozen=True)
class RefHopping:
    """Windows of ``size`` ms starting every ``slide`` ms."""

    size: int
    slide: int
    lateness: int = 0


@dataclass(frozen=True)
class RefSession:
    """Gap-based sessions."""

    gap: int
    lateness: int = 0


@dataclass(frozen=True)
class RefCumulative:
    """Per ``size`` period, the windows ``[s, s + k * step)`` for k = 1 .. size / step."""

    size: int
    step: int
    lateness: int = 0


RefSpec = RefTumbling | RefHopping | RefSession | RefCumulative
Batches = Sequence[Sequence[Event]]
# (key, window start); cumulative windows share starts: (key, window start, window end)
WindowKey = tuple[str, int] | tuple[str, int, int]


def watermarks_before(batches: Batches, bound: int) -> list[float]:
    """The watermark each batch is judged against."""
    out: list[float] = []
    highest: float = NEG_INF
    for batch in batches:
        out.append(highest - bound)
        for e in batch:
            highest = max(highest, e.ts)
    return out


def last_end(spec: RefSpec, ts: int) -> int:
    """End of the last window a record at ``ts`` belongs to."""
    if isinstance(spec, RefTumbling):
        return (ts // spec.size) * spec.size + spec.size
    if isinstance(spec, RefHopping):
        return (ts // spec.slide) * spec.slide + spec.size
    if isinstance(spec, RefCumulative):
        return (ts // spec.size) * spec.size + spec.size
    return ts + spec.gap


def cumulative_windows(spec: RefCumulative, ts: int) -> list[tuple[int, int]]:
    """Every window of ``ts``'s period that contains it, found by plain search."""
    start = (ts // spec.size) * spec.size
    found = []
    for k in range(1, spec.size // spec.step + 1):
        end = start + k * spec.step
        if start <= ts < end:
            found.append((start, end))
    return found


def window_key(spec: RefSpec, key: str, start: int, end: int) -> WindowKey:
    """How the final view names a window: by start, except cumulative windows."""
    return (key, start, end) if isinstance(spec, RefCumulative) else (key, start)


def fixed_windows(spec: RefTumbling | RefHopping, ts: int) -> list[tuple[int, int]]:
    """Every ``[start, end)`` window containing ``ts``, found by plain search."""
    size = spec.size
    slide = spec.size if isinstance(spec, RefTumbling) else spec.slide
    found = []
    k = (ts - size) // slide
    while k * slide <= ts:
        start = k * slide
        if start <= ts < start + size:
            found.append((start, start + size))
        k += 1
    return found


def is_late(spec: RefSpec, ts: int, watermark: float) -> bool:
    """Whether a record at ``ts`` is late against ``watermark``."""
    return last_end(spec, ts) + spec.lateness <= watermark


def late_events(batches: Batches, spec: RefSpec, bound: int) -> list[Event]:
    """The records that go to the late output, in arrival order."""
    out = []
    for batch, wm in zip(batches, watermarks_before(batches, bound), strict=True):
        out.extend(e for e in batch if is_late(spec, e.ts, wm))
    return out


def window_members(
    batches: Batches, spec: RefSpec, bound: int
) -> dict[WindowKey, tuple[int, list[Event]]]:
    """``(key, start) -> (end, records)`` of the final view, before aggregation."""
    members: dict[WindowKey, tuple[int, list[Event]]] = {}
    kept: dict[str, list[Event]] = defaultdict(list)
    for batch, wm in zip(batches, watermarks_before(batches, bound), strict=True):
        for e in batch:
            if is_late(spec, e.ts, wm):
                continue
            if isinstance(spec, RefSession):
                kept[e.key].append(e)
                continue
            if isinstance(spec, RefCumulative):
                windows = cumulative_windows(spec, e.ts)
            else:
                windows = fixed_windows(spec, e.ts)
            for start, end in windows:
                if end + spec.lateness <= wm:
                    continue  # this window was already gone when the record came
                members.setdefault(window_key(spec, e.key, start, end), (end, []))[1].append(e)
    if isinstance(spec, RefSession):
        for key, events in kept.items():
            events = sorted(events, key=lambda x: x.ts)
            group = [events[0]]
            for prev, cur in zip(events, events[1:], strict=False):
                if cur.ts - prev.ts >= spec.gap:
                    members[(key, group[0].ts)] = (group[-1].ts + spec.gap, group)
                    group = []
                group.append(cur)
            members[(key, group[0].ts)] = (group[-1].ts + spec.gap, group)
    return members


def final_view(
    batches: Batches,
    spec: RefSpec,
    bound: int,
    aggregate: Callable[[list[Event]], Any],
) -> dict[WindowKey, tuple[int, Any]]:
    """``(key, start) -> (end, aggregate of the window's records)``."""
    return {
        wk: (end, aggregate(events))
        for wk, (end, events) in window_members(batches, spec, bound).items()
    }


def count(events: list[Event]) -> int:
    """Number of records."""
    return len(events)


def total(events: list[Event]) -> int:
    """Sum of the records' values."""
    return sum(e.value for e in events)


def maximum(events: list[Event]) -> int:
    """The largest value."""
    return max(e.value for e in events)


def ids(events: list[Event]) -> tuple[int, ...]:
    """The records' ids, sorted."""
    return tuple(sorted(e.id for e in events))


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The exact quantile DDSketch approximates: sorted value at index ``floor(q * (n - 1))``."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]
