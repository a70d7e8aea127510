"""Configuration of the traffic generator: frozen, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

#: CDNs the simulated population is served by; a :class:`Degradation` names one of them.
CDNS: tuple[str, ...] = ("cdn-a", "cdn-b", "cdn-c", "cdn-d")

#: 2025-01-01T00:00:00Z: the default event-time origin, fixed so runs are reproducible.
DEFAULT_START_MS = 1_735_689_600_000


def _check_rate(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Degradation:
    """One CDN serving badly for a stretch of event time.

    While active, plays served by ``cdn`` stall more often and longer, fail more
    at startup, and see their bandwidth divided, so their bitrate drops.

    Args:
        cdn: the degraded CDN, one of :data:`CDNS`.
        start_offset_ms: start of the stretch, relative to ``GeneratorConfig.start_ms``.
        end_offset_ms: exclusive end of the stretch, relative to ``start_ms``.
        rebuffer_multiplier: factor on the stall probability (>= 1 makes it worse).
        bitrate_divisor: divisor of the available bandwidth (>= 1 makes it worse).

    Raises:
        ValueError: on an unknown CDN, an empty stretch or a non-positive factor.
    """

    cdn: str
    start_offset_ms: int
    end_offset_ms: int
    rebuffer_multiplier: float = 8.0
    bitrate_divisor: float = 4.0

    def __post_init__(self) -> None:
        if self.cdn not in CDNS:
            raise ValueError(f"Degradation.cdn must be one of {CDNS}, got {self.cdn!r}")
        _check_int("Degradation.start_offset_ms", self.start_offset_ms, 0)
        _check_int("Degradation.end_offset_ms", self.end_offset_ms, 0)
        if self.end_offset_ms <= self.start_offset_ms:
            raise ValueError(
                "Degradation.end_offset_ms must be after start_offset_ms, got "
                f"{self.start_offset_ms}..{self.end_offset_ms}"
            )
        for name in ("rebuffer_multiplier", "bitrate_divisor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Degradation.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """What to simulate and how to disturb its delivery.

    The population, catalogue and viewing behaviour depend only on ``seed``,
    ``users``, ``titles``, ``start_ms``, ``interaction_ratio`` and
    ``degradations``; the delivery rates (disorder, lateness, duplicates,
    corruption, bad timestamps) draw from a separate random stream, so changing
    them does not change which events happen, only how they arrive.

    Delivery rates are per generated event and exclusive of each other, so their
    sum must not exceed 1. A duplicate adds one record to the output.

    Args:
        seed: seed of every random choice; same seed, same records.
        users: number of simulated accounts.
        titles: size of the catalogue.
        start_ms: event-time origin, UTC epoch milliseconds.
        out_of_order_ms: maximum delay of an out-of-order event (bounded disorder).
        out_of_order_rate: share of events delayed by up to ``out_of_order_ms``.
        late_rate: share of events delayed by ``out_of_order_ms`` plus ``late_delay_ms``.
        late_delay_ms: range of the extra delay of late events.
        duplicate_rate: share of events delivered twice (same event id).
        malformed_rate: share of events whose encoded bytes get corrupted.
        bad_timestamp_rate: share of events whose event time is missing (0) or absurd.
        interaction_ratio: long-run share of interaction events among all events.
        degradations: CDN incidents to simulate.

    Raises:
        ValueError: naming the first invalid setting.
    """

    seed: int = 0
    users: int = 1000
    titles: int = 200
    start_ms: int = DEFAULT_START_MS
    out_of_order_ms: int = 2000
    out_of_order_rate: float = 0.05
    late_rate: float = 0.002
    late_delay_ms: tuple[int, int] = (10_000, 60_000)
    duplicate_rate: float = 0.005
    malformed_rate: float = 0.001
    bad_timestamp_rate: float = 0.001
    interaction_ratio: float = 0.3
    degradations: tuple[Degradation, ...] = ()

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, -(2**63))
        _check_int("users", self.users, 1)
        _check_int("titles", self.titles, 1)
        _check_int("start_ms", self.start_ms, 0)
        _check_int("out_of_order_ms", self.out_of_order_ms, 0)
        rates = {
            "out_of_order_rate": self.out_of_order_rate,
            "late_rate": self.late_rate,
            "duplicate_rate": self.duplicate_rate,
            "malformed_rate": self.malformed_rate,
            "bad_timestamp_rate": self.bad_timestamp_rate,
        }
        for name, value in rates.items():
            _check_rate(name, value)
        total = sum(rates.values())
        if total > 1.0:
            raise ValueError(
                f"the delivery rates {sorted(rates)} must sum to at most 1, got {total}"
            )
        if self.out_of_order_rate > 0 and self.out_of_order_ms == 0:
            raise ValueError("out_of_order_rate > 0 needs out_of_order_ms >= 1")
        _check_rate("interaction_ratio", self.interaction_ratio)
        if self.interaction_ratio >= 1.0:
            raise ValueError(f"interaction_ratio must be below 1, got {self.interaction_ratio!r}")
        delay = self.late_delay_ms
        if not (isinstance(delay, tuple) and len(delay) == 2):
            raise ValueError(f"late_delay_ms must be a (min, max) tuple, got {delay!r}")
        _check_int("late_delay_ms[0]", delay[0], 1)
        _check_int("late_delay_ms[1]", delay[1], delay[0])
        if not isinstance(self.degradations, tuple) or not all(
            isinstance(d, Degradation) for d in self.degradations
        ):
            raise ValueError(
                f"degradations must be a tuple of Degradation, got {self.degradations!r}"
            )
