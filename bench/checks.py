"""References and output checks of W2 (sessions), W3 (QoE), W4 (personalization) and
W6/W7 (per-key counts).

The brute-force references of the reference jobs are the ones their tests use
(``tests/unit/jobs``; W4's is restated here): they share no code with the jobs. As
in W1, only results that every implementation must have emitted by the end of the
input are compared: those that close strictly below the reference final watermark
(the minimum over input partitions of the largest event time, minus the allowed
disorder). W4 compares each user's last scores instead (see
:class:`PersonalizationReference`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.w1 import Verdict

Records = list[tuple[bytes | None, bytes | None]]
SessionKey = tuple[str, str, int]
FLOAT_TOLERANCE = 1e-9

#: The fields of an event the session and QoE references read.
SESSION_FIELDS = (
    "event_id", "user_id", "device_id", "event_time_ms", "playback_id", "event_type",
    "seek_from_ms", "position_ms", "bitrate_kbps", "title_id",
)  # fmt: skip
QOE_FIELDS = (*SESSION_FIELDS, "device_type", "country", "cdn")


def strip(value: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Only ``fields`` of an event (the references keep every event in memory)."""
    return {k: value[k] for k in fields if k in value}


def decoder(schema: str | None) -> Callable[[bytes | None], Any]:
    """``decode(bytes)`` of Avro single-object records of ``schema``, or JSON for ``None``."""
    if schema is None:
        return lambda data: None if data is None else json.loads(data)
    from connectors.codecs import codec_factory

    return codec_factory().any_decoder(schema)


