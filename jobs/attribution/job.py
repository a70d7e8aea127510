"""Live impression attribution: which browse impressions led to a play, per row/rank and genre.

Steps:

1. Impressions (``InteractionEvent`` of type ``impression`` with a title) are enriched
   from the ``title-catalogue`` global table (``TitleCatalogEntry``: genre and kind),
   as the table stands when the impression is processed; a title missing from the
   catalogue gets genre and kind ``unknown``.
2. They are interval-joined, left outer, with play starts (``PlaybackEvent`` of type
   ``start``) of the same ``(user_id, title_id)`` at ``l <= r <= l + 30 min``
   (``l``: the impression's event time, ``r``: the start's).
3. ``settle_impressions`` (keyed by ``(user_id, title_id)``) folds the join's output
   into one verdict per impression ``event_id``: *attributed* when at least one start
   paired with it. The join emits a paired impression once per start (at the start's
   time) and an unpaired one at ``l`` once the watermark passed ``l + 30 min``, so
   neither output time is the impression's own and one impression may appear several
   times; duplicate deliveries of an impression (same ``event_id``) also fold into one.
4. The verdicts are summed in 5-minute tumbling windows per ``(row_name, rank)`` and
   per genre into impressions, attributed plays and click-through rate.

When an impression counts: **in the 5-minute window of its own event time** ``l``.
Its verdict is final only once the watermark has passed ``l + 30 min``, so
``settle_impressions`` holds every verdict of impression window ``[W, W + 5 min)``
until an event-time timer at ``W + 35 min`` (after ``l + 30 min`` for every ``l`` of
the window) and emits them all at that one time. The windows downstream therefore see
impression window ``W`` exactly as their window ``[W + 35 min, W + 40 min)``: no
verdict is late there (timer outputs reach the windows before the watermark that fired
them), so they need no allowed lateness, and the metric reports ``W`` (the window
minus :data:`SETTLE`). A window's metrics are emitted when the watermark passes
``W + 40 min``: the 30-minute attribution interval plus two window lengths.

Records behind the join's watermark (the lower of both sources') pair with nothing:
a late impression or start is not counted and goes to ``attribution-late`` instead.

Sinks:
    ``attribution-metrics``: ``AttributionMetric`` (Avro), one per impression window and
        group; ``group_kind`` is ``row_rank`` or ``genre``.
    ``attribution-late``: JSON ``{"late": "impression" | "play_start", "event": ...}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, TypedDict

from jobs.records import InteractionEvent, PlaybackEvent, TitleCatalogEntry
from runtime import (
    Avro,
    Job,
    Json,
    MapState,
    ProcessContext,
    StateDescriptor,
    WatermarkStrategy,
    Window,
    windows,
)

#: Play starts up to this long after an impression are attributed to it.
ATTRIBUTION_WINDOW = timedelta(minutes=30)
#: Size of the tumbling windows impressions are counted in (by impression time).
WINDOW = timedelta(minutes=5)
#: How far after its impression window's start a verdict is emitted.
SETTLE = ATTRIBUTION_WINDOW + WINDOW
#: Genre and kind of a title the catalogue does not have.
UNKNOWN = "unknown"

_MS = timedelta(milliseconds=1)
WINDOW_MS = WINDOW // _MS
SETTLE_MS = SETTLE // _MS


class Impression(TypedDict):
    """One impression as the join emits it: what it was and whether a start paired."""

    impression_id: str
    event_time_ms: int
    row_name: str
    rank: int
    genre: str
    kind: str
    played: bool


class AttributionMetric(TypedDict):
    """A record of ``attribution-metrics`` (``schemas/AttributionMetric.avsc``)."""

    window_start_ms: int
    window_end_ms: int
    group_kind: str
    row_name: str | None
    rank: int | None
    genre: str | None
    impressions: int
    attributed_plays: int
    ctr: float


def is_impression(e: InteractionEvent) -> bool:
    """An impression of a title (the only kind that can be attributed)."""
    return e["event_type"] == "impression" and e["title_id"] is not None


def impression_window_ms(event_time_ms: int) -> int:
    """Start of the 5-minute window an impression at ``event_time_ms`` counts in."""
    return event_time_ms - event_time_ms % WINDOW_MS


def enrich(title_id: str, e: InteractionEvent, entry: TitleCatalogEntry | None) -> dict[str, Any]:
    """An impression with its title's catalogue genre and kind."""
    return {
        "impression_id": e["event_id"],
        "user_id": e["user_id"],
        "title_id": title_id,
        "event_time_ms": e["event_time_ms"],
        "row_name": e["row_name"] if e["row_name"] is not None else UNKNOWN,
        "rank": e["rank"] if e["rank"] is not None else -1,
        "genre": entry["genre"] if entry is not None else UNKNOWN,
        "kind": entry["kind"] if entry is not None else UNKNOWN,
    }


