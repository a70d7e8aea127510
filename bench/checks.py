"""References and output checks of W2 (sessions), W3 (QoE), W4 (personalization) and
W6/W7 (per-key counts).

The brute-force references of the reference jobs are the ones their tests use
(``tests/reference``, the only part of ``tests`` the bench imports): they share no
code with the jobs. As in W1, only results that every implementation must have
emitted by the end of the input are compared: those that close strictly below the
reference final watermark (the minimum over input partitions of the largest event
time, minus the allowed disorder). W4 compares each user's last scores instead (see
``tests.reference.personalization.FinalScoresReference``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.w1 import Verdict

if TYPE_CHECKING:
    from tests.reference.personalization import FinalScoresReference

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
    from tests.reference.sessionization import reference_sessions

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
    from tests.reference.qoe import facts, reference_metrics

    return QoeReference(final_watermark, reference_metrics(facts(events)))


def metric_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """The reference's key of a QoeMetric record."""
    return (
        r["window_kind"], r["group_kind"], r["title_id"], r["device_type"], r["country"],
        r["cdn"], r["window_start_ms"],
    )  # fmt: skip


def check_qoe(ref: QoeReference, output: str, read: dict[str, Records]) -> Verdict:
    """W3: the closed QoE windows of the output against the reference (the test's rules)."""
    from tests.reference.qoe import assert_same_metrics

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


def personalization_catalogue(seed: int, users: int) -> tuple[Any, ...]:
    """The titles W4's input is drawn from (the generator's catalogue for the bench seed)."""
    from bench.inputs import clean_config
    from runtime.generator import catalogue

    return catalogue(clean_config(seed, users, interactions=True))


def personalization_reference(
    seed: int, users: int, params: ScoreParams = W4_PARAMS
) -> FinalScoresReference:
    """An empty reference for W4's input of ``seed`` and ``users``, with the shipped model
    (``tests.reference.personalization.FinalScoresReference``)."""
    from jobs.personalization import Model
    from tests.reference.personalization import FinalScoresReference

    return FinalScoresReference(personalization_catalogue(seed, users), Model.load(), params)


def check_personalization(
    ref: FinalScoresReference, output: str, read: dict[str, Records]
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
