"""The canary's judgement on cases it must pass and cases it must fail.

Samples are drawn from seeded distributions; outputs come from a brute-force count of
events per (user, window) done twice, once with a change a canary must catch.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from runtime.canary import (
    DEFAULT_RULES,
    MetricRule,
    compare_metric,
    compare_outputs,
    verdict,
)
from runtime.canary.judge import mann_whitney

RULES = {r.name: r for r in DEFAULT_RULES}


def noisy(center: float, spread: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0, rng.gauss(center, spread)) for _ in range(n)]


def counts(events: list[tuple[str, int]], size_ms: int) -> list[dict[str, Any]]:
    """Brute force: events per (user, tumbling window of ``size_ms``)."""
    c = Counter((user, ts - ts % size_ms) for user, ts in events)
    return [{"user": u, "start": s, "end": s + size_ms, "n": n} for (u, s), n in sorted(c.items())]


def events(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"u{rng.randrange(30)}", rng.randrange(3_600_000)) for _ in range(n)]


def window_of(record: dict[str, Any]) -> tuple[str, int, int]:
    return (record["user"], record["start"], record["end"])


def test_mann_whitney_sees_a_shift_and_rarely_noise() -> None:
    # Same distribution: significant at 5 % about one time in twenty, no more.
    false = sum(
        mann_whitney(noisy(100, 10, 30, s), noisy(100, 10, 30, s + 1000), "two-sided") < 0.05
        for s in range(200)
    )
    assert false <= 20, false
    a = noisy(100, 10, 40, 1)
    assert mann_whitney(noisy(70, 10, 40, 3), a, "less") < 0.001
    assert mann_whitney(noisy(70, 10, 40, 3), a, "greater") > 0.5
    assert mann_whitney([1.0], a, "less") == 1.0  # one sample: no evidence
    assert mann_whitney([0.0] * 5, [0.0] * 5, "greater") == 1.0


def test_same_behaviour_passes() -> None:
    results = [
        compare_metric(RULES["throughput"], noisy(10_000, 800, 30, 1), noisy(10_000, 800, 30, 2)),
        compare_metric(RULES["latency_p99_ms"], noisy(400, 60, 30, 3), noisy(400, 60, 30, 4)),
        compare_metric(RULES["dead_letter_rate"], [0.0] * 30, [0.0] * 30),
    ]
    evs = events(3_000, 5)
    outputs = compare_outputs(counts(evs, 60_000), counts(evs, 60_000), window_of)
    judged = verdict(results, outputs)
    assert [r.outcome for r in results] == ["pass"] * 3
    assert outputs.agreement == 1.0 and outputs.missing == outputs.extra == 0
    assert judged.verdict == "pass" and judged.score == 100.0, judged.line()


def test_a_candidate_twice_as_slow_fails_on_throughput() -> None:
    result = compare_metric(
        RULES["throughput"], noisy(10_000, 800, 30, 1), noisy(5_000, 400, 30, 2)
    )
    assert result.outcome == "fail" and result.change < -0.4, result.line()
    judged = verdict([result, compare_metric(RULES["rss_mb"], [200.0] * 5, [201.0] * 5)])
    assert judged.verdict == "fail" and "throughput" in judged.line()


def test_dead_letters_from_zero_to_five_percent_fail() -> None:
    result = compare_metric(RULES["dead_letter_rate"], [0.0] * 20, noisy(0.05, 0.01, 20, 7))
    assert result.outcome == "fail", result.line()
    # a blip below the floor is not a regression
    blip = compare_metric(RULES["dead_letter_rate"], [0.0] * 20, [0.0] * 18 + [0.002, 0.001])
    assert blip.outcome == "pass", blip.line()


def test_a_moderate_regression_is_marginal_and_counts_half() -> None:
    rule = MetricRule("checkpoint_ms", worse="higher", tolerance=1.0, floor=10.0)
    result = compare_metric(rule, noisy(200, 10, 40, 1), noisy(360, 10, 40, 2))
    assert result.outcome == "marginal", result.line()
    passing = [
        compare_metric(rule, noisy(200, 10, 40, s), noisy(200, 10, 40, s + 1)) for s in (3, 5)
    ]
    judged = verdict([result, *passing], pass_score=90, marginal_score=75)
    assert judged.score == pytest.approx(100 * 2.5 / 3)
    assert judged.verdict == "marginal", judged.line()


def test_a_window_one_second_shorter_fails_on_output_agreement() -> None:
    evs = events(3_000, 9)
    outputs = compare_outputs(counts(evs, 60_000), counts(evs, 59_000), window_of)
    assert outputs.matched < outputs.total and outputs.missing > 0 and outputs.extra > 0
    judged = verdict([], outputs)
    assert judged.verdict == "fail" and "output agreement" in judged.reasons[0]


def test_numbers_within_tolerance_agree_but_a_systematic_shift_is_seen() -> None:
    rng = random.Random(4)
    base = [{"k": i, "ratio": rng.uniform(0.01, 0.05)} for i in range(200)]
    jitter = [{"k": r["k"], "ratio": r["ratio"] * (1 + rng.uniform(-1e-9, 1e-9))} for r in base]
    same = compare_outputs(base, jitter, lambda r: r["k"], tolerance=1e-6)
    assert same.agreement == 1.0 and not same.shifted
    exact = compare_outputs(base, jitter, lambda r: r["k"])
    assert exact.differing > 0 and exact.examples
    # each within 5 %, but every one 4 % higher: the distribution moved
    shifted = [{"k": r["k"], "ratio": r["ratio"] * 1.04} for r in base]
    found = compare_outputs(base, shifted, lambda r: r["k"], tolerance=0.05)
    assert found.agreement == 1.0 and "ratio" in found.shifted
    assert verdict([], found).verdict == "fail"


def test_the_last_record_of_an_identity_counts() -> None:
    base = [{"k": 1, "n": 1}, {"k": 1, "n": 2}]
    assert compare_outputs(base, [{"k": 1, "n": 2}], lambda r: r["k"]).agreement == 1.0
    assert compare_outputs(base, [{"k": 1, "n": 1}], lambda r: r["k"]).differing == 1


def test_rules_and_scores_are_checked() -> None:
    with pytest.raises(ValueError, match="worse"):
        MetricRule("x", worse="sideways", tolerance=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        MetricRule("x", worse="higher", tolerance=0.1, alpha=0)
    with pytest.raises(ValueError, match="no samples"):
        compare_metric(RULES["throughput"], [], [1.0])
    with pytest.raises(ValueError, match="scores"):
        verdict([], pass_score=50, marginal_score=80)


def test_p99_of_an_interval_from_cumulative_histograms() -> None:
    from runtime.canary.run import p99_ms

    before = [(0.1, 10.0), (0.5, 20.0), (1.0, 20.0), (float("inf"), 20.0)]
    # 100 more observations: 90 under 0.1 s, 9 more under 0.5 s, 1 under 1 s
    after = [(0.1, 100.0), (0.5, 119.0), (1.0, 120.0), (float("inf"), 120.0)]
    assert p99_ms(before, after) == 500.0
    # nothing observed, a reset (counts went down), or the 99th beyond the last bound
    assert p99_ms(after, after) is None
    assert p99_ms(after, before) is None
    assert p99_ms([], [(0.1, 0.0), (float("inf"), 5.0)]) is None
