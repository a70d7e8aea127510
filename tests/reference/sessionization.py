"""The sessionization job's reference: sessions rebuilt from scratch.

From the batches in the order they were sent it decides which events are late
(``reference_lateness``), rebuilds each (user, device)'s sessions from the distinct
on-time events (``reference_sessions``) and summarizes them straight from the
definitions in ``jobs/sessionization/summary.py`` (``summarize``). A job's final view
(the latest summary per session key, minus retracted ones) must equal it: integers
and lists exactly, the average bitrate within a relative ``FLOAT_TOLERANCE``
(``assert_same_sessions``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS, RANK

FLOAT_TOLERANCE = 1e-9  # relative, on avg_bitrate_kbps
Batches = Sequence[tuple[str, Sequence[dict[str, Any]]]]


def reference_lateness(
    batches: Batches, *, bound_ms: int, reach_ms: int, now_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Split valid events into (on time, late) and count bad timestamps.

    The watermark before a batch is min over both sources of (largest valid event
    time so far) - bound, or nothing while a source has sent no valid event; it never
    goes back. An event is late when ``ts + reach <= watermark``.
    """
    latest: dict[str, int] = {}
    watermark: int | None = None
    on_time, late, bad = [], [], 0
    for stream, values in batches:
        for v in values:
            ts = v["event_time_ms"]
            if not MIN_VALID_MS <= ts <= now_ms + MAX_FUTURE_MS:
                bad += 1
            elif watermark is not None and ts + reach_ms <= watermark:
                late.append(v)
            else:
                on_time.append(v)
        stamps = [
            v["event_time_ms"]
            for v in values
            if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS
        ]
        if stamps:
            latest[stream] = max(latest.get(stream, stamps[0]), *stamps)
        if len(latest) == 2:
            candidate = min(latest.values()) - bound_ms
            watermark = candidate if watermark is None else max(watermark, candidate)
    return on_time, late, bad


def reference_sessions(events: list[dict[str, Any]], gap_ms: int) -> dict[tuple[Any, ...], Any]:
    """Session key -> summary, rebuilt from scratch from the distinct on-time events."""
    distinct = {e["event_id"]: e for e in events}
    per_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in distinct.values():
        per_key[(e["user_id"], e["device_id"])].append(e)
    out = {}
    for (user, device), evs in per_key.items():
        evs.sort(key=lambda e: e["event_time_ms"])
        session = [evs[0]]
        for e in evs[1:]:
            if e["event_time_ms"] - session[-1]["event_time_ms"] >= gap_ms:
                out[(user, device, session[0]["event_time_ms"])] = summarize(session)
                session = []
            session.append(e)
        out[(user, device, session[0]["event_time_ms"])] = summarize(session)
    return out


def summarize(session: list[dict[str, Any]]) -> dict[str, Any]:
    """The SessionSummary metrics of one session's events, from the definitions."""
    times = [e["event_time_ms"] for e in session]
    playback = [e for e in session if "playback_id" in e]
    plays: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in playback:
        plays[e["playback_id"]].append(e)
    for evs in plays.values():
        evs.sort(key=lambda e: (e["event_time_ms"], RANK.index(e["event_type"]), e["event_id"]))
    order = sorted(plays, key=lambda p: (plays[p][0]["event_time_ms"], p))

    def of_type(evs: list[dict[str, Any]], kind: str) -> list[int]:
        return [e["event_time_ms"] for e in evs if e["event_type"] == kind]

    startups = []
    for p in order:
        starts, playing = of_type(plays[p], "start"), of_type(plays[p], "play")
        if starts and playing and min(playing) >= min(starts):
            startups.append(min(playing) - min(starts))
    watch = weighted = 0
    for evs in plays.values():
        for a, b in zip(evs, evs[1:], strict=False):
            to = b["seek_from_ms"] if b["event_type"] == "seek" else b["position_ms"]
            step = max(0, to - a["position_ms"])
            watch += step
            weighted += step * a["bitrate_kbps"]
    stall_time = 0
    for evs in plays.values():
        open_at = None
        for e in evs:
            if e["event_type"] == "rebuffer_start":
                open_at = e["event_time_ms"]
            elif e["event_type"] == "rebuffer_end" and open_at is not None:
                stall_time += e["event_time_ms"] - open_at
                open_at = None
    first_seen: dict[str, int] = {}
    for e in playback:
        t = e["title_id"]
        first_seen[t] = min(first_seen.get(t, e["event_time_ms"]), e["event_time_ms"])
    reason = "abandoned"
    if plays:
        last = max(plays, key=lambda p: (plays[p][-1]["event_time_ms"], p))
        ends = [e["event_type"] for e in plays[last] if e["event_type"] in ("stop", "error")]
        reason = ends[-1] if ends else "abandoned"
    kinds = Counter(e["event_type"] for e in playback)
    return {
        "session_start_ms": min(times),
        "session_end_ms": max(times),
        "titles": sorted(first_seen, key=lambda t: (first_seen[t], t)),
        "plays": kinds["start"],
        "watch_time_ms": watch,
        "startup_times_ms": startups,
        "rebuffer_count": kinds["rebuffer_start"],
        "rebuffer_time_ms": stall_time,
        "avg_bitrate_kbps": weighted / watch if watch else 0.0,
        "bitrate_switches": kinds["bitrate_change"],
        "errors": kinds["error"],
        "end_reason": reason,
        "event_count": len(playback),
    }


def assert_same_sessions(got: dict[Any, Any], want: dict[Any, Any]) -> None:
    """Same session keys; per key the same summary (revision aside; the average bitrate
    within the tolerance). Keys of three parts name the summary's user and device."""
    assert set(got) == set(want), (
        sorted(set(got) - set(want))[:3],
        sorted(set(want) - set(got))[:3],
    )
    for key, expected in want.items():
        actual = dict(got[key])
        assert actual.pop("revision") >= 0
        owner = (actual.pop("user_id"), actual.pop("device_id"))
        assert len(key) < 3 or owner == key[:2]
        avg = actual.pop("avg_bitrate_kbps")
        expected = dict(expected)
        assert avg == pytest.approx(expected.pop("avg_bitrate_kbps"), rel=FLOAT_TOLERANCE, abs=0)
        assert actual == expected, key
