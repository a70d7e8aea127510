"""The QoE job's reference: every window of every group recomputed from scratch.

From the batches in the order they were sent it decides which events count
(``counted_events``: on time and first of their ``event_id``), replays each playback
from the definitions in ``jobs/qoe/playbacks.py`` and ``jobs/qoe/metrics.py``
(``facts``) and sums every window of every group (``reference_metrics``). A job's
output must match it (``assert_same_metrics``): integers exactly, ratios and
averages within a relative 1e-9, startup quantiles within the sketch's relative
accuracy (1%) of the exact quantile: the value of rank ``floor(q * (n - 1))`` in
sorted order.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS, RANK

FLOAT_TOLERANCE = 1e-9
SKETCH_ACCURACY = 0.01
MINUTE = 60_000
HOUR = 3_600_000
TIMEOUT_MS = 10 * MINUTE  # the job's default playback timeout
Batches = Sequence[tuple[str, Sequence[dict[str, Any]]]]


def counted_events(
    batches: Batches, now_ms: int, bound_ms: int
) -> tuple[list[dict[str, Any]], list[str], int]:
    """(events that count, event ids of excluded copies, bad timestamps).

    The watermark before a batch is the largest valid event time of the previous
    batches minus ``bound_ms``. A copy counts when it is the first copy of its event
    id to arrive and its event time is after that watermark.
    """
    watermark = None
    arrived: set[str] = set()
    counted, excluded, bad = [], [], 0
    for _, values in batches:
        valid = [v for v in values if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
        bad += len(values) - len(valid)
        for v in valid:
            first = v["event_id"] not in arrived
            arrived.add(v["event_id"])
            if first and (watermark is None or v["event_time_ms"] > watermark):
                counted.append(v)
            else:
                excluded.append(v["event_id"])
        if valid:
            candidate = max(v["event_time_ms"] for v in valid) - bound_ms
            watermark = candidate if watermark is None else max(watermark, candidate)
    return counted, excluded, bad


def facts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replay every playback; one fact per event with what the event completes."""
    playbacks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        playbacks[(e["user_id"], e["playback_id"])].append(e)
    out = []
    for (_, playback_id), evs in playbacks.items():
        evs.sort(key=lambda e: (e["event_time_ms"], RANK.index(e["event_type"]), e["event_id"]))
        dims = {k: evs[0][k] for k in ("title_id", "device_type", "country", "cdn")}
        # split where the playback was quiet for longer than the timeout
        runs, run = [], [evs[0]]
        for a, b in zip(evs, evs[1:], strict=False):
            if b["event_time_ms"] - a["event_time_ms"] > TIMEOUT_MS:
                runs.append(run)
                run = []
            run.append(b)
        runs.append(run)
        for run in runs:
            out.extend(replay(run, dims, playback_id))
    return out


def replay(
    run: list[dict[str, Any]], dims: dict[str, str], playback_id: str
) -> list[dict[str, Any]]:
    """The facts of one run of a playback's events (sorted), one per event."""
    starts = [e["event_time_ms"] for e in run if e["event_type"] == "start"]
    playing = [e for e in run if e["event_type"] == "play"]
    first_play = playing[0]["event_id"] if playing else None
    out = []
    open_attempt = False
    stall = None
    for i, e in enumerate(run):
        t, kind = e["event_time_ms"], e["event_type"]
        fact = {
            **dims,
            "playback_id": playback_id,
            "ts": t,
            "startup": None,
            "attempts": 0,
            "failures": 0,
            "plays": 0,
            "watch": 0,
            "weighted": 0,
            "rebuffers": 0,
            "stalled": 0,
            "switches": 0,
        }
        if i:
            prev = run[i - 1]
            to = e["seek_from_ms"] if kind == "seek" else e["position_ms"]
            fact["watch"] = max(0, to - prev["position_ms"])
            fact["weighted"] = fact["watch"] * prev["bitrate_kbps"]
        if kind == "start":
            open_attempt = True
        if kind in ("play", "error", "stop") and open_attempt:
            open_attempt = False
            fact["attempts"] = 1
            fact["failures"] = int(kind == "error")
        if e["event_id"] == first_play:
            fact["plays"] = 1
            earlier = [s for s in starts if s <= t]
            if earlier:
                fact["startup"] = t - min(earlier)
        if kind == "rebuffer_start":
            fact["rebuffers"] = 1
            stall = t
        if kind == "rebuffer_end" and stall is not None:
            fact["stalled"] = t - stall
            stall = None
        fact["switches"] = int(kind == "bitrate_change")
        out.append(fact)
    return out


