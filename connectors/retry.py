"""Retry budgets shared by the sinks outside Kafka (PostgreSQL, Redis)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from runtime.api.errors import ConfigError

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry budget of one flush or write.

    Waits ``initial_s * multiplier**(n-1)`` before retry ``n``, jittered by up to
    ``±jitter`` of itself and capped at ``max_s``. The defaults ride out about half
    a minute of outage (ten attempts).

    Raises:
        ConfigError: naming the first invalid setting.
    """

    max_attempts: int = 10
    initial_s: float = 0.2
    multiplier: float = 2.0
    max_s: float = 5.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if not 0 <= self.initial_s <= self.max_s:
            raise ConfigError("backoff needs 0 <= backoff_initial_s <= backoff_max_s")
        if not self.multiplier >= 1:
            raise ConfigError(f"backoff multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"backoff jitter must be between 0 and 1, got {self.jitter!r}")

    def delay_s(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1 for the first)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** (retry - 1))
        return min(self.max_s, base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))
