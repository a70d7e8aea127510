"""Jobs for the fault tests that are not reference jobs.

``title_counts`` repartitions: the playback topic is keyed by user, the counts are
per title, so every record crosses the internal repartition topic to the task that
owns its title. Idleness is off, so nothing is late however long a killed worker
stays away, and its output must equal the brute-force reference exactly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count
from runtime.api.functions import KeyedProcessFunction, ProcessContext

WINDOW_MS = 10_000


def _row(title: str, window: Window, count: int) -> dict[str, Any]:
    return {"title_id": title, "window_start_ms": window.start_ms, "count": count}


title_counts = Job("title_counts")
(
    title_counts.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=None),
    )
    .key_by("by_title", lambda e: e["title_id"])
    .window("title_counts_10s", windows.tumbling(timedelta(milliseconds=WINDOW_MS)))
    .aggregate(Count(), output=_row)
    .sink("title-counts", Json())
)


# ``leaky_copies`` is deliberately broken for ``shoal chaos``: a copy of each playback
# event, run with ``--guarantee at_least_once`` so that its sink writes go out before,
# and outside, the checkpoint that commits the input offsets. A worker killed between
# the two has its copies written again after the restart: the chaos verdict must
# fail with duplicates.
def _copy(e: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": e["event_id"], "user_id": e["user_id"], "ts": e["event_time_ms"]}


leaky_copies = Job("leaky_copies")
(
    leaky_copies.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=5)),
    )
    .map(_copy, name="copy")
    .sink("copies", Json(), key=lambda r: r["user_id"])
)


class _QuietUsers(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    """Says a user went quiet a minute of processing time after their last event."""

    def process(self, value: dict[str, Any], ctx: ProcessContext[str]) -> list[dict[str, Any]]:
        ctx.timers.register_processing_time(ctx.processing_time_ms + 60_000)
        return []

    def on_timer(self, ts_ms: int, ctx: ProcessContext[str]) -> list[dict[str, Any]]:
        return [{"user_id": ctx.key, "quiet_at_ms": ts_ms}]


# ``quiet_users`` fires on processing time: its outputs depend on the wall clock, and
# ``shoal chaos`` must say it cannot judge them instead of guessing.
quiet_users = Job("quiet_users")
(
    quiet_users.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=5)),
    )
    .key_by("by_user", lambda e: e["user_id"])
    .process("quiet", _QuietUsers())
    .sink("quiet-users", Json())
)
