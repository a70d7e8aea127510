"""The QoE alert job's references: alerts recomputed from each group's whole series.

Both are written from the rule language's documentation (``jobs/qoe/alerts_rules.py``),
independently of the job's counters; alert ids use the job's published id format.
"""

from __future__ import annotations

from typing import Any

from jobs.qoe.alerts import alert_id
from jobs.qoe.alerts_rules import Rule


def lookback_alerts(
    rule: Rule, windows: list[tuple[int, int, float, int]]
) -> list[tuple[str, int, str]]:
    """Alerts of one group (CDN ``"c"``) from its whole series ``(start, end, value,
    plays)``, by look-back."""
    out: list[tuple[str, int, str]] = []
    firing_since: int | None = None  # index of the window that fired
    resolved_at: int | None = None  # index of the window that resolved

    def run_of(i: int, n: int, ok: Any, after: int | None) -> bool:
        if i - n + 1 <= (after if after is not None else -1):
            return False
        span = windows[i - n + 1 : i + 1]
        if len(span) < n:
            return False
        follows = all(b[0] <= a[1] for a, b in zip(span, span[1:], strict=False))
        return follows and all(ok(w) for w in span)

    def counts(w: tuple[int, int, float, int]) -> bool:
        return w[3] >= rule.where_min["plays_started"]

    for i, w in enumerate(windows):
        if firing_since is None:
            cool = resolved_at is not None and w[1] < windows[resolved_at][1] + rule.cooldown_ms
            if not cool and run_of(
                i, rule.for_windows, lambda x: counts(x) and x[2] > rule.fire_threshold, resolved_at
            ):
                firing_since = i
                out.append(("fired", w[1], alert_id(rule.name, {"cdn": "c"}, w[1])))
        elif run_of(
            i,
            rule.resolve_windows,
            lambda x: counts(x) and x[2] < rule.resolve_threshold,
            firing_since,
        ):
            out.append(
                ("resolved", w[1], alert_id(rule.name, {"cdn": "c"}, windows[firing_since][1]))
            )
            firing_since, resolved_at = None, i
    return out


def rule_r_alerts(
    ratios: list[float], last_evaluated: int, start_ms: int, window_ms: int
) -> list[tuple[str, int]]:
    """(state, window end) of each alert of one CDN under the rule
    ``r: rebuffer_ratio > 0.02 for 2 windows group by cdn resolve < 0.01``, in order.

    Args:
        ratios: the CDN's rebuffer ratio of consecutive windows, the first at ``start_ms``.
        last_evaluated: the last window the watermark has passed.
        start_ms: the start of the first window.
        window_ms: the windows' length.
    """
    out, firing, streak, calm = [], False, 0, 0
    for k, ratio in enumerate(ratios[: last_evaluated + 1]):
        streak = streak + 1 if ratio > 0.02 else 0
        calm = calm + 1 if ratio < 0.01 else 0
        if not firing and streak >= 2:
            firing = True
            out.append(("fired", start_ms + (k + 1) * window_ms))
        elif firing and calm >= 1:
            firing = False
            out.append(("resolved", start_ms + (k + 1) * window_ms))
    return out
