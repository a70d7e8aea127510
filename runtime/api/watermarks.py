"""Watermark strategies: how a source turns event times into event-time progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

from runtime.api.errors import ConfigError

# Event times before this (2001-09-09) are treated as absurd by default.
DEFAULT_MIN_VALID_MS = 1_000_000_000_000

#: Default bound on how far an event time may run ahead of the processing clock: ten
#: minutes, well under the one hour Kafka 4 brokers accept ahead of their own clock
#: (``log.message.timestamp.after.max.ms``). A device whose clock runs hours ahead must
#: not get its events into windows and state as they are.
DEFAULT_MAX_FUTURE_MS = 10 * 60 * 1000

#: What happens to an event time beyond ``max_future_ms`` ahead of the processing clock:
#: ``"dead_letter"`` (the default) rejects the record with a ``TimestampError``;
#: ``"clamp"`` processes it with its event time lowered to the bound (its value is
#: unchanged; windows, timers and the watermark see the bound).
FuturePolicy = Literal["dead_letter", "clamp"]


def to_ms(value: timedelta, what: str) -> int:
    """Convert a non-negative ``timedelta`` to whole milliseconds.

    Raises:
        ConfigError: the value is negative or not a timedelta.
    """
    if not isinstance(value, timedelta):
        raise ConfigError(f"{what} must be a datetime.timedelta, got {type(value).__name__}")
    ms = int(value / timedelta(milliseconds=1))
    if ms < 0:
        raise ConfigError(f"{what} must not be negative, got {value}")
    return ms


@dataclass(frozen=True, slots=True)
class WatermarkStrategy:
    """How far event time may run out of order, and when a quiet partition stops counting.

    The watermark of a source partition is ``max event time seen - max_out_of_order_ms``.
    A task's watermark is the minimum over its live partitions; a partition that has
    been idle for ``idle_timeout_ms`` of processing time stops holding it back; on
    Kafka, a partition with records the worker has not read yet is never idle (a
    consumer catching up is behind, not quiet). Watermarks never go backwards.

    Records whose event time is below ``min_valid_ms`` are dead-lettered as absurd.
    Event times more than ``max_future_ms`` (default ten minutes,
    :data:`DEFAULT_MAX_FUTURE_MS`) ahead of the processing clock are dead-lettered
    with the reason, or clamped to the bound when ``future="clamp"``; ``None`` sets no
    bound (outputs are still stamped with times the broker accepts: the transport
    clamps record timestamps into the broker's and topic's limits at write time).

    >>> from datetime import timedelta
    >>> WatermarkStrategy.bounded(timedelta(seconds=5)).max_out_of_order_ms
    5000
    """

    max_out_of_order_ms: int = 0
    idle_timeout_ms: int | None = None
    min_valid_ms: int = DEFAULT_MIN_VALID_MS
    max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS
    future: FuturePolicy = "dead_letter"

    def __post_init__(self) -> None:
        if self.future not in get_args(FuturePolicy):
            raise ConfigError(
                f"future must be one of {', '.join(get_args(FuturePolicy))}, got {self.future!r}"
            )
        if self.max_future_ms is not None and self.max_future_ms < 0:
            raise ConfigError(f"max_future_ms must not be negative, got {self.max_future_ms}")

    @staticmethod
    def bounded(
        max_out_of_order: timedelta,
        *,
        idle_timeout: timedelta | None = timedelta(seconds=30),
        max_future: timedelta | None = timedelta(milliseconds=DEFAULT_MAX_FUTURE_MS),
        future: FuturePolicy = "dead_letter",
    ) -> WatermarkStrategy:
        """Watermark = max event time seen - ``max_out_of_order``.

        Args:
            max_out_of_order: how late, in event time, records may arrive and still count
                as on time.
            idle_timeout: processing time after which a silent partition no longer holds
                the task's watermark back; ``None`` never ignores a partition.
            max_future: how far ahead of the processing clock an event time may be
                (default ten minutes, under the broker's one-hour limit); ``None`` sets
                no bound.
            future: what happens to an event time beyond ``max_future``:
                ``"dead_letter"`` (a ``TimestampError`` naming the bound) or ``"clamp"``
                (processed at the bound).

        Raises:
            ConfigError: a negative duration or an unknown ``future`` policy.

        >>> WatermarkStrategy.bounded(timedelta(seconds=1)).max_future_ms
        600000
        >>> WatermarkStrategy.bounded(timedelta(0), future="clamp").future
        'clamp'
        """
        return WatermarkStrategy(
            max_out_of_order_ms=to_ms(max_out_of_order, "max_out_of_order"),
            idle_timeout_ms=None if idle_timeout is None else to_ms(idle_timeout, "idle_timeout"),
            max_future_ms=None if max_future is None else to_ms(max_future, "max_future"),
            future=future,
        )

    @staticmethod
    def monotonic(
        *,
        idle_timeout: timedelta | None = timedelta(seconds=30),
        max_future: timedelta | None = timedelta(milliseconds=DEFAULT_MAX_FUTURE_MS),
        future: FuturePolicy = "dead_letter",
    ) -> WatermarkStrategy:
        """Event times never go backwards within a partition (no allowed disorder).

        ``max_future`` and ``future`` are as in :meth:`bounded`.
        """
        return WatermarkStrategy.bounded(
            timedelta(0), idle_timeout=idle_timeout, max_future=max_future, future=future
        )
