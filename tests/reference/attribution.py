"""Impression attribution by brute force, from the definition in ``jobs/attribution``.

An impression is an ``InteractionEvent`` of type ``impression`` with a title, counted
once per ``event_id``. It is attributed when some play start (``PlaybackEvent`` of type
``start``) of the same ``(user_id, title_id)`` has an event time ``r`` with
``l <= r <= l + 30 min`` (``l``: the impression's). It counts in the 5-minute window
of ``l``, per ``(row_name, rank)`` and per catalogue genre (``unknown`` when the
catalogue lacks the title). Every record is assumed on time: callers check that the
job reported none late.

Nothing here keeps state or looks at arrival order: every impression against every
start, by a scan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

MINUTE = 60_000
ATTRIBUTION_MS = 30 * MINUTE
WINDOW_MS = 5 * MINUTE
UNKNOWN = "unknown"

__all__ = ["impressions_and_verdicts", "reference_metrics", "sort_metrics"]


def impressions_and_verdicts(
    interactions: Iterable[Mapping[str, Any]], playback: Iterable[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], bool]]:
    """Each distinct impression with whether a start is attributed to it."""
    starts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in playback:
        if e["event_type"] == "start":
            starts[(e["user_id"], e["title_id"])].append(e["event_time_ms"])
    seen: set[str] = set()
    out = []
    for e in interactions:
        if e["event_type"] != "impression" or e["title_id"] is None or e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        t = e["event_time_ms"]
        times = starts.get((e["user_id"], e["title_id"]), [])
        out.append((e, any(t <= r <= t + ATTRIBUTION_MS for r in times)))
    return out


def reference_metrics(
    interactions: Iterable[Mapping[str, Any]],
    playback: Iterable[Mapping[str, Any]],
    catalogue: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Every ``AttributionMetric`` the job should emit, sorted by (kind, window, group)."""
    counts: dict[tuple[str, int, Any, Any, Any], list[int]] = defaultdict(lambda: [0, 0])
    for e, played in impressions_and_verdicts(interactions, playback):
        t = e["event_time_ms"]
        start = t - t % WINDOW_MS
        row = e["row_name"] if e["row_name"] is not None else UNKNOWN
        rank = e["rank"] if e["rank"] is not None else -1
        entry = catalogue.get(e["title_id"])
        genre = entry["genre"] if entry is not None else UNKNOWN
        for group in (("row_rank", start, row, rank, None), ("genre", start, None, None, genre)):
            counts[group][0] += 1
            counts[group][1] += int(played)
    return [
        {
            "window_start_ms": start,
            "window_end_ms": start + WINDOW_MS,
            "group_kind": kind,
            "row_name": row,
            "rank": rank,
            "genre": genre,
            "impressions": n,
            "attributed_plays": plays,
            "ctr": plays / n,
        }
        for (kind, start, row, rank, genre), (n, plays) in sorted(counts.items(), key=_order)
    ]


def sort_metrics(metrics: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``metrics`` in the order :func:`reference_metrics` uses."""
    return sorted(
        (dict(m) for m in metrics),
        key=lambda m: (
            m["group_kind"], m["window_start_ms"], str(m["row_name"]), m["rank"] or 0,
            str(m["genre"]),
        ),
    )  # fmt: skip


def _order(item: tuple[tuple[str, int, Any, Any, Any], list[int]]) -> tuple[Any, ...]:
    kind, start, row, rank, genre = item[0]
    return (kind, start, str(row), rank or 0, str(genre))