def close(a: float | None, b: float | None) -> bool:
    """Equal within a relative ``FLOAT_TOLERANCE`` (both ``None`` counts as equal)."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= FLOAT_TOLERANCE * max(abs(a), abs(b))


def compare(
    expected: dict[Any, Any],
    got: dict[Any, Any],
    same: Callable[[Any, Any], bool],
    *,
    emitted: int,
    repeated: int,
    what: str,
) -> Verdict:
    """A verdict over two dicts of results (keys already limited to the compared range)."""
    missing = [k for k in expected if k not in got]
    wrong = [k for k in expected if k in got and not same(expected[k], got[k])]
    extra = [k for k in got if k not in expected]
    examples = [f"{k}: wrong" for k in wrong[:3]]
    examples += [f"{k}: missing" for k in missing[:3]]
    examples += [f"{k}: unexpected" for k in extra[:3]]
    return Verdict(
        correct=not missing and not wrong and not extra and bool(expected),
        compared=len(expected),
        missing=len(missing),
        wrong=len(wrong),
        extra=len(extra),
        emitted=emitted,
        repeated=repeated,
        examples=tuple(examples),
        what=what,
    )


# --- W2: sessions ---------------------------------------------------------------------


@dataclass
class SessionReference:
    """Every session of the input (brute force) and the final watermark."""

    gap_ms: int
    final_watermark: int
    sessions: dict[SessionKey, dict[str, Any]] = field(default_factory=dict)

    def closed(self) -> dict[SessionKey, dict[str, Any]]:
        """Sessions whose window (last event + gap) ends strictly below the final watermark."""
        return {k: v for k, v in self.sessions.items() if self.is_closed(v["session_end_ms"])}

    def is_closed(self, session_end_ms: int) -> bool:
        """Whether a session ending (last event) then has closed in every engine."""
        return session_end_ms + self.gap_ms < self.final_watermark


def session_reference(
    events: list[dict[str, Any]], gap_ms: int, final_watermark: int
) -> SessionReference:
    """The sessions of ``events`` (the sessionization test's brute force)."""
    from tests.unit.jobs.test_sessionization import reference_sessions

    return SessionReference(gap_ms, final_watermark, reference_sessions(events, gap_ms))


def same_session(want: dict[str, Any], got: dict[str, Any]) -> bool:
    """Equal summaries: every field exactly, the average bitrate within the tolerance."""
    a = {k: v for k, v in want.items() if k != "avg_bitrate_kbps"}
    b = {k: got.get(k) for k in a}
    return a == b and close(want["avg_bitrate_kbps"], got.get("avg_bitrate_kbps"))


def final_sessions(
    summaries: Iterable[dict[str, Any]], retractions: Iterable[dict[str, Any]]
) -> tuple[dict[SessionKey, dict[str, Any]], int, int]:
    """Latest revision per session key, retracted keys removed; also emitted and repeated."""
    view: dict[SessionKey, dict[str, Any]] = {}
    emitted = repeated = 0
    for v in summaries:
        emitted += 1
        key = (v["user_id"], v["device_id"], v["session_start_ms"])
        if key in view:
            repeated += 1
        if key not in view or view[key].get("revision", 0) <= v.get("revision", 0):
            view[key] = v
    for v in retractions:
        view.pop((v["user_id"], v["device_id"], v["session_start_ms"]), None)
    return view, emitted, repeated


def check_sessions(ref: SessionReference, output: str, read: dict[str, Records]) -> Verdict:
    """W2: the closed sessions of the output against the reference."""
    decode = decoder("SessionSummary" if output == "sessions-avro" else None)
    summaries = [decode(v) for _, v in read.get("sessions", []) if v is not None]
    retractions = [json.loads(v) for _, v in read.get("session-retractions", []) if v]
    view, emitted, repeated = final_sessions(summaries, retractions)
    got = {k: v for k, v in view.items() if ref.is_closed(v["session_end_ms"])}
    return compare(
        ref.closed(), got, same_session, emitted=emitted, repeated=repeated, what="sessions"
    )


# --- W3: QoE metrics ------------------------------------------------------------------


@dataclass
class QoeReference:
    """Every QoE window of the input (brute force) and the final watermark."""

    final_watermark: int
    metrics: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)

    def closed(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Windows that end strictly below the final watermark."""
        return {k: v for k, v in self.metrics.items() if self.is_closed(k[0], k[-1])}

    def is_closed(self, window_kind: str, start_ms: int) -> bool:
        """Whether a window has closed in every engine."""
        size = 60_000 if window_kind == "tumbling_1m" else 300_000
        return start_ms + size < self.final_watermark


def qoe_reference(events: list[dict[str, Any]], final_watermark: int) -> QoeReference:
    """The QoE metrics of ``events`` (the QoE test's brute force; every event counts)."""
    from tests.unit.jobs.test_qoe import facts, reference_metrics

    return QoeReference(final_watermark, reference_metrics(facts(events)))


def metric_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """The reference's key of a QoeMetric record."""
    return (
        r["window_kind"], r["group_kind"], r["title_id"], r["device_type"], r["country"],
        r["cdn"], r["window_start_ms"],
    )  # fmt: skip


def check_qoe(ref: QoeReference, output: str, read: dict[str, Records]) -> Verdict:
    """W3: the closed QoE windows of the output against the reference (the test's rules)."""
    from tests.unit.jobs.test_qoe import assert_same_metrics

    decode = decoder("QoeMetric" if output == "qoe-avro" else None)
    got: dict[tuple[Any, ...], dict[str, Any]] = {}
    emitted = repeated = 0
    for _, v in read.get("qoe-metrics", []):
        if v is None:
            continue
        r = decode(v)
        emitted += 1
        key = metric_key(r)
        repeated += key in got
        got[key] = r
    got = {k: v for k, v in got.items() if ref.is_closed(k[0], k[-1])}

    def same(want: dict[str, Any], row: dict[str, Any]) -> bool:
        try:
            assert_same_metrics([row], {metric_key(row): want})
        except AssertionError:
            return False
        return True

    return compare(ref.closed(), got, same, emitted=emitted, repeated=repeated, what="windows")


# --- W4: personalization scores -------------------------------------------------------


@dataclass(frozen=True)
class ScoreParams:
    """The personalization job's settings in W4 (the job's defaults, all durations in
    event-time ms); the reference and the hand-written loop use the same."""

    half_life_ms: int = 6 * 3_600_000
    top_n: int = 10
    abandon_after_ms: int = 5 * 60_000
    min_change: float = 0.01


W4_PARAMS = ScoreParams()

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


def personalization_catalogue(seed: int, users: int) -> tuple[Any, ...]:
    """The titles W4's input is drawn from (the generator's catalogue for the bench seed)."""
    from bench.inputs import clean_config
    from runtime.generator import catalogue

    return catalogue(clean_config(seed, users, interactions=True))


def _completion(position_ms: int, duration_ms: int) -> float:
    return min(1.0, max(0.0, position_ms / duration_ms)) if duration_ms > 0 else 0.0


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass
class _Viewer:
    contributions: list[Contribution] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    #: playback id -> [title id, latest event time, position then, stopped or failed]
    plays: dict[str, list[Any]] = field(default_factory=dict)


class PersonalizationReference:
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

    def __init__(self, titles: Iterable[Any], model: Any, params: ScoreParams = W4_PARAMS):
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
        """The task (input partition) of a user."""
        from bench.w1 import partition_of

        return partition_of(user_id.encode(), self.partitions)

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


def personalization_reference(
    seed: int, users: int, params: ScoreParams = W4_PARAMS
) -> PersonalizationReference:
    """An empty reference for W4's input of ``seed`` and ``users``, with the shipped model."""
    from jobs.personalization import Model

    return PersonalizationReference(personalization_catalogue(seed, users), Model.load(), params)


def check_personalization(
    ref: PersonalizationReference, output: str, read: dict[str, Records]
) -> Verdict:
    """W4: each user's last ``PersonalizationScore`` against the reference's final scores.

    Every user with a contribution must have a record (unless only an abandonment in
    the watermark bracket would give it one), and no other user. A record identical to
    the user's previous one (an update that changes nothing) counts as repeated.
    """
    decode = decoder("PersonalizationScore")
    last: dict[str, dict[str, Any]] = {}
    emitted = repeated = 0
    for _, v in read.get("personalization-scores", []):
        if v is None:
            continue
        r = decode(v)
        emitted += 1
        user_id = r["user_id"]
        repeated += last.get(user_id) == r
        last[user_id] = r
    expected = {
        uid: finals
        for uid, finals in ref.finals().items()
        if any(f is not None for f in finals) and (uid in last or None not in finals)
    }
    return compare(expected, last, ref.matches, emitted=emitted, repeated=repeated, what="users")


# --- W6/W7: per-key counts ------------------------------------------------------------


@dataclass(frozen=True)
class KeyedReference:
    """The keyed-state input: ``keys`` keys once each, then the first ``repeats`` again."""

    keys: int
    repeats: int


def check_keyed(ref: KeyedReference, output: str, read: dict[str, Records]) -> Verdict:
    """W6/W7: exactly one count of 2 per repeated key (state kept, nothing lost or doubled).

    At-least-once output after a crash may repeat a record: repeats of the same
    value are counted, not wrong; a count other than 2 is.
    """
    got: dict[str, int] = {}
    emitted = repeated = 0
    for _, v in read.get("counts", []):
        if v is None:
            continue
        r = json.loads(v)
        emitted += 1
        repeated += r["key"] in got
        got[r["key"]] = r["count"]
    expected = {f"k{i}": 2 for i in range(ref.repeats)}
    return compare(
        expected, got, lambda a, b: a == b, emitted=emitted, repeated=repeated, what="keys"
    )
