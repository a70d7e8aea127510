"""Window specifications: tumbling, hopping and session windows.

Windows are half-open ``[start, end)`` intervals of event time in epoch milliseconds.
A window fires when the watermark reaches its end. ``allowed_lateness`` keeps a
fired window's state so that a late record inside it re-emits an updated result;
records later than that go to the late output. The default allowed lateness is zero.

>>> from datetime import timedelta
>>> w = tumbling(timedelta(seconds=10))
>>> w.assign(12_345)
[(10000, 20000)]
>>> hopping(timedelta(seconds=10), timedelta(seconds=5)).assign(12_345)
[(5000, 15000), (10000, 20000)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from runtime.api.errors import ConfigError
from runtime.api.watermarks import to_ms

__all__ = ["Hopping", "Session", "Tumbling", "WindowSpec", "hopping", "session", "tumbling"]


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed-size, non-overlapping windows aligned to the epoch."""

    size_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The windows that contain event time ``ts``."""
        start = ts - ts % self.size_ms
        return [(start, start + self.size_ms)]

    def last_end(self, ts: int) -> int:
        """The end of the last window that contains ``ts`` (decides lateness)."""
        return ts - ts % self.size_ms + self.size_ms


@dataclass(frozen=True, slots=True)
class Hopping:
    """Fixed-size windows that start every ``slide_ms``; a record is in size/slide of them."""

    size_ms: int
    slide_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The windows that contain event time ``ts``, oldest first."""
        last_start = ts - ts % self.slide_ms
        first_start = last_start - self.size_ms + self.slide_ms
        return [
            (start, start + self.size_ms)
            for start in range(first_start, last_start + 1, self.slide_ms)
            if start <= ts < start + self.size_ms
        ]

    def last_end(self, ts: int) -> int:
        """The end of the last window that contains ``ts``."""
        return ts - ts % self.slide_ms + self.size_ms


@dataclass(frozen=True, slots=True)
class Session:
    """Per-key sessions: records closer than ``gap_ms`` in event time share a window.

    A record at ``ts`` opens ``[ts, ts + gap)``; overlapping sessions of the same key
    merge, including a late record that bridges two sessions already emitted.
    """

    gap_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The proto-session a record at ``ts`` opens on its own."""
        return [(ts, ts + self.gap_ms)]

    def last_end(self, ts: int) -> int:
        """The end of the record's own proto-session (decides lateness)."""
        return ts + self.gap_ms


WindowSpec = Tumbling | Hopping | Session


def _positive(value: timedelta, what: str) -> int:
    ms = to_ms(value, what)
    if ms <= 0:
        raise ConfigError(f"{what} must be positive, got {value}")
    return ms


def _early(early_updates: timedelta | None) -> int | None:
    return None if early_updates is None else _positive(early_updates, "early_updates")


def tumbling(
    size: timedelta,
    *,
    allowed_lateness: timedelta = timedelta(0),
    early_updates: timedelta | None = None,
) -> Tumbling:
    """Tumbling windows of ``size``.

    Args:
        size: window length.
        allowed_lateness: how long after a window fires late records still update it.
        early_updates: if set, emit the running result of open windows every this much
            processing time, before the window's final result.
    """
    return Tumbling(
        _positive(size, "size"), to_ms(allowed_lateness, "allowed_lateness"), _early(early_updates)
    )


def hopping(
    size: timedelta,
    slide: timedelta,
    *,
    allowed_lateness: timedelta = timedelta(0),
    early_updates: timedelta | None = None,
) -> Hopping:
    """Hopping (sliding) windows of ``size`` that start every ``slide``.

    Raises:
        ConfigError: ``slide`` is larger than ``size`` or does not divide it.
    """
    size_ms, slide_ms = _positive(size, "size"), _positive(slide, "slide")
    if slide_ms > size_ms or size_ms % slide_ms:
        raise ConfigError(f"slide ({slide}) must divide size ({size}) and not exceed it")
    return Hopping(
        size_ms, slide_ms, to_ms(allowed_lateness, "allowed_lateness"), _early(early_updates)
    )


def session(
    gap: timedelta,
    *,
    allowed_lateness: timedelta = timedelta(0),
    early_updates: timedelta | None = None,
) -> Session:
    """Session windows that close after ``gap`` of event-time inactivity per key."""
    return Session(
        _positive(gap, "gap"), to_ms(allowed_lateness, "allowed_lateness"), _early(early_updates)
    )
