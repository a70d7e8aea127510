"""Events per key and tumbling event-time window, counted one by one.

>>> window_counts([{"user_id": "u1", "event_time_ms": 12_345}, {"user_id": "u1",
...                "event_time_ms": 19_999}, {"user_id": "u2", "event_time_ms": 20_000}])
{('u1', 10000): 2, ('u2', 20000): 1}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def window_counts(
    events: Iterable[Mapping[str, Any]],
    size_ms: int = 10_000,
    key: str = "user_id",
    *,
    time: str = "event_time_ms",
) -> dict[tuple[Any, int], int]:
    """``(event[key], window start) -> number of events`` for windows of ``size_ms``
    aligned to the epoch, the event's time read from its field ``time``."""
    out: dict[tuple[Any, int], int] = {}
    for e in events:
        ts = e[time]
        window = (e[key], ts - ts % size_ms)
        out[window] = out.get(window, 0) + 1
    return out