def windows_of(ts: int, kind: str) -> list[int]:
    """Starts of the windows containing ``ts``."""
    if kind == "tumbling_1m":
        return [ts // MINUTE * MINUTE]
    return [
        s for s in range((ts // MINUTE - 4) * MINUTE, ts + 1, MINUTE) if s <= ts < s + 5 * MINUTE
    ]


GROUPS = {
    "title_device_country_cdn": ("title_id", "device_type", "country", "cdn"),
    "cdn": ("cdn",),
}


def reference_metrics(all_facts: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(window kind, group kind, title, device, country, cdn, start) -> metrics."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for f in all_facts:
        for group_kind, dims in GROUPS.items():
            group = tuple(f[d] if d in dims else None for d in GROUPS["title_device_country_cdn"])
            for window_kind in ("tumbling_1m", "hopping_5m"):
                for start in windows_of(f["ts"], window_kind):
                    cells[(window_kind, group_kind, *group, start)].append(f)
    out = {}
    for key, fs in cells.items():
        total = Counter()
        for f in fs:
            total.update(
                {
                    k: f[k]
                    for k in (
                        "attempts",
                        "failures",
                        "plays",
                        "watch",
                        "weighted",
                        "rebuffers",
                        "stalled",
                        "switches",
                    )
                }
            )
        watch, stalled = total["watch"], total["stalled"]
        startups = sorted(f["startup"] for f in fs if f["startup"] is not None)
        out[key] = {
            "plays_started": total["plays"],
            "startups": startups,
            "watch_time_ms": watch,
            "rebuffer_time_ms": stalled,
            "rebuffer_count": total["rebuffers"],
            "rebuffer_ratio": stalled / (watch + stalled) if watch + stalled else 0.0,
            "rebuffers_per_hour": total["rebuffers"] / (watch / HOUR) if watch else 0.0,
            "avg_bitrate_kbps": total["weighted"] / watch if watch else None,
            "bitrate_switches": total["switches"],
            "play_attempts": total["attempts"],
            "play_failures": total["failures"],
            "failure_rate": total["failures"] / total["attempts"] if total["attempts"] else 0.0,
            "concurrent_streams": len({f["playback_id"] for f in fs}),
        }
    return out


def exact_quantile(values: list[int], q: float) -> int:
    """The value of rank ``floor(q * (n - 1))`` of sorted ``values``."""
    return values[math.floor(q * (len(values) - 1))]


def assert_same_metrics(got: list[dict[str, Any]], want: dict[tuple[Any, ...], Any]) -> None:
    """Each window once, exactly the reference's windows, each with its metrics:
    integers exactly, ratios and averages within ``FLOAT_TOLERANCE``, startup
    quantiles within the sketch's accuracy of the exact quantile."""
    by_key = {}
    for r in got:
        key = (
            r["window_kind"],
            r["group_kind"],
            r["title_id"],
            r["device_type"],
            r["country"],
            r["cdn"],
            r["window_start_ms"],
        )
        assert key not in by_key, f"emitted twice: {key}"
        by_key[key] = r
    assert set(by_key) == set(want), (
        sorted(set(by_key) - set(want))[:3],
        sorted(set(want) - set(by_key))[:3],
    )
    for key, expected in want.items():
        actual = dict(by_key[key])
        size = MINUTE if key[0] == "tumbling_1m" else 5 * MINUTE
        assert actual.pop("window_end_ms") == key[-1] + size
        expected = dict(expected)
        startups = expected.pop("startups")
        for q, name in ((0.5, "startup_p50_ms"), (0.9, "startup_p90_ms"), (0.99, "startup_p99_ms")):
            estimate = actual.pop(name)
            if not startups:
                assert estimate is None, (key, name)
            else:
                exact = exact_quantile(startups, q)
                assert abs(estimate - exact) <= SKETCH_ACCURACY * exact + 1e-9, (key, name)
        for name in ("rebuffer_ratio", "rebuffers_per_hour", "avg_bitrate_kbps", "failure_rate"):
            want_value, got_value = expected.pop(name), actual.pop(name)
            if want_value is None:
                assert got_value is None, (key, name)
            else:
                assert got_value == pytest.approx(want_value, rel=FLOAT_TOLERANCE, abs=0), (
                    key,
                    name,
                )
        for name in (
            "window_kind",
            "group_kind",
            "title_id",
            "device_type",
            "country",
            "cdn",
            "window_start_ms",
        ):
            actual.pop(name)
        assert actual == expected, key
