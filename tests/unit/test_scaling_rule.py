"""The autoscaling rule: up on a growing backlog, down when idle, within bounds."""

from __future__ import annotations

from runtime.cli.scaling import LagRule


def rule(**kw: int | float) -> LagRule:
    args: dict = {"min_workers": 1, "max_workers": 4, "partitions": 4, "up_lag": 1000,
                  "down_lag": 10, "quiet_samples": 2, "cooldown_s": 10.0}
    args.update(kw)
    return LagRule(**args)


def test_scales_up_on_a_growing_backlog_then_cools_down() -> None:
    r = rule()
    assert r.decide(5_000, 1, 0).change == +1
    assert r.decide(9_000, 2, 5).reason == "cooling down"
    assert r.decide(9_500, 2, 11).change == +1


def test_a_falling_backlog_is_left_to_drain() -> None:
    r = rule()
    r.decide(5_000, 2, 0)
    assert r.decide(4_000, 2, 100).change == 0


def test_never_above_partitions_or_max() -> None:
    r = rule(max_workers=8, partitions=2)
    assert r.decide(10**6, 2, 0).change == 0
    assert r.decide(10**6, 3, 100).change == -1  # above the partition count


def test_scales_down_after_quiet_samples_not_below_min() -> None:
    r = rule(min_workers=1)
    assert r.decide(5, 2, 0).change == 0
    assert r.decide(5, 2, 20).change == -1
    assert r.decide(0, 1, 40).change == 0
    assert r.decide(0, 1, 60).change == 0


def test_below_min_starts_one_at_once() -> None:
    assert rule(min_workers=2).decide(0, 1, 0).change == +1
