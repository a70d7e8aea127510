"""Versions of one session job for the savepoint tests (upgrade, rollback, refusal).

``v1``: playback events keyed by user (through a repartition topic), per-user
sessions with a declared accumulator ``{events, seeks}`` and string keys.

``v2``: the session step renamed to ``user_sessions``; its accumulator gains
``errors`` with default 0 (Avro resolution fills it for restored sessions, so it
counts only events processed by v2); a new step ``tag`` adds the version to every
output. Its output has every v1 field plus ``errors`` and ``version``.

``v3_no_default`` / ``v3_key_type``: incompatible changes: a new field of the
accumulator without a default, and keys declared as ``long``.

Idleness is off, so nothing turns late while a job is stopped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runtime import Job, Json, WatermarkStrategy, Window, windows

GAP_MS = 30_000

ACC_V1: dict[str, Any] = {
    "type": "record",
    "name": "SessionAcc",
    "fields": [{"name": "events", "type": "long"}, {"name": "seeks", "type": "long"}],
}
ACC_V2: dict[str, Any] = {
    "type": "record",
    "name": "SessionAcc",
    "fields": [*ACC_V1["fields"], {"name": "errors", "type": "long", "default": 0}],
}
ACC_V3: dict[str, Any] = {
    "type": "record",
    "name": "SessionAcc",
    "fields": [*ACC_V1["fields"], {"name": "errors", "type": "long"}],
}


class Sessions:
    """Counts events and seeks (and, from v2 on, errors) of a session."""

    def __init__(self, with_errors: bool) -> None:
        self.with_errors = with_errors

    def create(self) -> dict[str, int]:
        acc = {"events": 0, "seeks": 0}
        if self.with_errors:
            acc["errors"] = 0
        return acc

    def add(self, acc: dict[str, int], e: dict[str, Any]) -> dict[str, int]:
        acc["events"] += 1
        acc["seeks"] += e["event_type"] == "seek"
        if self.with_errors:
            acc["errors"] += e["event_type"] == "error"
        return acc

    def merge(self, a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}

    def result(self, acc: dict[str, int]) -> dict[str, int]:
        return dict(acc)


def _row(user: str, window: Window, result: dict[str, int] | None) -> dict[str, Any]:
    return {"user_id": user, "start_ms": window.start_ms, "end_ms": window.end_ms,
            **(result or {})}  # fmt: skip


def _source(job: Job) -> Any:
    return job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=None),
    )


def _v1() -> Job:
    job = Job("sp_sessions")
    (
        _source(job)
        .key_by("by_user", lambda e: e["user_id"])
        .window("sessions", windows.session(gap=timedelta(milliseconds=GAP_MS)))
        .aggregate(Sessions(False), output=_row)
        .sink("sessions-out", Json())
    )
    job.state_schema("sessions", value=ACC_V1, key="string")
    return job


def _v2(step: str = "user_sessions", schema: Any = ACC_V2, key: str = "string") -> Job:
    job = Job("sp_sessions")
    (
        _source(job)
        .key_by("by_user", lambda e: e["user_id"])
        .window(step, windows.session(gap=timedelta(milliseconds=GAP_MS)))
        .aggregate(Sessions(True), output=_row)
        .map(lambda r: {**r, "version": 2}, name="tag")
        .sink("sessions-out", Json())
    )
    job.state_schema(step, value=schema, key=key)
    return job


v1 = _v1()
v2 = _v2()
v3_no_default = _v2(schema=ACC_V3)
v3_key_type = _v2(key="long")
