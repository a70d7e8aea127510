"""Sessionization: viewing sessions per user and device from playback and interaction events.

Both sources are keyed by user id on the wire, so keying by ``(user_id, device_id)``
needs no repartition: each input partition is a task of its own. That requires the
two topics to be co-partitioned (same partition count, same partitioner), so that a
user's playback and interaction events meet in the same task.

Sessions are event-time session windows (30-minute gap by default); each closed
session becomes a ``SessionSummary`` (see ``jobs.sessionization.summary`` for how
each field is defined). Duplicate deliveries count once: the aggregate keeps events
by ``event_id``. A late event within allowed lateness re-emits its session; one that
bridges two sessions merges them.

Sinks:
    ``sessions``: ``SessionSummary`` (Avro), keyed ``user_id|device_id|session_start_ms``.
        A late event inside allowed lateness re-emits the session with the next
        ``revision``; consumers keep the highest revision per key.
    ``session-retractions``: JSON, same key: a late event merged this emitted
        session into one that starts earlier (it bridged two sessions, or came just
        before the session); forget the session under this key (``{"retracted":
        true, user_id, device_id, session_start_ms, session_end_ms, revision}``).
        The merged session comes on ``sessions`` under its own start. Retractions
        are not ``SessionSummary`` records (whose fields a schema test pins), so
        they do not go to the Avro topic.
    ``sessions-late-events``: JSON, the input events that came after allowed
        lateness (nothing is dropped silently).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs.sessionization.revisions import SessionRevisions
from jobs.sessionization.summary import SessionAggregate
from runtime import Avro, Job, Json, WatermarkStrategy, Window, windows

DEFAULT_GAP = timedelta(minutes=30)
DEFAULT_ALLOWED_LATENESS = timedelta(minutes=5)


def _ms(value: timedelta) -> int:
    return int(value / timedelta(milliseconds=1))


def session_key(record: dict[str, Any]) -> tuple[str, str, int]:
    """The message key of a session (and of its retraction)."""
    return (record["user_id"], record["device_id"], record["session_start_ms"])


def build(
    gap: timedelta = DEFAULT_GAP,
    allowed_lateness: timedelta = DEFAULT_ALLOWED_LATENESS,
    *,
    max_out_of_order: timedelta = timedelta(seconds=5),
    idle_timeout: timedelta | None = timedelta(seconds=30),
    revision_retention: timedelta = timedelta(hours=24),
    name: str = "sessionization",
) -> Job:
    """The sessionization job.

    Args:
        gap: event-time inactivity that ends a session.
        allowed_lateness: how long after a session closed a late event still updates
            it (re-emitting it) or bridges it with the next session.
        max_out_of_order: the sources' bounded disorder (watermark lag).
        idle_timeout: processing time after which a quiet partition stops holding
            the watermark back.
        revision_retention: how long, beyond the window step's own retention, the
            revision of a session is remembered (see ``jobs.sessionization.revisions``).
        name: the job's name.
    """
    gap_ms = _ms(gap)
    lateness_ms = _ms(allowed_lateness)
    watermarks = WatermarkStrategy.bounded(max_out_of_order, idle_timeout=idle_timeout)

    def summary_record(key: tuple[str, str], window: Window, result: Any) -> dict[str, Any]:
        user_id, device_id = key
        if result is None:  # the engine retracts a session absorbed by a merge
            return {
                "retracted": True,
                "user_id": user_id,
                "device_id": device_id,
                "session_start_ms": window.start_ms,
                "session_end_ms": window.end_ms - gap_ms,
            }
        return {"user_id": user_id, "device_id": device_id, **result}

    job = Job(name)
    playback = job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=watermarks,
    )
    interactions = job.source(
        "interactions",
        schema="InteractionEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=watermarks,
    )
    sessions = (
        playback.merge(interactions, name="all_events")
        .key_by("by_user_device", lambda e: (e["user_id"], e["device_id"]), repartition=False)
        .window("sessions_window", windows.session(gap, allowed_lateness=allowed_lateness))
        .aggregate(SessionAggregate(), output=summary_record)
    )
    # The window step keeps a session until ``end - 1 + gap + lateness``; its end is the
    # last event + gap.
    forget_after_ms = 2 * gap_ms + lateness_ms + _ms(revision_retention)
    revised = sessions.process("session_revisions", SessionRevisions(forget_after_ms))
    (
        revised.filter(lambda r: not r.get("retracted", False), name="summaries_only").sink(
            "sessions", Avro("SessionSummary"), key=session_key
        )
    )
    (
        revised.filter(lambda r: r.get("retracted", False), name="retractions_only").sink(
            "session-retractions", Json(), key=session_key
        )
    )
    sessions.late("sessions_late").sink("sessions-late-events", Json())
    return job


job = build()

#: ``make demo`` runs event time about thirty times faster than the wall clock for a
#: couple of minutes; a 5-minute gap lets sessions close while it runs.
demo_job = build(gap=timedelta(minutes=5), allowed_lateness=timedelta(minutes=1))
