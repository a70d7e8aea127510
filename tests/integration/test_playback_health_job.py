"""The first reference job end to end on the real broker, against a brute-force reference."""

from __future__ import annotations

from collections import Counter

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.playback_health import job
from runtime.api.bindings import Bindings
from runtime.api.watermarks import DEFAULT_MIN_VALID_MS
from runtime.generator import GeneratorConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
)
from tests.reference.playback_health import error_records, rebuffers_per_cdn


def test_playback_health_matches_reference(kafka: str) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    errors_topic, rebuffers_topic, dead_topic = unique("errors"), unique("rebuf"), unique("dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 1)])
    config = GeneratorConfig(
        seed=11, users=400, late_rate=0.0, out_of_order_ms=2000,
        malformed_rate=0.004, bad_timestamp_rate=0.003,
    )
    sent = produce_generated(kafka, {"playback": playback, "interactions": interactions},
                             config, 30_000)
    bindings = Bindings.for_job(job, [
        f"playback={playback}", f"playback-errors={errors_topic}",
        f"rebuffers-per-cdn={rebuffers_topic}", f"dead-letters={dead_topic}",
    ])
    worker = run_job_until_idle(kafka, job, bindings)

    # --- the brute-force reference over what was sent ---------------------------------
    playback_sent = [r for r in sent if r.stream == "playback"]
    undecodable = [r for r in playback_sent if r.corrupt is not None]
    decodable = [r.value for r in playback_sent if r.corrupt is None]
    bad_ts = [v for v in decodable if v["event_time_ms"] < DEFAULT_MIN_VALID_MS
              or v["event_time_ms"] > config.start_ms + 10 * 24 * 3600 * 1000]
    valid = [v for v in decodable if DEFAULT_MIN_VALID_MS <= v["event_time_ms"]
             <= config.start_ms + 10 * 24 * 3600 * 1000]
    want_errors = error_records(valid)
    # by_cdn repartitions through an internal topic: every CDN's windows live in one
    # task; all windows that end before the slowest task's watermark must have fired.
    watermark = min(worker.last_watermarks.values())
    all_buckets = rebuffers_per_cdn(valid)
    buckets = {k: n for k, n in all_buckets.items() if k[1] + 10_000 <= watermark}

    # --- what the job wrote -------------------------------------------------------------
    got_errors = Counter(
        tuple(sorted(r.items())) for r in decoded(read_all(kafka, errors_topic), "")
    )
    got_buckets = {
        (r["cdn"], r["window_start_ms"]): r["rebuffers"]
        for r in decoded(read_all(kafka, rebuffers_topic), "")
    }
    dead = decoded(read_all(kafka, dead_topic), "DeadLetter")

    assert sum(want_errors.values()) > 10 and len(buckets) > 10
    assert got_errors == want_errors
    assert {k: got_buckets[k] for k in buckets if k in got_buckets} == buckets
    assert all(all_buckets[k] == n for k, n in got_buckets.items())  # none wrong or extra
    assert len(dead) == len(undecodable) + len(bad_ts)
    assert Counter(d["error_class"] for d in dead) == Counter(
        {"DecodeError": len(undecodable), "TimestampError": len(bad_ts)}
    )
    assert all(d["source_topic"] == playback and d["source_offset"] is not None for d in dead)
    # every input is processed or dead-lettered; nothing was late with this input
    counters = worker.counters()
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    assert counters["playback"]["in"] == len(playback_sent)
    assert counters["playback"]["dead_lettered"] == len(dead)
    assert codec_factory() is codec_factory()
