"""Live quality of experience (QoE) per (title, device type, country, CDN) and per CDN.

Playback events go through a per-playback step (``jobs.qoe.playbacks``) that replays
each playback in event-time order as the watermark passes and emits one fact per
event (startup time, watch time, stall time, ... completed by that event, at that
event's time). Facts are then grouped by ``(title_id, device_type, country, cdn)``
and by ``cdn`` (repartitioned) and summed over 1-minute tumbling and 5-minute
hopping windows (1-minute slide); see ``jobs.qoe.metrics`` for each metric.

Duplicates (same ``event_id``) count once. An event that arrives with an event time
not after the watermark is excluded: the playback's replay may already be past it.
Facts are released when the watermark passes their time and reach the windows before
the windows see that watermark (the engine advances steps in graph order), so windows
never see late facts and need no allowed lateness.

Sinks:
    ``qoe-metrics``: ``QoeMetric`` (Avro), one per window and group; ``window_kind`` is
        ``tumbling_1m`` or ``hopping_5m``, ``group_kind`` is
        ``title_device_country_cdn`` or ``cdn``.
    ``qoe-excluded-events``: JSON ``{"excluded": "duplicate" | "late", "event": ...}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs.qoe.metrics import QoeAggregate, metric_output
from jobs.qoe.playbacks import PlaybackFacts
from runtime import Avro, Job, Json, WatermarkStrategy, windows

WINDOWS: dict[str, windows.Tumbling | windows.Hopping] = {
    "tumbling_1m": windows.tumbling(timedelta(minutes=1)),
    "hopping_5m": windows.hopping(timedelta(minutes=5), timedelta(minutes=1)),
}
GROUPS = {
    "title_device_country_cdn": lambda f: (f["title_id"], f["device_type"], f["country"], f["cdn"]),
    "cdn": lambda f: f["cdn"],
}


def build(
    *,
    max_out_of_order: timedelta = timedelta(seconds=5),
    idle_timeout: timedelta | None = timedelta(seconds=30),
    playback_timeout: timedelta = timedelta(minutes=10),
    name: str = "qoe",
) -> Job:
    """The QoE job.

    Args:
        max_out_of_order: the source's bounded disorder (watermark lag); events later
            than that are excluded.
        idle_timeout: processing time after which a quiet partition stops holding the
            watermark back.
        playback_timeout: event time without events after which a playback starts
            over (its state is dropped): longer than any pause.
        name: the job's name.
    """
    job = Job(name)
    playback = job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(max_out_of_order, idle_timeout=idle_timeout),
    )
    timeout_ms = int(playback_timeout / timedelta(milliseconds=1))
    replayed = playback.key_by(
        "by_playback", lambda e: (e["user_id"], e["playback_id"]), repartition=False
    ).process("playback_facts", PlaybackFacts(timeout_ms))
    replayed.filter(lambda r: "excluded" in r, name="excluded_only").sink(
        "qoe-excluded-events", Json()
    )
    facts = replayed.filter(lambda r: "excluded" not in r, name="facts_only")
    results: list[Any] = []
    for group_kind, group in GROUPS.items():
        grouped = facts.key_by(f"by_{group_kind}", group)
        for window_kind, spec in WINDOWS.items():
            results.append(
                grouped.window(f"qoe_{group_kind}_{window_kind}", spec).aggregate(
                    QoeAggregate(), output=metric_output(window_kind, group_kind)
                )
            )
    results[0].merge(*results[1:], name="all_metrics").sink("qoe-metrics", Avro("QoeMetric"))
    return job


job = build()
