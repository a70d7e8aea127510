"""The QoE aggregate: sums of playback facts, a startup-time sketch and active playbacks.

Per window and group, over the facts of ``jobs.qoe.playbacks`` whose event time is
in the window:

* ``plays_started``: playbacks that reached ``play`` (their first ``play``);
* ``startup_p50/p90/p99_ms``: quantiles of startup times (first ``play`` minus
  ``start``) from a DDSketch (``runtime.aggregates.Quantiles``) with a relative
  accuracy of 1%; the q-quantile of n values is the value of rank ``floor(q * (n - 1))``
  (from 0) in sorted order; null without startups;
* ``watch_time_ms``: playhead advance; ``avg_bitrate_kbps``: that advance weighted by
  the bitrate played, divided by it; null without watch time;
* ``rebuffer_count``: stalls that began; ``rebuffer_time_ms``: stalls that ended,
  start to end; ``rebuffer_ratio``: ``rebuffer_time / (watch_time + rebuffer_time)``
  (0 when both are 0); ``rebuffers_per_hour``: ``rebuffer_count`` per hour of
  ``watch_time`` (0 without watch time);
* ``bitrate_switches``: ``bitrate_change`` events;
* ``play_attempts``: attempts (a ``start``) resolved in the window by the first
  ``play``, ``error`` or ``stop`` after it; ``play_failures``: those resolved by an
  ``error``; ``failure_rate``: failures / attempts (0 without attempts), so in [0, 1];
* ``concurrent_streams``: distinct playbacks with an event in the window.
"""

from __future__ import annotations

from typing import Any

from jobs.qoe.playbacks import FACT_COUNTS
from runtime import Window
from runtime.aggregates import Quantiles

QUANTILES = (0.5, 0.9, 0.99)
RELATIVE_ACCURACY = 0.01
_HOUR_MS = 3_600_000
_N = len(FACT_COUNTS)


class QoeAggregate:
    """``AggregateFunction`` over facts.

    Accumulator: ``[count sums (as FACT_COUNTS)..., startup sketch or None, playback ids]``;
    the sketch is created with the first startup time.
    """

    def __init__(self) -> None:
        self.startups = Quantiles(QUANTILES, relative_accuracy=RELATIVE_ACCURACY)

    def create(self) -> list[Any]:
        """No facts yet."""
        return [0] * _N + [None, set()]

    def add(self, acc: list[Any], fact: dict[str, Any]) -> list[Any]:
        """Add one fact."""
        c = fact["counts"]
        acc[0] += c[0]
        acc[1] += c[1]
        acc[2] += c[2]
        acc[3] += c[3]
        acc[4] += c[4]
        acc[5] += c[5]
        acc[6] += c[6]
        acc[7] += c[7]
        startup = fact["startup_ms"]
        if startup is not None:
            sketch = acc[_N]
            if sketch is None:
                sketch = acc[_N] = self.startups.create()
            sketch.add(startup)
        acc[_N + 1].add(fact["playback_id"])
        return acc

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        """Add two windows' worth of facts."""
        for i in range(_N):
            a[i] += b[i]
        if b[_N] is not None:
            if a[_N] is None:
                a[_N] = self.startups.create()
            self.startups.merge(a[_N], b[_N])
        a[_N + 1] |= b[_N + 1]
        return a

    def result(self, acc: list[Any]) -> dict[str, Any]:
        """The QoE metrics (see the module docstring)."""
        c = dict(zip(FACT_COUNTS, acc[:_N], strict=True))
        watch, stalled, attempts = c["watch_ms"], c["rebuffer_ms"], c["attempts"]
        if acc[_N] is None:
            startup: dict[float, float | None] = dict.fromkeys(QUANTILES)
        else:
            startup = self.startups.result(acc[_N])
        return {
            "plays_started": c["plays"],
            "startup_p50_ms": startup[0.5],
            "startup_p90_ms": startup[0.9],
            "startup_p99_ms": startup[0.99],
            "watch_time_ms": watch,
            "rebuffer_time_ms": stalled,
            "rebuffer_count": c["rebuffers"],
            "rebuffer_ratio": stalled / (watch + stalled) if watch + stalled else 0.0,
            "rebuffers_per_hour": c["rebuffers"] * _HOUR_MS / watch if watch else 0.0,
            "avg_bitrate_kbps": c["bitrate_ms"] / watch if watch else None,
            "bitrate_switches": c["switches"],
            "play_attempts": attempts,
            "play_failures": c["failures"],
            "failure_rate": c["failures"] / attempts if attempts else 0.0,
            "concurrent_streams": len(acc[_N + 1]),
        }


def metric_output(window_kind: str, group_kind: str) -> Any:
    """The window output function building ``QoeMetric`` records for one window step."""
    by_title = group_kind == "title_device_country_cdn"

    def output(key: Any, window: Window, result: dict[str, Any]) -> dict[str, Any]:
        if by_title:
            title_id, device_type, country, cdn = key
        else:
            title_id = device_type = country = None
            cdn = key
        return {
            "window_start_ms": window.start_ms,
            "window_end_ms": window.end_ms,
            "window_kind": window_kind,
            "group_kind": group_kind,
            "title_id": title_id,
            "device_type": device_type,
            "country": country,
            "cdn": cdn,
            **result,
        }

    return output
