"""The first reference job: a stateless error feed and a windowed rebuffer count per CDN.

Its steps are typed end to end (``PlaybackEvent`` in, ``PlaybackError`` and
``RebufferCount`` out), so ``mypy --strict`` checks every field each step reads.

Sinks:
    ``playback-errors``: one JSON record per playback error (user, title, CDN, code).
    ``rebuffers-per-cdn``: per CDN and 10-second event-time window, rebuffer starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from jobs.records import DeviceType, PlaybackEvent
from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count


class PlaybackError(TypedDict):
    """A record of ``playback-errors``."""

    event_time_ms: int
    user_id: str
    title_id: str
    playback_id: str
    cdn: str
    device_type: DeviceType
    error_code: str | None


class RebufferCount(TypedDict):
    """A record of ``rebuffers-per-cdn``."""

    cdn: str
    window_start_ms: int
    window_end_ms: int
    rebuffers: int


job = Job("playback_health")

playback = job.source(
    "playback",
    schema="PlaybackEvent",
    record=PlaybackEvent,
    timestamp=lambda e: e["event_time_ms"],
    watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=timedelta(seconds=5)),
)


def error_record(e: PlaybackEvent) -> PlaybackError:
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


def per_cdn(cdn: str, window: Window, count: int) -> RebufferCount:
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
    .sink("playback-errors", Json(), key=lambda r: r["user_id"])
)

(
    playback.filter(lambda e: e["event_type"] == "rebuffer_start", name="rebuffers_only")
    .key_by("by_cdn", lambda e: e["cdn"])
    .window("rebuffers_10s", windows.tumbling(timedelta(seconds=10)))
    .aggregate(Count(), output=per_cdn)
    .sink("rebuffers-per-cdn", Json())
)
