"""Judging a canary: does the candidate behave like its baseline on the same input?

Two kinds of evidence, each a pure function of what the canary run collected:

* **Output agreement** (:func:`compare_outputs`). Both versions read the same input
  from the same savepoint, so a deterministic job must produce the same records per
  output identity (e.g. sink key and window). Records are matched by identity;
  numbers may differ by a relative tolerance (``0``: exact); where there are enough
  matched numbers, a Wilcoxon signed-rank test of their differences asks whether a
  field moved systematically (a shift that stays inside the tolerance per record
  still shows there; pairs, not two loose samples, because each output is matched).
  Agreement is the share of identities that match; below ``min_agreement`` the
  outputs fail.
* **Metrics** (:func:`compare_metric`). Samples taken during the run (throughput per
  interval, latency percentiles, dead-letter and late rates, checkpoint durations,
  RSS) are compared with a one-sided Mann-Whitney U test in the direction that would
  be a regression, and by how far the candidate's median moved: ``fail`` when the
  test is significant and the move is beyond the rule's tolerance, ``marginal`` when
  it is significant and beyond half of it, else ``pass``. The tolerance is relative
  to the baseline's median with an absolute ``floor``, so a rate that is zero for the
  baseline is judged by how far above zero the candidate goes. Both are needed: the
  test alone, at 5 %, would fail one healthy canary in twenty on every metric, and
  the move alone would fail on noise.

The verdict (:func:`verdict`) is ``fail`` when outputs disagree or a critical metric
fails; otherwise the score (passes count 1, marginals 1/2, over every metric, as a
percentage) decides: at least ``pass_score`` passes, at least ``marginal_score`` is
marginal, below fails. Like automated canary analysis in deployment tools, but the
outputs are compared per event-time identity, which only the stream processor knows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_RULES",
    "Judgement",
    "MetricResult",
    "MetricRule",
    "OutputAgreement",
    "compare_metric",
    "compare_outputs",
    "mann_whitney",
    "paired_shift",
    "verdict",
]

Outcome = Literal["pass", "marginal", "fail"]
#: What each outcome adds to the score.
POINTS: dict[str, float] = {"pass": 1.0, "marginal": 0.5, "fail": 0.0}


def mann_whitney(a: Sequence[float], b: Sequence[float], alternative: str) -> float:
    """The p-value of the Mann-Whitney U test of ``a`` against ``b``.

    ``alternative``: ``"two-sided"``, ``"less"`` (``a`` tends to be smaller) or
    ``"greater"``. Fewer than two samples on a side, or all values equal: ``1.0``
    (no evidence of a difference).
    """
    if len(a) < 2 or len(b) < 2 or len(set(a) | set(b)) < 2:
        return 1.0
    from scipy.stats import mannwhitneyu  # the canary extra; imported when judging

    return float(mannwhitneyu(a, b, alternative=alternative).pvalue)


def paired_shift(a: Sequence[float], b: Sequence[float]) -> float:
    """The p-value of the Wilcoxon signed-rank test of the differences ``b - a``.

    For values matched pair by pair (the same output of two versions): a shift that is
    small against the spread of the values shows in their differences. No non-zero
    difference, or fewer than two pairs: ``1.0``.
    """
    diffs = [y - x for x, y in zip(a, b, strict=True) if y != x]
    if len(diffs) < 2:
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs, alternative="two-sided").pvalue)


@dataclass(frozen=True, slots=True)
class MetricRule:
    """How one metric is judged.

    Attributes:
        name: the metric (as the samples are named).
        worse: which direction is a regression: ``"higher"`` (latency, error rates,
            memory) or ``"lower"`` (throughput).
        tolerance: allowed move of the candidate's median, relative to the baseline's.
        floor: the least move that counts, in the metric's unit (rates near zero).
        critical: a failure fails the canary whatever the score.
        alpha: significance level of the test.
    """

    name: str
    worse: Literal["higher", "lower"]
    tolerance: float
    floor: float = 0.0
    critical: bool = False
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.worse not in ("higher", "lower"):
            raise ValueError(f"metric {self.name!r}: worse must be 'higher' or 'lower'")
        if self.tolerance < 0 or self.floor < 0 or not 0 < self.alpha < 1:
            raise ValueError(f"metric {self.name!r}: tolerance, floor >= 0 and 0 < alpha < 1")


#: What a canary compares unless told otherwise.
DEFAULT_RULES: tuple[MetricRule, ...] = (
    MetricRule("throughput", worse="lower", tolerance=0.25, critical=True),
    MetricRule("latency_p99_ms", worse="higher", tolerance=0.5, floor=50.0, critical=True),
    MetricRule("dead_letter_rate", worse="higher", tolerance=0.5, floor=0.01, critical=True),
    MetricRule("late_rate", worse="higher", tolerance=0.5, floor=0.01, critical=True),
    MetricRule("checkpoint_ms", worse="higher", tolerance=1.0, floor=100.0),
    MetricRule("rss_mb", worse="higher", tolerance=0.5, floor=32.0),
)


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's judgement: medians, relative move, p-value and outcome."""

    rule: MetricRule
    baseline: float
    candidate: float
    change: float
    p_value: float
    outcome: Outcome
    samples: tuple[int, int]

    def line(self) -> str:
        """One line for people: ``throughput: 9,812 -> 4,950 (-49.6%) p=0.0001 fail``."""
        return (
            f"{self.rule.name}: {self.baseline:,.4g} -> {self.candidate:,.4g} "
            f"({self.change:+.1%}) p={self.p_value:.4f} {self.outcome}"
        )


