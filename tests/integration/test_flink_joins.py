"""Interval joins on both engines (native worker, Flink mini cluster) against brute force.

One generated input (impressions and playback starts, out of order, with late events)
goes to two topics of one partition each; one job joins impressions with the starts
of the same (user, title) twice: an inner join with no allowed lateness, and a left
join with a negative lower bound and some allowed lateness. It runs on the native
engine (one worker until its input is quiet) and on Flink (bounded source: the end of
input fires every cleanup timer).

Which records are late depends on the watermark each one arrives at, and that
depends on how the engine batched its reads (Flink's watermarks are periodic), so
each engine's late side outputs say which records it judged late. The checks:

* every record an engine judged late could be late: ``ts + lateness`` is below the
  highest watermark it could have arrived at (its own topic's records before it,
  less the disorder bound; the join's watermark is the lower of both topics');
* everything else an engine emitted equals the brute-force join
  (``tests.reference.joins``) of the records it did not judge late, event times
  included (the sink stamps each record with its event time); the native engine's
  unmatched left records as far as its watermark got;
* the pairs of records that neither engine judged late are equal on both engines.

Late records on the real engines depend on timing, so they are not counted here (the
unit tests drive them explicitly): the checks above hold whichever were late.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime import Job, Json, WatermarkStrategy
from runtime.generator import GeneratorConfig
from tests.integration.helpers import decoded, produce_generated, read_all, unique
from tests.integration.test_flink_equality import FLINK_MARKS, recent_start_ms
from tests.integration.test_flink_reference_jobs import run_both
from tests.reference.joins import Arrival, interval_join

pytestmark = FLINK_MARKS

DISORDER_MS = 5_000
MINUTE = 60_000
# name: (lower, upper, allowed lateness, how)
JOINS = {
    "attributed": (0, 10 * MINUTE, 0, "inner"),
    "outcome": (-MINUTE, 2 * MINUTE, 3_000, "left"),
}
FAR = 2**62


def key_of(e: dict[str, Any]) -> tuple[str, str]:
    return (e["user_id"], e["title_id"] or "")


def ids(key: tuple[str, str], imp: dict[str, Any], start: dict[str, Any] | None) -> Any:
    return {"imp": imp["event_id"], "start": None if start is None else start["event_id"]}


def join_job() -> Job:
    job = Job("impressions_and_starts")
    bounded = WatermarkStrategy.bounded(timedelta(milliseconds=DISORDER_MS), idle_timeout=None)
    imps = job.source(
        "interactions", schema="InteractionEvent",
        timestamp=lambda e: e["event_time_ms"], watermarks=bounded,
    ).filter(lambda e: e["event_type"] == "impression", name="impressions")  # fmt: skip
    starts = job.source(
        "playback", schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"], watermarks=bounded,
    ).filter(lambda e: e["event_type"] == "start", name="starts")  # fmt: skip
    left = imps.key_by("imp_key", key_of)
    right = starts.key_by("start_key", key_of)
    for name, (lower, upper, lateness, how) in JOINS.items():
        joined = left.join(
            right,
            name,
            within=(timedelta(milliseconds=lower), timedelta(milliseconds=upper)),
            how=how,
            allowed_lateness=timedelta(milliseconds=lateness),
            output=ids,
        )
        joined.sink(f"{name}-pairs", Json())
        joined.late_left().sink(f"{name}-late-left", Json())
        joined.late_right().sink(f"{name}-late-right", Json())
    return job


def arrival_bounds(kafka: str, topic: str, schema: str) -> dict[str, tuple[int, int]]:
    """Per event id of ``topic`` (one partition): its event time and the highest
    watermark it can arrive at (the records before it, less the disorder bound)."""
    messages = sorted(read_all(kafka, topic), key=lambda m: m.offset())
    seen = -FAR
    out = {}
    for value in decoded(messages, schema):
        out[value["event_id"]] = (value["event_time_ms"], seen - DISORDER_MS)
        seen = max(seen, value["event_time_ms"])
    return out


def test_interval_joins_on_both_engines_equal_brute_force(kafka: str, tmp_path: Path) -> None:
    interactions, playback = unique("fj-interactions"), unique("fj-playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(interactions, 1), TopicSpec(playback, 1)])
    config = GeneratorConfig(
        start_ms=recent_start_ms(), seed=29, users=15, titles=8, interaction_ratio=0.5,
        out_of_order_ms=3_000, out_of_order_rate=0.1, late_rate=0.03,
        late_delay_ms=(20_000, 120_000), duplicate_rate=0.0, malformed_rate=0.0,
        bad_timestamp_rate=0.0,
    )  # fmt: skip
    sent = produce_generated(
        kafka, {"interactions": interactions, "playback": playback}, config, 3_000
    )
    sinks = [f"{n}{s}" for n in JOINS for s in ("-pairs", "-late-left", "-late-right")]
    sources = {"interactions": interactions, "playback": playback}
    _, native, flink = run_both(kafka, tmp_path, join_job(), sources, sinks)

    lefts = {r.value["event_id"]: r.value for r in sent if r.value["event_type"] == "impression"}
    rights = {r.value["event_id"]: r.value for r in sent if r.value["event_type"] == "start"}
    bounds = {
        **arrival_bounds(kafka, interactions, "InteractionEvent"),
        **arrival_bounds(kafka, playback, "PlaybackEvent"),
    }
    matched: dict[str, dict[str, Counter[Any]]] = {}
    late_by: dict[str, dict[str, tuple[Counter[str], ...]]] = {}
    for engine, out in (("native", native), ("flink", flink)):
        assert not out["dead-letters"], engine
        matched[engine], late_by[engine] = {}, {}
        for name, (lower, upper, lateness, how) in JOINS.items():
            late = tuple(
                Counter(e["event_id"] for e in decoded(out[f"{name}-late-{side}"], ""))
                for side in ("left", "right")
            )
            for side_late in late:
                for event_id in side_late:
                    ts, highest = bounds[event_id]
                    assert ts + lateness < highest, (engine, name, event_id, "cannot be late")
            sides = (("left", lefts, late[0]), ("right", rights, late[1]))
            arrivals = [
                Arrival(side, key_of(e), e["event_time_ms"], event_id,
                        FAR if event_id in side_late else -FAR)
                for side, values, side_late in sides
                for event_id, e in values.items()
            ]  # fmt: skip
            want = interval_join(arrivals, lower, upper, lateness, how)
            messages = out[f"{name}-pairs"]
            got = Counter(
                (v["imp"], v["start"], m.timestamp()[1])
                for v, m in zip(decoded(messages, ""), messages, strict=True)
            )
            want_pairs = Counter({(p[1], p[2], p[3]): n for p, n in want.pairs.items()})
            pairs = Counter({p: n for p, n in got.items() if p[1] is not None})
            assert pairs == Counter({p: n for p, n in want_pairs.items() if p[1] is not None}), (
                engine,
                name,
            )
            unmatched = got - pairs
            want_unmatched = want_pairs - Counter({p: n for p, n in want_pairs.items() if p[1]})
            if engine == "flink":
                assert unmatched == want_unmatched, name  # the end of input fires them all
            else:
                assert unmatched <= want_unmatched, name  # as far as its watermark got
            if how == "left":
                assert len(unmatched) > (10 if engine == "flink" else 0), (engine, name)
            assert len(pairs) > 20, (engine, name)
            matched[engine][name] = pairs
            late_by[engine][name] = late
    for name in JOINS:
        # The pairs of records neither engine judged late are the same on both.
        late_anywhere = {i for engine in late_by for side in late_by[engine][name] for i in side}

        def on_time(pairs: Counter[Any], late: set[str] = late_anywhere) -> Counter[Any]:
            return Counter({p: n for p, n in pairs.items() if not {p[0], p[1]} & late})

        both = on_time(matched["native"][name])
        assert both == on_time(matched["flink"][name]), name
        assert len(both) > 20, name
    could_be_late = [i for i, (ts, highest) in bounds.items() if ts < highest]
    assert could_be_late, "the input has no record that could be late"
