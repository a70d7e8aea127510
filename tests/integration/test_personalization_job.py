"""The personalization job end to end on the real broker, against the brute-force reference.

The worker reads both topics in an order the test does not control, so the test
checks what is independent of it: each user's *last* ``PersonalizationScore``.
After it, no event moved the top N or a score by more than ``MIN_CHANGE`` (else a
record would have followed), so its title ids equal the reference's top N over
every valid event (duplicates once, abandonment as of the final watermark), and its
scores and affinities are within ``MIN_CHANGE`` of the reference's.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.personalization import Catalogue, Model, build
from runtime.api.bindings import Bindings
from runtime.api.watermarks import DEFAULT_MIN_VALID_MS
from runtime.generator import GeneratorConfig, catalogue
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
)
from tests.reference.personalization import (
    GAP_MS,
    HALF_LIFE_MS,
    MIN_CHANGE,
    TOP_N,
    EmissionReference,
)

TOL = MIN_CHANGE + 1e-9


def test_personalization_matches_reference(kafka: str) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    scores_topic, dead_topic = unique("scores"), unique("dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 4)])
    config = GeneratorConfig(
        seed=31, users=150, out_of_order_ms=2000, out_of_order_rate=0.05, late_rate=0.005,
        late_delay_ms=(5_000, 30_000), duplicate_rate=0.01, malformed_rate=0.002,
        bad_timestamp_rate=0.002,
    )  # fmt: skip
    sent = produce_generated(kafka, {"playback": playback, "interactions": interactions},
                             config, 25_000)  # fmt: skip
    cat = Catalogue.of(catalogue(config))
    job = build(
        half_life=timedelta(milliseconds=HALF_LIFE_MS), top_n=TOP_N, catalogue=cat,
        abandon_after=timedelta(milliseconds=GAP_MS), min_change=MIN_CHANGE,
    )  # fmt: skip
    bindings = Bindings.for_job(job, [
        f"playback={playback}", f"interactions={interactions}",
        f"personalization-scores={scores_topic}", f"dead-letters={dead_topic}",
    ])  # fmt: skip
    worker = run_job_until_idle(kafka, job, bindings, idle_s=8.0)
    # Both topics are keyed by user with as many partitions, so partition p of each is
    # task p, with its own watermark: abandonment is judged per task.
    task_of = {
        m.key().decode(): m.partition()
        for topic in (playback, interactions) for m in read_all(kafka, topic)
    }  # fmt: skip
    assert set(worker.last_watermarks) == {0, 1, 2, 3}

    # --- the reference over every valid record that was sent -----------------------------
    far = config.start_ms + 10 * 24 * 3_600_000
    valid = [
        r for r in sent
        if r.corrupt is None and DEFAULT_MIN_VALID_MS <= r.value["event_time_ms"] <= far
    ]  # fmt: skip
    ref = EmissionReference(cat, Model.load())
    for r in valid:
        ref.receive(r.stream, r.value)
    for task, watermark in worker.last_watermarks.items():
        ref.watermark(watermark, {u for u, t in task_of.items() if t == task})

    # --- what the job wrote ------------------------------------------------------------
    records = decoded(read_all(kafka, scores_topic), "PersonalizationScore")
    dead = decoded(read_all(kafka, dead_topic), "DeadLetter")
    last = {r["user_id"]: r for r in records}

    counters = worker.counters()
    assert counters["scores"]["in"] == len(valid)  # the job read everything
    assert len(last) > 60 and len(records) > 1_000
    assert last.keys() == {u for u, s in ref.users.items() if s.now is not None}
    abandoned = sum(p["declared"] is not None for s in ref.users.values() for p in s.plays.values())
    assert abandoned >= 3
    for user_id, got in last.items():
        now, genres, titles = ref.state(user_id)
        want = ref.top(genres, titles)
        assert got["updated_ms"] <= now
        assert [t["title_id"] for t in got["top_titles"]] == [t for t, _ in want], user_id
        for item, (_, score) in zip(got["top_titles"], want, strict=True):
            assert abs(item["score"] - score) <= TOL, user_id
        assert got["genre_affinity"].keys() == genres.keys()
        for genre, value in got["genre_affinity"].items():
            assert abs(value - genres[genre]) <= TOL * max(1.0, abs(value)), (user_id, genre)
        assert got["model_version"] == Model.load().version

    undecodable = sum(1 for r in sent if r.corrupt is not None)
    assert Counter(d["error_class"] for d in dead) == Counter(
        {"DecodeError": undecodable, "TimestampError": len(sent) - undecodable - len(valid)}
    )
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    assert counters["scores"]["out"] == len(records)
