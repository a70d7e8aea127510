"""The personalization job's references: every record it emits, and every user's final
scores.

Both keep each contributing event of a user as ``(amount, t, title, genre)`` and
recompute from scratch the decayed sums ``sum amount * 2**(-(T - t) / half_life)``,
the model's features and score of every catalogue title and the top N, from the
signal table of the job's documentation (restated below, not imported).

* :class:`EmissionReference` replays what a job received, in the order it received
  it, and applies the emission rule: the records it must emit, in order (the job's
  unit and integration tests).
* :class:`FinalScoresReference` needs no order: each user's final scores, which a
  user's *last* record must show whatever order the job read its topics in (the
  bench's W4 check).
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: the reference runs none of the job's code
    from jobs.personalization import Catalogue, Model

# The settings the job's tests run it with (its defaults are longer).
HALF_LIFE_MS = 30 * 60_000
GAP_MS = 5 * 60_000  # abandon_after
TOP_N = 5
MIN_CHANGE = 0.01
FLOAT_TOLERANCE = 1e-9

# The signal table of the job's documentation, restated: the amount per interaction
# type; a rating adds one per star above three, a playback start 0.5, a stop
# 2 x completion, an abandonment 2 x completion - 1 (dated at the playback's last event).
INTERACTION_AMOUNT = {
    "impression": 0.05, "hover": 0.3, "play_intent": 1.0, "add_to_list": 2.0,
    "remove_from_list": -1.0, "thumbs_up": 3.0, "thumbs_down": -3.0,
}  # fmt: skip

#: (amount, event time, title id, genre) of one event that moved a user's engagement.
Contribution = tuple[float, int, str, str | None]
#: A user's scores: evaluated at ``now``; genre affinities; top titles (id, score, genre).
FinalScores = tuple[int, dict[str, float], list[tuple[str, float, str]]]


def _completion(position_ms: int, duration_ms: int) -> float:
    """How much of a title a position is, between 0 and 1."""
    return min(1.0, max(0.0, position_ms / duration_ms)) if duration_ms > 0 else 0.0


def _sigmoid(z: float) -> float:
    """The logistic function, without overflow for large ``|z|``."""
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


# --- every record, in order ---------------------------------------------------------


@dataclass
class _User:
    contributions: list[tuple[float, int, str, str | None]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    plays: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: int | None = None
    last: tuple[list[str], list[float], dict[str, float]] | None = None


class EmissionReference:
    """Every record the job emits, by brute force over what was received, in the order
    it was received (``receive``, then ``watermark`` after each batch); ``out`` holds
    them per user."""

    def __init__(self, cat: Catalogue, model: Model, top_n: int = TOP_N) -> None:
        self.cat = cat
        self.model = model
        self.top_n = top_n
        self.users: dict[str, _User] = defaultdict(_User)
        self.out: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def _contribute(
        self, user: _User, amount: float, t: int, title: str, genre: str | None
    ) -> None:
        user.contributions.append((amount, t, title, genre))
        user.now = t if user.now is None else max(user.now, t)

    def receive(self, stream: str, e: dict[str, Any]) -> None:
        uid, t = e["user_id"], e["event_time_ms"]
        user = self.users[uid]
        if stream == "interactions":
            kind = e["event_type"]
            if kind == "rating":
                amount = (e["rating"] - 3) * 1.0
            else:
                amount = INTERACTION_AMOUNT.get(kind, 0.0)
            if e["title_id"] is None or amount == 0.0 or e["event_id"] in user.seen:
                return
            user.seen.add(e["event_id"])
            self._contribute(user, amount, t, e["title_id"], e["genre"])
            self.evaluate(uid)
            return
        title = self.cat.get(e["title_id"])
        if title is None:
            return
        play = user.plays.setdefault(
            e["playback_id"], {"title": title, "events": [], "ended": False, "declared": None}
        )
        changed = False
        declared = play["declared"]
        if declared is not None and (e["event_type"] in ("stop", "error") or t > declared[0]):
            # a sign of life after the abandonment was declared: take it back
            amount_t, amount = declared
            self._contribute(user, -amount, amount_t, title.title_id, title.genre)
            play["declared"] = None
            changed = True
        play["events"].append((t, e["position_ms"]))
        if e["event_type"] in ("stop", "error"):
            play["ended"] = True
        if e["event_type"] in ("start", "stop") and e["event_id"] not in user.seen:
            user.seen.add(e["event_id"])
            if e["event_type"] == "start":
                amount = 0.5
            else:
                amount = 2.0 * _completion(e["position_ms"], title.duration_ms)
            if amount != 0.0:
                self._contribute(user, amount, t, title.title_id, title.genre)
                changed = True
        if changed:
            self.evaluate(uid)

    def watermark(self, wm: int, users: set[str] | None = None) -> None:
        """Declare abandonments due at ``wm`` (of ``users``), in (deadline, user) order."""
        due = []
        for uid, user in self.users.items():
            if users is not None and uid not in users:
                continue
            for play in user.plays.values():
                if play["ended"] or play["declared"] is not None or not play["events"]:
                    continue
                last_t, last_pos = max(play["events"])
                if last_t + GAP_MS <= wm:
                    due.append((last_t + GAP_MS, uid, play, last_t, last_pos))
        groups: dict[tuple[int, str], list[Any]] = defaultdict(list)
        for deadline, uid, play, last_t, last_pos in due:
            groups[(deadline, uid)].append((play, last_t, last_pos))
        for deadline, uid in sorted(groups):
            for play, last_t, last_pos in groups[(deadline, uid)]:
                title = play["title"]
                amount = 2.0 * _completion(last_pos, title.duration_ms) - 1.0
                play["declared"] = (last_t, amount)
                self._contribute(self.users[uid], amount, last_t, title.title_id, title.genre)
            self.evaluate(uid)

    def state(self, uid: str) -> tuple[int, dict[str, float], dict[str, float]]:
        user = self.users[uid]
        assert user.now is not None
        genres: dict[str, float] = defaultdict(float)
        titles: dict[str, float] = defaultdict(float)
        for amount, t, title, genre in user.contributions:
            decayed = amount * 2.0 ** (-(user.now - t) / HALF_LIFE_MS)
            titles[title] += decayed
            if genre is not None:
                genres[genre] += decayed
        return user.now, dict(genres), dict(titles)

    def top(self, genres: dict[str, float], titles: dict[str, float]) -> list[tuple[str, float]]:
        w = self.model.weights
        total = sum(max(v, 0.0) for v in genres.values())
        scored = []
        for title in self.cat.titles:
            g = max(genres.get(title.genre, 0.0), 0.0)
            x = (1.0, g / (1.0 + total), math.log1p(g), math.asinh(titles.get(title.title_id, 0.0)),
                 math.log(title.popularity))  # fmt: skip
            z = sum(a * b for a, b in zip(w, x, strict=True))
            scored.append((-z, title.title_id, 1.0 / (1.0 + math.exp(-z))))
        scored.sort()
        return [(tid, p) for _, tid, p in scored[: self.top_n]]

    def evaluate(self, uid: str) -> None:
        now, genres, titles = self.state(uid)
        top = self.top(genres, titles)
        ids, scores = [t for t, _ in top], [p for _, p in top]
        user = self.users[uid]
        last = user.last
        if last is not None and last[0] == ids and last[2].keys() == genres.keys():
            moved = any(abs(a - b) > MIN_CHANGE for a, b in zip(scores, last[1], strict=True))
            moved = moved or any(
                abs(v - last[2][g]) > MIN_CHANGE * max(1.0, abs(last[2][g]))
                for g, v in genres.items()
            )
            if not moved:
                return
        user.last = (ids, scores, genres)
        self.out[uid].append({"updated_ms": now, "ids": ids, "scores": scores, "affinity": genres})


# --- every user's final scores ------------------------------------------------------


class ScoreSettings(Protocol):
    """The job's settings :class:`FinalScoresReference` needs (durations in event-time ms)."""

    @property
    def half_life_ms(self) -> int: ...
    @property
    def top_n(self) -> int: ...
    @property
    def abandon_after_ms(self) -> int: ...
    @property
    def min_change(self) -> float: ...


