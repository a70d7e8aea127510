"""Time the broker or the job cannot take: device clocks hours ahead, records days old,
records too large for their topic. The job keeps running and its output stays exact."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import KafkaSource
from connectors.kafka.transport import EVENT_TIME_HEADER, KafkaTransport
from jobs.playback_health import job
from runtime.api.bindings import Bindings
from runtime.api.watermarks import DEFAULT_MAX_FUTURE_MS, DEFAULT_MIN_VALID_MS
from runtime.generator import Generator, GeneratorConfig
from tests.integration.helpers import SCHEMA, decoded, read_all, run_job_until_idle, unique
from tests.reference.playback_health import error_records, rebuffers_per_cdn

HOUR = 3_600_000
DAY = 24 * HOUR


def test_clock_skew_is_dead_lettered_or_late_and_the_job_keeps_running(kafka: str) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    errors_topic, rebuffers_topic, dead_topic = unique("errors"), unique("rebuf"), unique("dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 1)])
    now = time.time_ns() // 1_000_000
    # Traffic of the last hour (its simulated half hour ends well before now).
    config = GeneratorConfig(
        seed=5, users=400, start_ms=now - HOUR, late_rate=0.0, malformed_rate=0.0,
        bad_timestamp_rate=0.0,
    )  # fmt: skip
    rng = random.Random(7)
    records = Generator(config).take(30_000)
    sent = []
    skew = []  # per sent record: "future", "past" or ""
    for rec in records:
        roll = rng.random() if rec.stream == "playback" else 1.0
        if roll < 0.01:  # a device clock two hours ahead
            rec = replace(rec, value={**rec.value, "event_time_ms": now + 2 * HOUR})
        elif roll < 0.02:  # two days in the past
            rec = replace(
                rec, value={**rec.value, "event_time_ms": rec.value["event_time_ms"] - 2 * DAY}
            )
        sent.append(rec)
        skew.append("future" if roll < 0.01 else "past" if roll < 0.02 else "")
    codecs = codec_factory()
    sink = KafkaSink(kafka)
    for rec in sent:
        topic = playback if rec.stream == "playback" else interactions
        sink.write(topic, rec.key, codecs(SCHEMA[rec.stream]).encode(rec.value), None)
    sink.flush()

    bindings = Bindings.for_job(job, [
        f"playback={playback}", f"playback-errors={errors_topic}",
        f"rebuffers-per-cdn={rebuffers_topic}", f"dead-letters={dead_topic}",
    ])  # fmt: skip
    worker = run_job_until_idle(kafka, job, bindings)

    # --- the brute-force reference ---------------------------------------------------
    playback_sent = [
        (r.value, s) for r, s in zip(sent, skew, strict=True) if r.stream == "playback"
    ]
    future = [v for v, s in playback_sent if s == "future"]
    valid = [v for v, s in playback_sent if s != "future"]
    past = {id(v) for v, s in playback_sent if s == "past"}
    assert len(future) > 100 and len(past) > 100
    assert all(DEFAULT_MIN_VALID_MS <= v["event_time_ms"] <= now for v in valid)
    # Errors are a stateless feed: every valid one comes out, two-day-old ones too.
    want_errors = error_records(valid)
    # Rebuffer windows of the live traffic are exact. Two-day-old rebuffers are late for
    # their windows, unless they came before event time had moved past them (the
    # watermark waits for every partition): then they are counted in a window of their
    # own day. Either way each is counted exactly once: in a window or as late.
    watermark = min(worker.last_watermarks.values())
    live = rebuffers_per_cdn(v for v in valid if id(v) not in past)
    old_rebuffers = sum(1 for v in valid if v["event_type"] == "rebuffer_start" and id(v) in past)
    due = {k: n for k, n in live.items() if k[1] + 10_000 <= watermark}

    # --- what the job wrote ---------------------------------------------------------
    got_errors = Counter(
        tuple(sorted(r.items())) for r in decoded(read_all(kafka, errors_topic), "")
    )
    got = {
        (r["cdn"], r["window_start_ms"]): r["rebuffers"]
        for r in decoded(read_all(kafka, rebuffers_topic), "")
    }
    got_live = {k: n for k, n in got.items() if k[1] >= config.start_ms - 60_000}
    got_old = {k: n for k, n in got.items() if k[1] < config.start_ms - 60_000}
    dead = decoded(read_all(kafka, dead_topic), "DeadLetter")
    counters = worker.counters()

    assert got_errors == want_errors
    assert len(due) > 10
    assert {k: got_live[k] for k in due if k in got_live} == due
    assert all(live[k] == n for k, n in got_live.items())
    assert sum(got_old.values()) + counters["rebuffers_10s"]["late"] == old_rebuffers
    # every future event is dead-lettered with the reason, and nothing else is
    assert len(dead) == len(future)
    assert {d["error_class"] for d in dead} == {"TimestampError"}
    assert all("ahead of the processing clock" in d["error_message"] for d in dead)
    assert f"bound: {DEFAULT_MAX_FUTURE_MS} ms" in dead[0]["error_message"]
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    assert counters["playback"]["in"] == len(playback_sent)
    assert counters["playback"]["dead_lettered"] == len(future)
    assert worker.rewinds == 0


def test_transport_stamps_what_the_topic_accepts_and_refuses_what_it_cannot(kafka: str) -> None:
    ahead, strict, small = unique("ahead"), unique("strict"), unique("small")
    KafkaAdmin(kafka).ensure_topics([
        TopicSpec(ahead, 1),  # broker defaults: at most an hour ahead
        TopicSpec(strict, 1, config={"message.timestamp.before.max.ms": str(HOUR)}),
        TopicSpec(small, 1, config={"max.message.bytes": "4096"}),
    ])  # fmt: skip
    source = KafkaSource(kafka, unique("g"), [ahead])
    transport = KafkaTransport(kafka, source, exactly_once=True, transactional_id=unique("tx"))
    try:
        now = time.time_ns() // 1_000_000
        transport.load_limits([ahead, strict, small])
        assert transport.limits(strict).before_max_ms == HOUR
        assert transport.limits(small).max_message_bytes == 4096
        transport.write_many(
            ahead, [(b"k1", b"two hours ahead", now + 2 * HOUR), (b"k2", b"ok", now)]
        )
        transport.write(strict, b"k3", b"two days old", now - 2 * DAY)
        transport.write_many(small, [(b"k4", b"x" * 10_000, now), (b"k5", b"fits", now)])
        refused = transport.take_refused()
        transport.commit({})
    finally:
        transport.close()
        source.close()
    assert [(r.topic, r.key, r.value) for r in refused] == [(small, b"k4", None)]
    assert "larger than topic" in refused[0].reason
    assert transport.clamped == 2 and transport.refused == 1
    got = {m.key(): m for t in (ahead, strict, small) for m in _read(kafka, t)}
    assert set(got) == {b"k1", b"k2", b"k3", b"k5"}
    k1, k3 = got[b"k1"], got[b"k3"]
    assert now + HOUR - 2 * 60_000 <= k1.timestamp()[1] <= now + HOUR + 60_000
    assert dict(k1.headers() or [])[EVENT_TIME_HEADER] == str(now + 2 * HOUR).encode()
    assert k3.timestamp()[1] >= now - HOUR
    assert dict(k3.headers() or [])[EVENT_TIME_HEADER] == str(now - 2 * DAY).encode()
    assert got[b"k2"].timestamp()[1] == now and not got[b"k2"].headers()


def _read(kafka: str, topic: str) -> list[object]:
    return list(read_all(kafka, topic))
