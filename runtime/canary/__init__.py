"""Canary analysis: run a candidate version beside its baseline and judge it.

:mod:`runtime.canary.judge` holds the judgement (output agreement per output
identity, metric comparisons with a Mann-Whitney U test, the verdict and its score);
it is pure: what a canary run collected in, a verdict out.
"""

from runtime.canary.judge import (
    DEFAULT_RULES,
    Judgement,
    MetricResult,
    MetricRule,
    OutputAgreement,
    compare_metric,
    compare_outputs,
    verdict,
)

__all__ = [
    "DEFAULT_RULES",
    "Judgement",
    "MetricResult",
    "MetricRule",
    "OutputAgreement",
    "compare_metric",
    "compare_outputs",
    "verdict",
]