@dataclass
class _Viewer:
    contributions: list[Contribution] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    #: playback id -> [title id, latest event time, position then, stopped or failed]
    plays: dict[str, list[Any]] = field(default_factory=dict)


class FinalScoresReference:
    """Every user's final scores over the whole input, by brute force.

    The job's records depend on the order it reads the two topics in; a user's *last*
    record does not: after it, nothing moved the top N or a score by more than
    ``min_change`` (else another record would follow). So its titles are the final top
    N in order, and its scores and genre affinities are within ``min_change`` of the
    final ones (affinities relative to ``max(1, |value|)``).

    Final here means over every contribution (each event id once), decayed from
    scratch to the user's latest contribution time, plus an abandonment (dated at its
    last event) for every playback without ``stop`` or ``error`` whose last event plus
    ``abandon_after`` the final watermark of its task has reached. Both topics are
    keyed by user with as many partitions, so a task is a partition number, and its
    final watermark lies between the smaller and the larger of its two partitions'
    largest event times, minus the disorder bound (an engine stops letting a partition
    that went quiet hold the watermark back). Playbacks whose deadline falls in that
    bracket may or may not have been declared abandoned: any such set that a single
    watermark gives (those due by one deadline) is accepted.

    Args:
        titles: the catalogue (objects with ``title_id``, ``genre``, ``duration_ms``,
            ``popularity``).
        model: the scoring model (``weights`` in the job's feature order, ``version``).
        params: the job's settings.
    """

    def __init__(self, titles: Iterable[Any], model: Any, params: ScoreSettings):
        self.params = params
        self.titles = {t.title_id: t for t in titles}
        self.weights = tuple(float(w) for w in model.weights)
        self.version = str(model.version)
        self.viewers: dict[str, _Viewer] = defaultdict(_Viewer)
        self.partitions = 1
        #: Task -> (lowest, highest) final watermark.
        self.brackets: dict[int, tuple[int, int]] = {}
        self._finals: dict[str, list[FinalScores | None]] | None = None

    def receive(self, stream: str, e: dict[str, Any]) -> None:
        """Fold one event of ``stream`` (``playback`` or ``interactions``)."""
        viewer = self.viewers[e["user_id"]]
        t, kind, title_id = e["event_time_ms"], e["event_type"], e["title_id"]
        if stream == "interactions":
            if kind == "rating":
                amount = 0.0 if e["rating"] is None else float(e["rating"] - 3)
            else:
                amount = INTERACTION_AMOUNT.get(kind, 0.0)
            if title_id is None or amount == 0.0 or e["event_id"] in viewer.seen:
                return
            viewer.seen.add(e["event_id"])
            genre = e["genre"]
            if genre is None and title_id in self.titles:
                genre = self.titles[title_id].genre
            viewer.contributions.append((amount, t, title_id, genre))
            return
        title = self.titles.get(title_id)
        if title is None:
            return  # neither genre nor duration: the job does not score it
        play = viewer.plays.setdefault(e["playback_id"], [title_id, t, e["position_ms"], False])
        if not play[3] and t > play[1]:
            play[1], play[2] = t, e["position_ms"]
        if kind in ("stop", "error"):
            play[3] = True
        if kind in ("start", "stop") and e["event_id"] not in viewer.seen:
            viewer.seen.add(e["event_id"])
            if kind == "start":
                amount = 0.5
            else:
                amount = 2.0 * _completion(e["position_ms"], title.duration_ms)
            if amount != 0.0:
                viewer.contributions.append((amount, t, title_id, title.genre))

    def close(self, partition_max: dict[str, list[int]], bound_ms: int) -> None:
        """Bracket each task's final watermark by the largest event time of its partitions.

        Args:
            partition_max: per input topic, the largest event time of each partition.
            bound_ms: the allowed disorder of the job's watermarks.
        """
        per_topic = list(partition_max.values())
        self.partitions = len(per_topic[0])
        for p in range(self.partitions):
            times = [ts[p] for ts in per_topic]
            self.brackets[p] = (min(times) - bound_ms, max(times) - bound_ms)
        self._finals = None

    def task_of(self, user_id: str) -> int:
        """The task (input partition) of a user: CRC-32 of the key, the partitioner the
        bench writes with (librdkafka's default)."""
        return zlib.crc32(user_id.encode()) % self.partitions

    def finals(self) -> dict[str, list[FinalScores | None]]:
        """Per user, every acceptable final state (``None``: no contribution at all)."""
        if self._finals is None:
            self._finals = {uid: self._candidates(uid) for uid in self.viewers}
        return self._finals

    def _candidates(self, user_id: str) -> list[FinalScores | None]:
        viewer = self.viewers[user_id]
        low, high = self.brackets[self.task_of(user_id)]
        sure: list[Contribution] = []
        maybe: dict[int, list[Contribution]] = defaultdict(list)
        for title_id, last_t, position, ended in viewer.plays.values():
            deadline = last_t + self.params.abandon_after_ms
            if ended or deadline > high:
                continue
            title = self.titles[title_id]
            amount = 2.0 * _completion(position, title.duration_ms) - 1.0
            (sure if deadline <= low else maybe[deadline]).append(
                (amount, last_t, title_id, title.genre)
            )
        chosen = viewer.contributions + sure
        out = [self.scores(chosen)]
        for deadline in sorted(maybe):
            chosen = chosen + maybe[deadline]
            out.append(self.scores(chosen))
        return out

    def scores(self, contributions: list[Contribution]) -> FinalScores | None:
        """The scores after ``contributions`` (``None`` without any)."""
        if not contributions:
            return None
        now = max(t for _, t, _, _ in contributions)
        h = self.params.half_life_ms
        genres: dict[str, float] = defaultdict(float)
        titles: dict[str, float] = defaultdict(float)
        for amount, t, title_id, genre in contributions:
            decayed = amount * 2.0 ** (-(now - t) / h)
            titles[title_id] += decayed
            if genre is not None:
                genres[genre] += decayed
        return now, dict(genres), self.top(genres, titles)

    def top(
        self, genres: dict[str, float], titles: dict[str, float]
    ) -> list[tuple[str, float, str]]:
        """The best ``top_n`` titles (ties by title id) with the model's score.

        The model's features: 1, ``max(G, 0) / (1 + sum of positive G)``,
        ``log(1 + max(G, 0))``, ``asinh(E)``, ``log(popularity)`` for genre engagement
        ``G`` of the title's genre and title engagement ``E``; the score is the sigmoid
        of their weighted sum.
        """
        w_bias, w_share, w_log, w_title, w_pop = self.weights
        total = sum(v for v in genres.values() if v > 0.0)
        ranked = []
        for title in self.titles.values():
            g = max(genres.get(title.genre, 0.0), 0.0)
            z = (
                w_bias
                + w_share * g / (1.0 + total)
                + w_log * math.log1p(g)
                + w_title * math.asinh(titles.get(title.title_id, 0.0))
                + w_pop * math.log(title.popularity)
            )
            ranked.append((-z, title.title_id, title.genre))
        ranked.sort()
        return [
            (title_id, _sigmoid(-z), genre) for z, title_id, genre in ranked[: self.params.top_n]
        ]

    def same(self, want: FinalScores, got: dict[str, Any]) -> bool:
        """Whether a user's last record ``got`` shows the final state ``want``."""
        now, genres, top = want
        tol = self.params.min_change + FLOAT_TOLERANCE
        titles = got["top_titles"]
        if got["model_version"] != self.version or got["updated_ms"] > now:
            return False
        if [(x["title_id"], x["genre"]) for x in titles] != [(t, g) for t, _, g in top]:
            return False
        if any(abs(x["score"] - s) > tol for x, (_, s, _) in zip(titles, top, strict=True)):
            return False
        affinity = got["genre_affinity"]
        return affinity.keys() == genres.keys() and all(
            abs(v - genres[g]) <= tol * max(1.0, abs(v)) for g, v in affinity.items()
        )

    def matches(self, candidates: list[FinalScores | None], got: dict[str, Any]) -> bool:
        """Whether ``got`` shows any acceptable final state."""
        return any(c is not None and self.same(c, got) for c in candidates)
