"""``jobs.user_counts`` slowed down for the autoscaling test.

The real job drains the test's backlog (about 100k records) in a second or two, which
can be before the supervisor's first lag sample: the burst would be over before the
rule could see it. Here every record costs 200 us of CPU first, so one worker needs
about 20 s for the backlog and the burst is still there when the supervisor looks.
The graph and the outputs are otherwise those of ``jobs.user_counts``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from jobs.user_counts.job import _row
from runtime import Job, Json, WatermarkStrategy, windows
from runtime.aggregates import Count

BURN_S = 0.0002


def _burn(event: dict[str, Any]) -> dict[str, Any]:
    end = time.perf_counter() + BURN_S
    while time.perf_counter() < end:
        pass
    return event


job = Job("user_counts")
(
    job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=None),
    )
    .map(_burn, name="burn")
    .key_by("by_user", lambda e: e["user_id"], repartition=False)
    .window("counts_10s", windows.tumbling(timedelta(seconds=10)))
    .aggregate(Count(), output=_row)
    .sink("user-counts", Json())
)
