"""The fault schedule: seeded, within the run, at the mean interval asked for."""

from __future__ import annotations

from collections import Counter

import pytest

from runtime.chaos.schedule import plan


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert plan(7, 60, 5, broker_pause=True) == plan(7, 60, 5, broker_pause=True)
    assert plan(7, 60, 5) != plan(8, 60, 5)


@pytest.mark.parametrize("seed", range(20))
def test_faults_fall_in_the_run_at_intervals_of_half_to_one_and_a_half(seed: int) -> None:
    faults = plan(seed, 120, 4)
    times = [f.at_s for f in faults]
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(0 < t < 120 for t in times)
    assert all(2 - 1e-3 <= g <= 6 + 1e-3 for g in gaps), gaps
    assert 120 / 6 - 1 <= len(faults) <= 120 / 2
    assert all(f.kind == "kill" and 0 <= f.pick < 1 for f in faults)


@pytest.mark.parametrize("seed", range(20))
def test_pauses_are_there_when_asked_and_kills_stay_the_most(seed: int) -> None:
    faults = plan(seed, 60, 3, broker_pause=True, sink_stall=True)
    kinds = Counter(f.kind for f in faults)
    assert kinds["broker_pause"] >= 1 and kinds["sink_stall"] >= 1
    assert kinds["kill"] > kinds["broker_pause"] + kinds["sink_stall"]
    assert [f.at_s for f in faults] == [f.at_s for f in plan(seed, 60, 3)]


def test_the_sessionization_test_plan_has_ten_kills_and_one_broker_pause() -> None:
    kinds = Counter(f.kind for f in plan(5, 36, 2.5, broker_pause=True))
    assert kinds == {"kill": 12, "broker_pause": 1}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        plan(1, 0, 5)
    with pytest.raises(ValueError):
        plan(1, 10, 0)