def pair(key: tuple[str, str], imp: dict[str, Any], start: PlaybackEvent | None) -> Impression:
    """The join's output: the impression, and whether this record pairs it with a start."""
    del key
    return {
        "impression_id": imp["impression_id"],
        "event_time_ms": imp["event_time_ms"],
        "row_name": imp["row_name"],
        "rank": imp["rank"],
        "genre": imp["genre"],
        "kind": imp["kind"],
        "played": start is not None,
    }


PENDING = MapState[str, Impression]("pending")  # impression event_id -> verdict so far
SettleContext = ProcessContext[tuple[str, str]]


class SettleImpressions:
    """``KeyedProcessFunction`` keyed by ``(user_id, title_id)``: join output -> verdicts.

    Folds every record of one impression (by ``event_id``) into one, attributed when
    any of them is, and emits it at ``window start + SETTLE`` (see the module doc).
    """

    states: tuple[StateDescriptor, ...] = (PENDING,)

    def process(self, value: Impression, ctx: SettleContext) -> Iterable[Impression]:
        """Hold the impression's verdict until its window settles."""
        pending_state = ctx.state(PENDING)
        pending = pending_state.get()
        held = pending.get(value["impression_id"])
        if held is None:
            pending[value["impression_id"]] = value
            settle = impression_window_ms(value["event_time_ms"]) + SETTLE_MS
            ctx.timers.register_event_time(settle)
        elif value["played"] and not held["played"]:
            pending[value["impression_id"]] = {**held, "played": True}
        else:
            return []
        pending_state.set(pending)
        return []

    def on_timer(self, ts_ms: int, ctx: SettleContext) -> Iterable[Impression]:
        """Emit the verdicts of the impression window that settles at ``ts_ms``."""
        pending_state = ctx.state(PENDING)
        pending = pending_state.get()
        due = [
            (i, v)
            for i, v in pending.items()
            if impression_window_ms(v["event_time_ms"]) + SETTLE_MS == ts_ms
        ]
        for impression_id, _ in due:
            del pending[impression_id]
        if pending:
            pending_state.set(pending)
        else:
            pending_state.clear()
        return [v for _, v in sorted(due)]


class AttributionAggregate:
    """Sums verdicts into ``(impressions, attributed plays)``."""

    def create(self) -> tuple[int, int]:
        """No impressions yet."""
        return (0, 0)

    def add(self, acc: tuple[int, int], value: Impression) -> tuple[int, int]:
        """Count one impression, and its play if attributed."""
        return (acc[0] + 1, acc[1] + int(value["played"]))

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        """Add two partial counts."""
        return (a[0] + b[0], a[1] + b[1])

    def result(self, acc: tuple[int, int]) -> tuple[int, int]:
        """The counts."""
        return acc


