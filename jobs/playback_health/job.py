"""The first reference job: a stateless error feed and a windowed rebuffer count per CDN.

Sinks:
    ``playback-errors``: one JSON record per playback error (user, title, CDN, code).
    ``rebuffers-per-cdn``: per CDN and 10-second event-time window, rebuffer starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runtime import Job, WatermarkStrategy, Window, windows
from runtime.aggregates import Count

job = Job("playback_health")

playback = job.source(
    "playback",
    schema="PlaybackEvent",
    timestamp=lambda e: e["event_time_ms"],
    watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=timedelta(seconds=5)),
)


def error_record(e: dict[str, Any]) -> dict[str, Any]:
    """The published shape of a playback error."""
    return {
        "event_time_ms": e["event_time_ms"],
        "user_id": e["user_id"],
        "title_id": e["title_id"],
        "playback_id": e["playback_id"],
        "cdn": e["cdn"],
        "device_type": e["device_type"],
        "error_code": e["error_code"],
    }


def per_cdn(cdn: str, window: Window, count: int) -> dict[str, Any]:
    """One row of the rebuffer table."""
    return {
        "cdn": cdn,
        "window_start_ms": window.start_ms,
        "window_end_ms": window.end_ms,
        "rebuffers": count,
    }


(
    playback.filter(lambda e: e["event_type"] == "error", name="errors_only")
    .map(error_record, name="error_shape")
    .sink("playback-errors", schema=None, key=lambda r: r["user_id"])
)

(
    playback.filter(lambda e: e["event_type"] == "rebuffer_start", name="rebuffers_only")
    .key_by("by_cdn", lambda e: e["cdn"])
    .window("rebuffers_10s", windows.tumbling(timedelta(seconds=10)))
    .aggregate(Count(), output=per_cdn)
    .sink("rebuffers-per-cdn", schema=None)
)
