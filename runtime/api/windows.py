"""Window specifications: tumbling, hopping, session and cumulative windows.

A spec only describes windows; the engines cut event time with the window assigner
registered for the spec's type (``runtime.engine.windowing``), so both engines, the
native one and Flink, run every kind the same way.

Windows are half-open ``[start, end)`` intervals of event time in epoch milliseconds.
A window fires when the watermark reaches its end, and its result carries event time
``end - 1``. ``allowed_lateness`` keeps a fired window's state so that a late record
inside it re-emits an updated result; records later than that go to the late output.
The default allowed lateness is zero.

==========  ================================================  =========================
kind        windows of a record at ``ts``                      emits
==========  ================================================  =========================
tumbling    ``[s, s + size)``, ``s`` a multiple of ``size``   once per window
hopping     the ``size / slide`` windows of ``size`` that      once per window
            start every ``slide`` and contain ``ts``
session     ``[ts, ts + gap)``, merged with the key's          once per session; a merge
            sessions it overlaps                               retracts absorbed starts
cumulative  ``[s, s + k * step)`` for each ``k`` whose end     the running aggregate of
            lies beyond ``ts``, ``s`` a multiple of ``size``   ``[s, s + size)`` at every
                                                               ``step``
==========  ================================================  =========================

>>> from datetime import timedelta
>>> tumbling(timedelta(seconds=10))
Tumbling(size_ms=10000, allowed_lateness_ms=0, early_every_ms=None)
>>> session(timedelta(minutes=30)).gap_ms
1800000
>>> c = cumulative(timedelta(hours=1), timedelta(minutes=10))
>>> (c.size_ms, c.step_ms)
(3600000, 600000)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from runtime.api.errors import ConfigError
from runtime.api.watermarks import to_ms

__all__ = [
    "Cumulative",
    "Hopping",
    "Session",
    "Tumbling",
    "WindowSpec",
    "cumulative",
    "hopping",
    "session",
    "tumbling",
]


class WindowSpec(Protocol):
    """What every window spec has; each kind adds its own sizes.

    A new kind is a frozen dataclass with these two fields plus an assigner
    registered for it in ``runtime.engine.windowing``.
    """

    @property
    def allowed_lateness_ms(self) -> int:
        """How long after a window fires late records still update it (ms)."""
        ...

    @property
    def early_every_ms(self) -> int | None:
        """Processing time between early (running) results of open windows, if any."""
        ...


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed-size, non-overlapping windows aligned to the epoch."""

    size_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Hopping:
    """Fixed-size windows that start every ``slide_ms``; a record is in size/slide of them."""

    size_ms: int
    slide_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """Per-key sessions: records closer than ``gap_ms`` in event time share a window.

    A record at ``ts`` opens ``[ts, ts + gap)``; overlapping sessions of the same key
    merge, including a late record that bridges two sessions already emitted.
    """

    gap_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Cumulative:
    """Windows that grow by ``step_ms`` from the start of every ``size_ms`` period.

    Each period ``[s, s + size)`` (``s`` a multiple of ``size``) has the windows
    ``[s, s + step)``, ``[s, s + 2 * step)`` ... ``[s, s + size)``; a record at ``ts``
    is in those of them that end after ``ts``. So the period's running aggregate is
    emitted at every step (Flink SQL's ``CUMULATE``); all of them share the start ``s``.
    """

    size_ms: int
    step_ms: int
    allowed_lateness_ms: int = 0
    early_every_ms: int | None = None


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

    Raises:
        ConfigError: ``size`` is not positive.
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

    Args:
        size: window length.
        slide: time between window starts; a record is in ``size / slide`` windows.
        allowed_lateness: how long after a window fires late records still update it.
        early_updates: as for :func:`tumbling`.

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
    """Session windows that close after ``gap`` of event-time inactivity per key.

    Args:
        gap: records of a key less than this apart share a session.
        allowed_lateness: how long after a session fires late records still update it.
        early_updates: as for :func:`tumbling`.

    Raises:
        ConfigError: ``gap`` is not positive.
    """
    return Session(
        _positive(gap, "gap"), to_ms(allowed_lateness, "allowed_lateness"), _early(early_updates)
    )


def cumulative(
    size: timedelta,
    step: timedelta,
    *,
    allowed_lateness: timedelta = timedelta(0),
    early_updates: timedelta | None = None,
) -> Cumulative:
    """Cumulative windows: the running aggregate of each ``size`` period, every ``step``.

    ``cumulative(timedelta(hours=1), timedelta(minutes=10))`` emits, per key and hour,
    the aggregate of the hour so far at 10, 20, ... 60 minutes past it: the windows
    ``[h, h + 10 min)``, ``[h, h + 20 min)`` ... ``[h, h + 1 h)``. Each fires when the
    watermark reaches its end, with the records of ``[h, end)``; a late record within
    ``allowed_lateness`` updates the windows of its period that end after it and
    have not been forgotten yet.

    Args:
        size: the period; windows start at its multiples (epoch-aligned).
        step: how much each window of a period is longer than the one before.
        allowed_lateness: how long after a window fires late records still update it.
        early_updates: as for :func:`tumbling`.

    Raises:
        ConfigError: ``step`` is larger than ``size`` or does not divide it.
    """
    size_ms, step_ms = _positive(size, "size"), _positive(step, "step")
    if step_ms > size_ms or size_ms % step_ms:
        raise ConfigError(f"step ({step}) must divide size ({size}) and not exceed it")
    return Cumulative(
        size_ms, step_ms, to_ms(allowed_lateness, "allowed_lateness"), _early(early_updates)
    )
