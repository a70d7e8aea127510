"""Watermark strategies: how a source turns event times into event-time progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from runtime.api.errors import ConfigError

# Event times before this (2001-09-09) are treated as absurd by default.
DEFAULT_MIN_VALID_MS = 1_000_000_000_000


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

    Records whose event time is below ``min_valid_ms`` or more than
    ``max_future_ms`` ahead of the processing clock are dead-lettered as absurd.

    >>> from datetime import timedelta
    >>> WatermarkStrategy.bounded(timedelta(seconds=5)).max_out_of_order_ms
    5000
    """

    max_out_of_order_ms: int = 0
    idle_timeout_ms: int | None = None
    min_valid_ms: int = DEFAULT_MIN_VALID_MS
    max_future_ms: int | None = 24 * 3600 * 1000

    @staticmethod
    def bounded(
        max_out_of_order: timedelta,
        *,
        idle_timeout: timedelta | None = timedelta(seconds=30),
        max_future: timedelta | None = timedelta(days=1),
    ) -> WatermarkStrategy:
        """Watermark = max event time seen - ``max_out_of_order``.

        Args:
            max_out_of_order: how late, in event time, records may arrive and still count
                as on time.
            idle_timeout: processing time after which a silent partition no longer holds
                the task's watermark back; ``None`` never ignores a partition.
            max_future: how far ahead of the processing clock an event time may be before
                it is dead-lettered as absurd; ``None`` disables the check.
        """
        return WatermarkStrategy(
            max_out_of_order_ms=to_ms(max_out_of_order, "max_out_of_order"),
            idle_timeout_ms=None if idle_timeout is None else to_ms(idle_timeout, "idle_timeout"),
            max_future_ms=None if max_future is None else to_ms(max_future, "max_future"),
        )

    @staticmethod
    def monotonic(*, idle_timeout: timedelta | None = timedelta(seconds=30)) -> WatermarkStrategy:
        """Event times never go backwards within a partition (no allowed disorder)."""
        return WatermarkStrategy.bounded(timedelta(0), idle_timeout=idle_timeout)
