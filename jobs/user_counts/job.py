"""Per-user event counts in tumbling event-time windows.

The playback topic is keyed by user id, so ``key_by(..., repartition=False)``: every
input partition is a task of its own and the job scales across workers.

Sink ``user-counts``: ``{"user_id", "window_start_ms", "window_end_ms", "count"}`` (JSON).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count


def _row(user: str, window: Window, count: int) -> dict[str, Any]:
    return {
        "user_id": user,
        "window_start_ms": window.start_ms,
        "window_end_ms": window.end_ms,
        "count": count,
    }


def build(
    size: timedelta = timedelta(seconds=10),
    max_out_of_order: timedelta = timedelta(seconds=5),
    name: str = "user_counts",
) -> Job:
    """The job, with its window size and allowed disorder."""
    job = Job(name)
    (
        job.source(
            "playback",
            schema="PlaybackEvent",
            timestamp=lambda e: e["event_time_ms"],
            watermarks=WatermarkStrategy.bounded(max_out_of_order, idle_timeout=None),
        )
        .key_by("by_user", lambda e: e["user_id"], repartition=False)
        .window("counts_10s", windows.tumbling(size))
        .aggregate(Count(), output=_row)
        .sink("user-counts", Json())
    )
    return job


job = build()
