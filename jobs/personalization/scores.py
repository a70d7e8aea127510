"""The keyed ``process()`` step: decayed engagement per user, model scores, top-N output.

State of one user (all keyed by user id):

* ``clock``: ``[landmark_ms, now_ms, next_prune_ms]``. ``now_ms`` is the latest event
  time of a contributing event (or abandonment) of the user: the time scores are
  evaluated at and the record's ``updated_ms``.
* ``genres`` / ``titles``: engagement per genre and per title, stored with *forward
  decay*: an amount ``a`` at event time ``t`` is stored as ``a * 2**((t - landmark) /
  half_life)`` and summed; the decayed value at ``now`` is the sum times
  ``2**(-(now - landmark) / half_life)``. This equals ``sum a_i * 2**(-(now - t_i) /
  half_life)`` whatever order the events arrive in, so out-of-order and late events
  count exactly as if they had come in order, and an update touches one entry. When
  the scale would grow past ``2**RELANDMARK_HALF_LIVES`` the landmark moves to the
  newest time and every entry is rescaled once.
* ``seen``: ids of contributing events (for duplicates), pruned once they are older
  than ``dedup_horizon`` behind ``now_ms``; a copy delivered later than that counts twice.
* ``plays``: per playback ``[title_id, last_ms, last_position_ms, status, amount]``
  for abandonment; status open, ended (``stop``/``error`` seen) or abandoned (its
  ``amount`` applied at ``last_ms``). A later event of an abandoned playback retracts the
  abandonment (subtracts the same amount) and reopens it. Entries are dropped
  ``play_retention`` of event time after their last event; an event of that playback
  arriving later than that starts a new entry.
* ``last``: the last record emitted.

A record is emitted when, after a contributing event or an abandonment, the top-N
title ids (in order) differ from the last emitted record, or any of their scores
moved by more than ``min_change``, or any genre affinity moved by more than
``min_change * max(1, |previous|)``; a user's first contributing event always emits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jobs.personalization.catalogue import Catalogue
from jobs.personalization.model import Scorer
from jobs.personalization.signals import SignalWeights, completion_ratio
from runtime import MapState, ProcessContext, StateDescriptor, ValueState

__all__ = ["RELANDMARK_HALF_LIVES", "PersonalizationFunction", "ScoreSettings"]

#: Forward-decay scale limit, in half-lives past the landmark (2**60 ~ 1e18).
RELANDMARK_HALF_LIVES = 60

_OPEN, _ENDED, _ABANDONED = 0, 1, 2
_TITLE, _LAST_T, _LAST_POS, _STATUS, _AMOUNT = range(5)

#: A user's emitted scores: the top titles (id, score, genre) and the genre affinities.
Scores = tuple[list[tuple[str, float, str]], dict[str, float]]
#: Keyed by user id.
UserContext = ProcessContext[str]

CLOCK = ValueState[list[int] | None]("clock")  # [landmark, latest time, next prune]
GENRES = MapState[str, float]("genres")  # genre -> engagement (scaled to the landmark)
TITLES = MapState[str, float]("titles")  # title id -> engagement (scaled to the landmark)
SEEN = MapState[str, int]("seen")  # contributing event id -> its event time
PLAYS = MapState[str, list[Any]]("plays")  # playback id -> [title, last t, position, ...]
LAST = ValueState[Scores | None]("last")  # the last emitted scores


@dataclass(frozen=True, slots=True)
class ScoreSettings:
    """Tuning of the scoring step, all durations in event-time milliseconds."""

    half_life_ms: int
    top_n: int
    abandon_after_ms: int
    play_retention_ms: int
    dedup_horizon_ms: int
    min_change: float
    weights: SignalWeights


class PersonalizationFunction:
    """Keyed by user: turns playback and interaction events into ``PersonalizationScore``.

    Args:
        settings: half-life, top N, abandonment and change thresholds.
        scorer: the model applied to the catalogue.
    """

    states: tuple[StateDescriptor, ...] = (
        CLOCK, GENRES, TITLES, SEEN, PLAYS, LAST,
    )  # fmt: skip

    def __init__(self, settings: ScoreSettings, scorer: Scorer) -> None:
        self.settings = settings
        self.scorer = scorer
        self.catalogue: Catalogue = scorer.catalogue

    # -- records --------------------------------------------------------------------
    def process(self, value: dict[str, Any], ctx: UserContext) -> Iterable[dict[str, Any]]:
        """Fold one event into the user's engagement; emit if the scores changed."""
        if "playback_id" in value:
            changed = self._playback(value, ctx)
        else:
            changed = self._interaction(value, ctx)
        return self._emit_if_changed(ctx) if changed else ()

    def _interaction(self, e: dict[str, Any], ctx: UserContext) -> bool:
        title_id = e["title_id"]
        amount = self.settings.weights.interaction(e["event_type"], e["rating"])
        if title_id is None or amount == 0.0 or not self._first_time(e, ctx):
            return False
        genre = e["genre"]
        if genre is None:
            title = self.catalogue.get(title_id)
            genre = title.genre if title is not None else None
        self._add(ctx, amount, e["event_time_ms"], title_id, genre)
        return True

    def _playback(self, e: dict[str, Any], ctx: UserContext) -> bool:
        title = self.catalogue.get(e["title_id"])
        if title is None:
            return False  # no genre and no duration: nothing to score it by
        s = self.settings
        t, kind = e["event_time_ms"], e["event_type"]
        changed = self._track_play(e, title.title_id, title.genre, ctx)
        if kind == "start":
            amount = s.weights.play_start
        elif kind == "stop":
            amount = s.weights.stop(completion_ratio(e["position_ms"], title.duration_ms))
        else:
            return changed
        if amount != 0.0 and self._first_time(e, ctx):
            self._add(ctx, amount, t, title.title_id, title.genre)
            changed = True
        return changed

    def _track_play(
        self, e: dict[str, Any], title_id: str, genre: str, ctx: UserContext
    ) -> bool:
        """Update the playback's abandonment entry; True if an abandonment was retracted."""
        s = self.settings
        handle = ctx.state(PLAYS)
        plays = handle.get()
        pid, t = e["playback_id"], e["event_time_ms"]
        entry = plays.get(pid)
        retracted = False
        if entry is None:
            entry = [title_id, t, e["position_ms"], _OPEN, 0.0]
        elif entry[_STATUS] == _ENDED:
            return False
        elif t > entry[_LAST_T]:
            if entry[_STATUS] == _ABANDONED:
                self._add(ctx, -entry[_AMOUNT], entry[_LAST_T], title_id, genre)
                entry[_STATUS], entry[_AMOUNT] = _OPEN, 0.0
                retracted = True
            entry[_LAST_T], entry[_LAST_POS] = t, e["position_ms"]
        if e["event_type"] in ("stop", "error"):
            if entry[_STATUS] == _ABANDONED:
                self._add(ctx, -entry[_AMOUNT], entry[_LAST_T], title_id, genre)
                retracted = True
            entry[_STATUS], entry[_AMOUNT] = _ENDED, 0.0
            ctx.timers.register_event_time(entry[_LAST_T] + s.play_retention_ms)
        elif entry[_STATUS] == _OPEN:
            ctx.timers.register_event_time(entry[_LAST_T] + s.abandon_after_ms)
        plays[pid] = entry
        handle.set(plays)
        return retracted

    def _first_time(self, e: dict[str, Any], ctx: UserContext) -> bool:
        """Remember a contributing event's id; False if it was seen before (a duplicate)."""
        handle = ctx.state(SEEN)
        seen = handle.get()
        event_id = e["event_id"]
        if event_id in seen:
            return False
        seen[event_id] = e["event_time_ms"]
        handle.set(seen)
        return True

    # -- timers ---------------------------------------------------------------------
    def on_timer(self, ts_ms: int, ctx: UserContext) -> Iterable[dict[str, Any]]:
        """Declare playbacks quiet since ``abandon_after`` abandoned; drop old entries."""
        s = self.settings
        handle = ctx.state(PLAYS)
        plays = handle.get()
        abandoned = False
        for pid, entry in list(plays.items()):
            if entry[_STATUS] == _OPEN:
                if entry[_LAST_T] + s.abandon_after_ms <= ts_ms:
                    title = self.catalogue.get(entry[_TITLE])
                    assert title is not None  # only catalogue titles are tracked
                    ratio = completion_ratio(entry[_LAST_POS], title.duration_ms)
                    amount = s.weights.abandoned(ratio)
                    entry[_STATUS], entry[_AMOUNT] = _ABANDONED, amount
                    self._add(ctx, amount, entry[_LAST_T], title.title_id, title.genre)
                    ctx.timers.register_event_time(entry[_LAST_T] + s.play_retention_ms)
                    abandoned = True
            elif entry[_LAST_T] + s.play_retention_ms <= ts_ms:
                del plays[pid]
        handle.set(plays)
        return self._emit_if_changed(ctx) if abandoned else ()

    # -- decayed sums ---------------------------------------------------------------
    def _add(
        self, ctx: UserContext, amount: float, t: int, title_id: str, genre: str | None
    ) -> None:
        """Add ``amount`` at event time ``t`` to the title's and the genre's engagement."""
        h = self.settings.half_life_ms
        clock_handle = ctx.state(CLOCK)
        clock = clock_handle.get()
        if clock is None:
            clock = [t, t, t + self.settings.dedup_horizon_ms]
        landmark = clock[0]
        titles_handle, genres_handle = ctx.state(TITLES), ctx.state(GENRES)
        titles, genres = titles_handle.get(), genres_handle.get()
        rescaled = t - landmark > RELANDMARK_HALF_LIVES * h
        if rescaled:
            factor = 2.0 ** (-(t - landmark) / h)
            titles = {k: v * factor for k, v in titles.items()}
            genres = {k: v * factor for k, v in genres.items()}
            landmark = clock[0] = t
        w = amount * 2.0 ** ((t - landmark) / h)
        titles[title_id] = titles.get(title_id, 0.0) + w
        titles_handle.set(titles)
        if genre is not None:
            genres[genre] = genres.get(genre, 0.0) + w
        if genre is not None or rescaled:
            genres_handle.set(genres)
        if t > clock[1]:
            clock[1] = t
        if clock[1] >= clock[2]:
            self._prune_seen(ctx, clock[1] - self.settings.dedup_horizon_ms)
            clock[2] = clock[1] + self.settings.dedup_horizon_ms
        clock_handle.set(clock)

    def _prune_seen(self, ctx: UserContext, older_than_ms: int) -> None:
        handle = ctx.state(SEEN)
        seen = handle.get()
        handle.set({k: t for k, t in seen.items() if t >= older_than_ms})

    # -- output ---------------------------------------------------------------------
    def _emit_if_changed(self, ctx: UserContext) -> list[dict[str, Any]]:
        s = self.settings
        clock = ctx.state(CLOCK).get()
        if clock is None:  # not reached: a contribution set the clock before any emission
            return []
        landmark, now = clock[:2]
        factor = 2.0 ** (-(now - landmark) / s.half_life_ms)
        genres = {g: v * factor for g, v in ctx.state(GENRES).get().items()}
        titles = {t: v * factor for t, v in ctx.state(TITLES).get().items()}
        top = self.scorer.top(genres, titles, s.top_n)
        last_handle = ctx.state(LAST)
        if not _changed(last_handle.get(), top, genres, s.min_change):
            return []
        last_handle.set((top, genres))
        return [
            {
                "user_id": ctx.key,
                "updated_ms": now,
                "model_version": self.scorer.model.version,
                "top_titles": [{"title_id": t, "score": p, "genre": g} for t, p, g in top],
                "genre_affinity": genres,
            }
        ]


def _changed(
    last: Scores | None,
    top: list[tuple[str, float, str]],
    genres: dict[str, float],
    eps: float,
) -> bool:
    """Whether ``top`` and ``genres`` differ enough from the last emitted record."""
    if last is None:
        return True
    last_top, last_genres = last
    if [t for t, _, _ in top] != [t for t, _, _ in last_top]:
        return True
    if any(abs(p - q) > eps for (_, p, _), (_, q, _) in zip(top, last_top, strict=True)):
        return True
    if genres.keys() != last_genres.keys():
        return True
    return any(
        abs(v - last_genres[g]) > eps * max(1.0, abs(last_genres[g])) for g, v in genres.items()
    )
