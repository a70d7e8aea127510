"""The generator's clock: when each record goes out, against a manual wall clock.

A brute-force replay sends every generated record as soon as the pacer allows (the
manual clock jumps to the moment it is due) and checks where event time stands against
the clock at each send.
"""

from __future__ import annotations

import math

import pytest

from runtime.generator import Generator, GeneratorConfig
from runtime.generator.pacing import DEFAULT_SKEW_LIMIT_MS, Pacer, behind_watermarks

NOW = 1_800_000_000_000


class ManualClock:
    """The wall clock, moved by hand."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


def replay(pacer: Pacer, clock: ManualClock, times: list[int]) -> list[int]:
    """Send each event time when the pacer allows; the wall clock at each send."""
    sent = []
    for t in times:
        wait = pacer.wait_ms(t)
        clock.now += wait
        assert pacer.wait_ms(t) == 0  # due now, not later
        sent.append(clock.now)
    return sent


def generated_times(start_ms: int, n: int = 3000) -> list[int]:
    config = GeneratorConfig(seed=3, users=200, start_ms=start_ms, out_of_order_rate=0,
                             late_rate=0, bad_timestamp_rate=0)  # fmt: skip
    return [r.value["event_time_ms"] for r in Generator(config).take(n)]


def expected(
    times: list[int], start: int, speedup: float, anchor: tuple[int, int] | None = None
) -> list[int]:
    """Brute force: each record goes out at the later of its due time and the previous
    send (the clock never goes back). Until event time reaches the clock (``start``),
    at once; from then (or from ``anchor``: event time, wall time) event time runs
    ``speedup`` times as fast as the clock."""
    sent, wall = [], start
    for t in times:
        if anchor is None and t >= wall:
            anchor = (wall, wall)
        if anchor is not None:
            wall = max(wall, anchor[1] + math.ceil((t - anchor[0]) / speedup))
        sent.append(wall)
    return sent


def test_realtime_sends_each_record_when_the_clock_reaches_it_never_before() -> None:
    clock = ManualClock(NOW)
    times = generated_times(NOW)
    sent = replay(Pacer(1.0, clock), clock, times)
    assert all(t <= wall for t, wall in zip(times, sent, strict=True))
    assert sent == expected(times, NOW, 1.0)
    assert sent[-1] == max(times)


def test_a_lookback_is_replayed_at_once_then_the_clock_is_followed() -> None:
    clock = ManualClock(NOW)
    times = generated_times(NOW - 60_000)
    pacer = Pacer(1.0, clock)
    sent = replay(pacer, clock, times)
    first = next(i for i, t in enumerate(times) if t >= NOW)
    assert first > 500 and sent[:first] == [NOW] * first  # the past at once
    assert pacer.caught_up
    assert all(t <= wall for t, wall in zip(times, sent, strict=True))
    assert sent == expected(times, NOW, 1.0)


def test_speedup_runs_event_time_n_times_as_fast_as_the_clock() -> None:
    clock = ManualClock(NOW)
    times = generated_times(NOW)
    sent = replay(Pacer(30.0, clock), clock, times)
    assert sent == expected(times, NOW, 30.0)
    assert sent[-1] - NOW == math.ceil((max(times) - NOW) / 30)


def test_an_origin_in_the_future_starts_at_once_and_stays_ahead() -> None:
    clock = ManualClock(NOW)
    origin = NOW + 3_600_000
    times = generated_times(origin)
    pacer = Pacer(1.0, clock, origin_ms=origin)
    sent = replay(pacer, clock, times)
    assert sent == expected(times, NOW, 1.0, anchor=(origin, NOW))
    assert all(t - wall <= 3_600_000 for t, wall in zip(times, sent, strict=True))
    assert sent[0] == NOW + times[0] - origin
    assert Pacer(1.0, ManualClock(NOW), origin_ms=origin).too_far_ahead(origin)


def test_max_never_waits() -> None:
    clock = ManualClock(NOW)
    times = generated_times(NOW + 3_600_000)
    assert replay(Pacer(None, clock), clock, times) == [NOW] * len(times)


def test_running_past_the_skew_limit_is_reported_once() -> None:
    clock = ManualClock(NOW)
    pacer = Pacer(None, clock)
    limit = DEFAULT_SKEW_LIMIT_MS
    assert not pacer.too_far_ahead(NOW + limit)
    assert pacer.too_far_ahead(NOW + limit + 1)
    assert not pacer.too_far_ahead(NOW + 2 * limit)  # said once
    assert pacer.ahead_ms(NOW + 5) == 5


def test_a_speedup_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0.0, ManualClock(NOW))


def test_jobs_whose_watermark_is_past_the_start_are_named_furthest_first() -> None:
    marks = {"old": NOW - 10, "now": NOW, "ahead": NOW + 90_000, "far": NOW + 3_600_000}
    assert behind_watermarks(NOW, marks) == [("far", 3_600_000), ("ahead", 90_000)]
    assert behind_watermarks(NOW + 4_000_000, marks) == []