def compare_metric(
    rule: MetricRule, baseline: Sequence[float], candidate: Sequence[float]
) -> MetricResult:
    """Judge one metric's samples of the candidate against the baseline's.

    Raises:
        ValueError: a side has no samples (nothing to judge).
    """
    if not baseline or not candidate:
        raise ValueError(f"metric {rule.name!r}: no samples for the baseline or the candidate")
    base, cand = statistics.median(baseline), statistics.median(candidate)
    move = cand - base if rule.worse == "higher" else base - cand  # > 0: worse
    allowed = max(rule.tolerance * abs(base), rule.floor)
    # "less": the candidate tends lower than the baseline, a regression for throughput.
    alternative = "greater" if rule.worse == "higher" else "less"
    p = mann_whitney(list(candidate), list(baseline), alternative)
    significant = p < rule.alpha
    if significant and move > allowed:
        outcome: Outcome = "fail"
    elif significant and move > allowed / 2:
        outcome = "marginal"
    else:
        outcome = "pass"
    change = (cand - base) / abs(base) if base else (math.inf if cand > base else 0.0)
    return MetricResult(rule, base, cand, change, p, outcome, (len(baseline), len(candidate)))


@dataclass(frozen=True, slots=True)
class OutputAgreement:
    """How the candidate's outputs compare with the baseline's, identity by identity.

    Attributes:
        matched: identities whose records agree.
        differing: identities in both whose records differ (examples in ``examples``).
        missing: identities only the baseline produced.
        extra: identities only the candidate produced.
        shifted: numeric fields that moved systematically (paired test), with p.
        examples: up to ten ``(identity, baseline record, candidate record)``.
    """

    matched: int
    differing: int
    missing: int
    extra: int
    shifted: dict[str, float] = field(default_factory=dict)
    examples: list[tuple[Any, Any, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Identities seen on either side."""
        return self.matched + self.differing + self.missing + self.extra

    @property
    def agreement(self) -> float:
        """Share of identities that agree (1.0 when neither side produced anything)."""
        return self.matched / self.total if self.total else 1.0

    def line(self) -> str:
        """One line for people."""
        shifted = f" shifted={','.join(sorted(self.shifted))}" if self.shifted else ""
        return (
            f"outputs: agreement={self.agreement:.2%} matched={self.matched} "
            f"differing={self.differing} missing={self.missing} extra={self.extra}{shifted}"
        )


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        if tolerance == 0:
            return a == b
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=0.0) or a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _latest(records: Iterable[Any], identity: Callable[[Any], Hashable]) -> dict[Any, Any]:
    """The last record per identity (an update replaces what it updates)."""
    return {identity(r): r for r in records}


def compare_outputs(
    baseline: Iterable[Any],
    candidate: Iterable[Any],
    identity: Callable[[Any], Hashable],
    *,
    tolerance: float = 0.0,
    alpha: float = 0.01,
    min_samples: int = 20,
    compared: Callable[[Any], Any] = lambda record: record,
) -> OutputAgreement:
    """Compare two versions' outputs over the same input, identity by identity.

    Args:
        baseline: the baseline's records (in the order written).
        candidate: the candidate's records, same range of input.
        identity: what a record is the output *for* (e.g. ``(key, window_start)``);
            the last record of an identity counts.
        tolerance: relative tolerance of numbers (``0``: exact).
        alpha: significance level of the distribution test of numeric fields.
        min_samples: matched identities a field needs before its distribution is
            tested.
        compared: what of a record is compared (default: all of it); numeric fields
            of a mapping are also tested for a systematic shift.
    """
    base, cand = _latest(baseline, identity), _latest(candidate, identity)
    matched = differing = 0
    examples: list[tuple[Any, Any, Any]] = []
    numbers: dict[str, tuple[list[float], list[float]]] = {}
    for ident in base.keys() & cand.keys():
        b, c = compared(base[ident]), compared(cand[ident])
        if _close(b, c, tolerance):
            matched += 1
        else:
            differing += 1
            if len(examples) < 10:
                examples.append((ident, b, c))
        if isinstance(b, Mapping) and isinstance(c, Mapping):
            for name, value in b.items():
                other = c.get(name)
                if (
                    isinstance(value, int | float)
                    and isinstance(other, int | float)
                    and not isinstance(value, bool)
                    and not isinstance(other, bool)
                ):
                    pair = numbers.setdefault(name, ([], []))
                    pair[0].append(float(value))
                    pair[1].append(float(other))
    shifted = {}
    for name, (bs, cs) in sorted(numbers.items()):
        if len(bs) >= min_samples:
            p = paired_shift(bs, cs)
            if p < alpha:
                shifted[name] = p
    return OutputAgreement(
        matched=matched,
        differing=differing,
        missing=len(base.keys() - cand.keys()),
        extra=len(cand.keys() - base.keys()),
        shifted=shifted,
        examples=examples,
    )


@dataclass(frozen=True, slots=True)
class Judgement:
    """The canary's verdict with everything that led to it."""

    verdict: Outcome
    score: float
    outputs: OutputAgreement | None
    metrics: tuple[MetricResult, ...]
    reasons: tuple[str, ...]

    def line(self) -> str:
        """``canary: verdict=fail score=66.7 (throughput: ... fail)``."""
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"canary: verdict={self.verdict} score={self.score:.1f}{why}"


def verdict(
    metrics: Sequence[MetricResult],
    outputs: OutputAgreement | None = None,
    *,
    min_agreement: float = 1.0,
    pass_score: float = 90.0,
    marginal_score: float = 75.0,
) -> Judgement:
    """Combine output agreement and metric results into one verdict.

    Args:
        metrics: the judged metrics.
        outputs: the output agreement, or ``None`` when outputs are not comparable
            (say why in the report).
        min_agreement: least share of agreeing identities (``1.0``: all).
        pass_score: least score to pass.
        marginal_score: least score to be marginal rather than fail.
    """
    if not 0 <= marginal_score <= pass_score <= 100:
        raise ValueError("scores: 0 <= marginal_score <= pass_score <= 100")
    reasons = []
    if outputs is not None:
        if outputs.agreement < min_agreement:
            reasons.append(f"output agreement {outputs.agreement:.2%} < {min_agreement:.2%}")
        if outputs.shifted:
            reasons.append(f"output distributions differ: {', '.join(sorted(outputs.shifted))}")
    critical = [m for m in metrics if m.outcome == "fail" and m.rule.critical]
    reasons.extend(m.line() for m in critical)
    points = sum(
        1.0 if m.outcome == "pass" else 0.5 if m.outcome == "marginal" else 0.0 for m in metrics
    )
    score = 100.0 * points / len(metrics) if metrics else 100.0
    if outputs is not None and outputs.agreement < 1.0:
        score = min(score, 100.0 * outputs.agreement)
    outcome: Outcome
    if reasons:
        outcome = "fail"
    elif score >= pass_score:
        outcome = "pass"
    elif score >= marginal_score:
        outcome = "marginal"
    else:
        outcome = "fail"
    if outcome != "pass" and not reasons:
        reasons.extend(m.line() for m in metrics if m.outcome != "pass")
    return Judgement(outcome, score, outputs, tuple(metrics), tuple(reasons))
