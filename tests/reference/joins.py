"""Interval joins by brute force: every pair of records, from the definition.

The definition (the job API's ``KeyedStream.join``): a left record at ``l`` and a
right record at ``r`` of the same key pair when ``l + lower <= r <= l + upper``; the
pair's event time is ``max(l, r)``. A record is late when ``ts + lateness`` is below
the watermark it arrives at; a late record pairs with nothing. A left join also
emits every left record that is not late and paired with nothing, with ``None`` as its
right side, at its own event time.

Nothing here keeps state, expires records or looks at arrival order beyond the
watermark each record arrives at: all pairs of all records that are not late.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arrival", "JoinResult", "Pair", "interval_join"]

Pair = tuple[Any, Any, Any, int]
"""``(key, left id, right id or None, event time)`` of an emitted record."""


@dataclass(frozen=True)
class Arrival:
    """A record as the join sees it: its side, key, event time, id, and the watermark
    it arrives at."""

    side: str  # "left" or "right"
    key: Any
    ts: int
    id: Any
    watermark: int


@dataclass
class JoinResult:
    """What a join emits: pairs (with multiplicity) and the late records of each side."""

    pairs: Counter[Pair] = field(default_factory=Counter)
    late_left: Counter[Any] = field(default_factory=Counter)
    late_right: Counter[Any] = field(default_factory=Counter)


def interval_join(
    arrivals: Iterable[Arrival], lower: int, upper: int, lateness: int, how: str = "inner"
) -> JoinResult:
    """All pairs of records that are not late (plus unmatched left records for
    ``how="left"``); bounds and lateness in milliseconds."""
    result = JoinResult()
    lefts: list[Arrival] = []
    rights: list[Arrival] = []
    for a in arrivals:
        late = a.ts + lateness < a.watermark
        if a.side == "left":
            if late:
                result.late_left[a.id] += 1
            else:
                lefts.append(a)
        elif a.side == "right":
            if late:
                result.late_right[a.id] += 1
            else:
                rights.append(a)
        else:
            raise ValueError(f"unknown side {a.side!r}")
    for left in lefts:
        matched = False
        for right in rights:
            if right.key == left.key and left.ts + lower <= right.ts <= left.ts + upper:
                matched = True
                result.pairs[(left.key, left.id, right.id, max(left.ts, right.ts))] += 1
        if how == "left" and not matched:
            result.pairs[(left.key, left.id, None, left.ts)] += 1
    return result
