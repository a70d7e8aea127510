"""QoE, personalization and playback health on both engines, against brute force.

Each test produces one generated input to the real broker, runs the job on the
native engine (one worker until its input is quiet) and on Flink (a local mini
cluster, bounded source: the end of input moves event time to the end, so every
window and timer fires), and compares both outputs with the job's brute-force
reference: the native engine's as far as its final watermark got, Flink's in full.
Records both engines emitted must be equal, and both write the same message keys.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.api.watermarks import DEFAULT_MIN_VALID_MS
from runtime.composition import FLINK_CONNECTORS
from runtime.engine.worker import Worker
from runtime.flink import run_on_flink
from runtime.generator import Degradation, GeneratedRecord, GeneratorConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
)
from tests.integration.test_flink_equality import FLINK_MARKS, options, recent_start_ms

pytestmark = FLINK_MARKS

PARTITIONS = 4
LONG_MAX = 2**63 - 1


def run_both(
    kafka: str, tmp_path: Path, job: Job, sources: dict[str, str], sinks: list[str]
) -> tuple[Worker, dict[str, list[Any]], dict[str, list[Any]]]:
    """Run ``job`` on both engines over the same source topics, each into its own sinks
    (``sinks`` plus ``dead-letters``); return the native worker and every sink's messages
    per engine."""
    outputs: list[dict[str, list[Any]]] = []
    worker: Worker | None = None
    for engine in ("native", "flink"):
        topics = {name: unique(f"{engine}-{name}") for name in [*sinks, "dead-letters"]}
        binds = [f"{n}={t}" for n, t in {**sources, **topics}.items()]
        bindings = Bindings.for_job(job, binds)
        if engine == "native":
            worker = run_job_until_idle(kafka, job, bindings, idle_s=6.0)
        else:
            run = run_on_flink(
                job, bindings, options(kafka, tmp_path), connectors=FLINK_CONNECTORS
            )
            assert run.status == "FINISHED"
        outputs.append({n: read_all(kafka, t, first_wait_s=10) for n, t in topics.items()})
    assert worker is not None
    return worker, outputs[0], outputs[1]


def key_of(message: Any) -> str | None:
    key = message.key()
    return None if key is None else bytes(key).decode()


def valid_events(sent: list[GeneratedRecord], stream: str | None = None) -> list[Any]:
    """Decodable records with a plausible event time (the rest are dead letters)."""
    now_ms = time.time_ns() // 1_000_000
    return [
        r
        for r in sent
        if r.corrupt is None
        and (stream is None or r.stream == stream)
        and DEFAULT_MIN_VALID_MS <= r.value["event_time_ms"] <= now_ms + 24 * 3_600_000
    ]


def assert_dead_letters(messages: list[Any], sent: list[GeneratedRecord], valid: int) -> None:
    letters = decoded(messages, "DeadLetter")
    undecodable = sum(1 for r in sent if r.corrupt is not None)
    assert Counter(d["error_class"] for d in letters) == Counter(
        {"DecodeError": undecodable, "TimestampError": len(sent) - undecodable - valid}
    )


# -- QoE -------------------------------------------------------------------------------
def test_qoe_on_both_engines_equals_reference(kafka: str, tmp_path: Path) -> None:
    from jobs.qoe import job
    from tests.unit.jobs.test_qoe import MINUTE, assert_same_metrics, facts, reference_metrics

    playback = unique("qoe-playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(
        start_ms=recent_start_ms(),
        seed=41,
        users=120,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.01,
        malformed_rate=0.002,
        bad_timestamp_rate=0.002,
        interaction_ratio=0.0,
        degradations=(Degradation("cdn-c", 2 * MINUTE, 6 * MINUTE),),
    )
    sent = produce_generated(kafka, {"playback": playback}, config, 6_000)
    worker, native, flink = run_both(
        kafka, tmp_path, job, {"playback": playback}, ["qoe-metrics", "qoe-excluded-events"]
    )
    valid = [r.value for r in valid_events(sent)]
    first_copies = list({v["event_id"]: v for v in reversed(valid)}.values())
    reference = reference_metrics(facts(first_copies))
    assert len(reference) > 500

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["window_kind"], r["group_kind"], r["title_id"], r["device_type"],
                r["country"], r["cdn"], r["window_start_ms"])  # fmt: skip

    def end(k: tuple[Any, ...]) -> int:
        return int(k[-1]) + (MINUTE if k[0] == "tumbling_1m" else 5 * MINUTE)

    results = {}
    for engine, out in (("native", native), ("flink", flink)):
        messages = out["qoe-metrics"]
        rows = decoded(messages, "QoeMetric")
        # Keyed by the window step's key: the group's fields joined by "|", or the CDN.
        assert [key_of(m) for m in messages] == [
            r["cdn"] if r["group_kind"] == "cdn"
            else "|".join((r["title_id"], r["device_type"], r["country"], r["cdn"]))
            for r in rows
        ], engine  # fmt: skip
        results[engine] = {key(r): r for r in rows}
        if engine == "native":
            # Several tasks own groups after the repartition: every window that ended
            # before the slowest task's watermark is there, others may be.
            watermark = min(worker.last_watermarks.values())
            want = {
                k: m for k, m in reference.items() if end(k) <= watermark or k in results[engine]
            }
        else:
            want = reference  # the end of the bounded input fires every window
        # Startup quantiles come from a sketch: within its 1% relative accuracy of the
        # exact quantile (the engines merge partial sketches in different orders, so
        # they need not agree with each other to the bit); everything else exactly.
        assert_same_metrics(rows, want)
        excluded = decoded(out["qoe-excluded-events"], "")
        assert Counter(r["excluded"] for r in excluded) == {
            "duplicate": len(valid) - len(first_copies)
        }, engine
        assert [key_of(m) for m in out["qoe-excluded-events"]] == [
            f"{r['event']['user_id']}|{r['event']['playback_id']}" for r in excluded
        ], engine
        assert_dead_letters(out["dead-letters"], sent, len(valid))
    assert results["native"].keys() <= results["flink"].keys()
    assert len(results["native"]) > 300
    quantiles = ("startup_p50_ms", "startup_p90_ms", "startup_p99_ms")
    for k, row in results["native"].items():
        other = results["flink"][k]
        assert {n: v for n, v in row.items() if n not in quantiles} == {
            n: v for n, v in other.items() if n not in quantiles
        }, k


# -- playback health -------------------------------------------------------------------
def test_playback_health_on_both_engines_equals_reference(kafka: str, tmp_path: Path) -> None:
    from jobs.playback_health import job
    from jobs.playback_health.job import error_record

    playback = unique("health-playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(
        start_ms=recent_start_ms(),
        seed=43,
        users=200,
        late_rate=0.0,
        out_of_order_ms=2_000,
        malformed_rate=0.004,
        bad_timestamp_rate=0.003,
        interaction_ratio=0.0,
        degradations=(Degradation("cdn-b", 0, 10 * 60_000),),
    )
    sent = produce_generated(kafka, {"playback": playback}, config, 6_000)
    worker, native, flink = run_both(
        kafka, tmp_path, job, {"playback": playback}, ["playback-errors", "rebuffers-per-cdn"]
    )
    valid = [r.value for r in valid_events(sent)]
    want_errors = Counter(
        tuple(sorted(error_record(v).items())) for v in valid if v["event_type"] == "error"
    )
    buckets: Counter[tuple[str, int]] = Counter()
    for v in valid:
        if v["event_type"] == "rebuffer_start":
            buckets[(v["cdn"], v["event_time_ms"] - v["event_time_ms"] % 10_000)] += 1
    assert sum(want_errors.values()) >= 5 and len(buckets) > 30

    got: dict[str, dict[tuple[str, int], int]] = {}
    for engine, out in (("native", native), ("flink", flink)):
        errors = decoded(out["playback-errors"], "")
        assert Counter(tuple(sorted(r.items())) for r in errors) == want_errors, engine
        # The sink's key= function: the user.
        assert [key_of(m) for m in out["playback-errors"]] == [r["user_id"] for r in errors]
        rows = decoded(out["rebuffers-per-cdn"], "")
        assert [key_of(m) for m in out["rebuffers-per-cdn"]] == [r["cdn"] for r in rows]
        got[engine] = {(r["cdn"], r["window_start_ms"]): r["rebuffers"] for r in rows}
        assert len(got[engine]) == len(rows), f"{engine}: a window was emitted twice"
        assert all(buckets[k] == n for k, n in got[engine].items()), engine  # none wrong
        assert_dead_letters(out["dead-letters"], sent, len(valid))
    # by_cdn repartitions: every window that ended before the slowest task's watermark
    # fired on the native engine; the end of Flink's bounded input fires all of them.
    watermark = min(worker.last_watermarks.values())
    assert {k for k in buckets if k[1] + 10_000 <= watermark} <= got["native"].keys()
    assert got["flink"] == dict(buckets)
    assert got["native"].items() <= got["flink"].items()


# -- personalization -------------------------------------------------------------------
def test_personalization_on_both_engines_equals_reference(kafka: str, tmp_path: Path) -> None:
    from jobs.personalization import Catalogue, Model, build
    from runtime.generator import catalogue
    from tests.unit.jobs.test_personalization import (
        GAP_MS,
        HALF_LIFE_MS,
        MIN_CHANGE,
        TOP_N,
        Reference,
    )

    tol = MIN_CHANGE + 1e-9
    playback, interactions = unique("pers-playback"), unique("pers-interactions")
    KafkaAdmin(kafka).ensure_topics(
        [TopicSpec(playback, PARTITIONS), TopicSpec(interactions, PARTITIONS)]
    )
    config = GeneratorConfig(
        start_ms=recent_start_ms(),
        seed=47,
        users=60,
        out_of_order_ms=2_000,
        out_of_order_rate=0.05,
        late_rate=0.005,
        late_delay_ms=(5_000, 30_000),
        duplicate_rate=0.01,
        malformed_rate=0.002,
        bad_timestamp_rate=0.002,
    )
    sent = produce_generated(
        kafka, {"playback": playback, "interactions": interactions}, config, 6_000
    )
    cat = Catalogue.of(catalogue(config))
    job = build(
        half_life=timedelta(milliseconds=HALF_LIFE_MS),
        top_n=TOP_N,
        catalogue=cat,
        abandon_after=timedelta(milliseconds=GAP_MS),
        min_change=MIN_CHANGE,
    )
    worker, native, flink = run_both(
        kafka,
        tmp_path,
        job,
        {"playback": playback, "interactions": interactions},
        ["personalization-scores"],
    )
    valid = valid_events(sent)
    task_of = {
        m.key().decode(): m.partition()
        for topic in (playback, interactions)
        for m in read_all(kafka, topic)
    }
    for engine, out in (("native", native), ("flink", flink)):
        ref = Reference(cat, Model.load())
        for r in valid:
            ref.receive(r.stream, r.value)
        if engine == "native":
            # Partition p of both topics is task p, with its own watermark.
            for task, watermark in worker.last_watermarks.items():
                ref.watermark(watermark, {u for u, t in task_of.items() if t == task})
        else:
            ref.watermark(LONG_MAX)  # the end of the bounded input abandons every open play
        messages = out["personalization-scores"]
        records = decoded(messages, "PersonalizationScore")
        assert [key_of(m) for m in messages] == [r["user_id"] for r in records], engine
        # Each user's last record: after it nothing moved the top N or a score by more
        # than MIN_CHANGE, whatever order the records were read in.
        last = {r["user_id"]: r for r in records}
        assert len(last) > 25 and len(records) > 200, (engine, len(last), len(records))
        assert last.keys() == {u for u, s in ref.users.items() if s.now is not None}, engine
        abandoned = sum(
            p["declared"] is not None for s in ref.users.values() for p in s.plays.values()
        )
        # Flink's end of input abandons every open play (the native worker stops short).
        assert abandoned >= (3 if engine == "flink" else 0), engine
        for user_id, got in last.items():
            now, genres, titles = ref.state(user_id)
            want = ref.top(genres, titles)
            assert got["updated_ms"] <= now, (engine, user_id)
            assert [t["title_id"] for t in got["top_titles"]] == [t for t, _ in want], (
                engine,
                user_id,
            )
            for item, (_, score) in zip(got["top_titles"], want, strict=True):
                assert abs(item["score"] - score) <= tol, (engine, user_id)
            assert got["genre_affinity"].keys() == genres.keys(), (engine, user_id)
            for genre, value in got["genre_affinity"].items():
                assert abs(value - genres[genre]) <= tol * max(1.0, abs(value)), (engine, genre)
        assert_dead_letters(out["dead-letters"], sent, len(valid))