def metric(
    group_kind: str,
    row_name: str | None,
    rank: int | None,
    genre: str | None,
    window: Window,
    counts: tuple[int, int],
) -> AttributionMetric:
    """One ``AttributionMetric``; ``window`` is the settle window (impression window + SETTLE)."""
    impressions, plays = counts
    start = window.start_ms - SETTLE_MS
    return {
        "window_start_ms": start,
        "window_end_ms": start + WINDOW_MS,
        "group_kind": group_kind,
        "row_name": row_name,
        "rank": rank,
        "genre": genre,
        "impressions": impressions,
        "attributed_plays": plays,
        "ctr": plays / impressions if impressions else 0.0,
    }


def by_row_rank(key: tuple[str, int], window: Window, counts: tuple[int, int]) -> AttributionMetric:
    """The metric of one ``(row_name, rank)``."""
    return metric("row_rank", key[0], key[1], None, window, counts)


def by_genre(key: str, window: Window, counts: tuple[int, int]) -> AttributionMetric:
    """The metric of one genre."""
    return metric("genre", None, None, key, window, counts)


def build(
    *,
    max_out_of_order: timedelta = timedelta(seconds=5),
    idle_timeout: timedelta | None = timedelta(seconds=30),
    name: str = "attribution",
) -> Job:
    """The attribution job.

    Args:
        max_out_of_order: both sources' bounded disorder (watermark lag); records
            later than that relative to the join's watermark are not counted.
        idle_timeout: processing time after which a quiet partition stops holding the
            watermark back.
        name: the job's name.
    """
    job = Job(name)
    strategy = WatermarkStrategy.bounded(max_out_of_order, idle_timeout=idle_timeout)
    interactions = job.source(
        "interactions",
        schema="InteractionEvent",
        record=InteractionEvent,
        timestamp=lambda e: e["event_time_ms"],
        watermarks=strategy,
    )
    playback = job.source(
        "playback",
        schema="PlaybackEvent",
        record=PlaybackEvent,
        timestamp=lambda e: e["event_time_ms"],
        watermarks=strategy,
    )
    catalogue = job.table(
        "title-catalogue", schema="TitleCatalogEntry", kind="global", record=TitleCatalogEntry
    )

    def title_of(e: InteractionEvent) -> str:
        title_id = e["title_id"]
        assert title_id is not None  # is_impression let only titled impressions through
        return title_id

    impressions = (
        interactions.filter(is_impression, name="impressions_only")
        .join_table(catalogue, "with_catalogue", key=title_of, how="left", output=enrich)
        .key_by("impression_user_title", lambda i: (i["user_id"], i["title_id"]))
    )
    starts = playback.filter(lambda e: e["event_type"] == "start", name="starts_only").key_by(
        "start_user_title", lambda e: (e["user_id"], e["title_id"])
    )
    joined = impressions.join(
        starts,
        "attribution_join",
        within=(timedelta(0), ATTRIBUTION_WINDOW),
        how="left",
        output=pair,
    )
    late_impressions = joined.late_left().map(
        lambda i: {"late": "impression", "event": i}, name="late_impression_shape"
    )
    late_starts = joined.late_right().map(
        lambda e: {"late": "play_start", "event": e}, name="late_start_shape"
    )
    late_impressions.merge(late_starts, name="all_late").sink("attribution-late", Json())

    verdicts = joined.process("settle_impressions", SettleImpressions())
    tumbling = windows.tumbling(WINDOW)
    per_row_rank = (
        verdicts.key_by("by_row_rank", lambda v: (v["row_name"], v["rank"]))
        .window("ctr_row_rank_5m", tumbling)
        .aggregate(AttributionAggregate(), output=by_row_rank)
    )
    per_genre = (
        verdicts.key_by("by_genre", lambda v: v["genre"])
        .window("ctr_genre_5m", tumbling)
        .aggregate(AttributionAggregate(), output=by_genre)
    )
    per_row_rank.merge(per_genre, name="all_metrics").sink(
        "attribution-metrics", Avro("AttributionMetric")
    )
    return job


job = build()
