"""Versions of one counting job for the canary tests.

``counts`` is the baseline: events per user in 5-second tumbling windows. The others
are candidates a canary must judge: a behaviour-preserving refactor (``refactored``),
a window one second shorter (``shorter``), one that dead-letters one record in twenty
(``dead_letters``) and one that burns CPU on every record (``slow``).
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count

WINDOW_MS = 5_000


def _source(job: Job) -> Any:
    return job.source(
        "events",
        schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=1), idle_timeout=None),
    )


def _row(user: str, window: Window, n: int) -> dict[str, Any]:
    return {"user_id": user, "window_start_ms": window.start_ms, "n": n}


def _build(name: str, size_ms: int = WINDOW_MS, step: str = "per_user_5s", pre: Any = None) -> Job:
    job = Job(name)
    stream = _source(job)
    if pre is not None:
        stream = stream.map(pre, name="pre")
    (
        stream.key_by("by_user", lambda e: e["user_id"])
        .window(step, windows.tumbling(timedelta(milliseconds=size_ms)))
        .aggregate(Count(), output=_row)
        .sink("counts", Json(), key=lambda r: r["user_id"])
    )
    return job


counts = _build("counts")


def _user_of(event: dict[str, Any]) -> str:
    return str(event["user_id"])


# The same counts written another way: a named key function and another output builder.
refactored = Job("counts")
(
    _source(refactored)
    .key_by("by_user_id", _user_of)
    .window("per_user_5s", windows.tumbling(timedelta(milliseconds=WINDOW_MS)))
    .aggregate(
        Count(),
        output=lambda user, w, n: dict(user_id=user, window_start_ms=w.start_ms, n=n),
    )
    .sink("counts", Json(), key=lambda r: r["user_id"])
)

shorter = _build("counts", size_ms=WINDOW_MS - 1_000, step="per_user_4s")


def _fail_one_in_twenty(e: dict[str, Any]) -> dict[str, Any]:
    if hashlib.blake2b(e["event_id"].encode(), digest_size=2).digest()[0] % 20 == 0:
        raise ValueError("one record in twenty is refused")
    return e


dead_letters = _build("counts", pre=_fail_one_in_twenty)


def _burn(e: dict[str, Any]) -> dict[str, Any]:
    end = time.perf_counter() + 0.0003  # 300 us of CPU per record
    while time.perf_counter() < end:
        pass
    return e


slow = _build("counts", pre=_burn)
