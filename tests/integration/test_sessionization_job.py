"""The sessionization job end to end on the real broker, against the brute-force reference.

The input has duplicates, disorder within the watermark bound, corrupted records and
bad timestamps, but no late events, so every session is emitted once and the
reference is deterministic: every session whose window closed under the final
watermark of the task that owns its user, as the reference of
``tests/reference/sessionization.py`` builds it. Both input topics have the same
number of partitions: the job keys without repartitioning, so a user's playback and
interaction events must land in partitions of the same number (one task).
"""

from __future__ import annotations

import time
from datetime import timedelta

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.sessionization import build
from runtime.api.bindings import Bindings
from runtime.generator import GeneratorConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
)
from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS
from tests.reference.sessionization import assert_same_sessions, reference_sessions

GAP_MS = 60_000


def test_sessionization_matches_reference(kafka: str) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    sessions, retractions, late, dead = (
        unique("sessions"),
        unique("retractions"),
        unique("late"),
        unique("dead"),
    )
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 4)])
    # Recent event times: sinks stamp records with event time, and the broker's time-based
    # retention would delete output stamped years ago while the test still reads it.
    start_ms = (time.time_ns() // 1_000_000 - 3 * 3_600_000) // 3_600_000 * 3_600_000
    config = GeneratorConfig(
        start_ms=start_ms,
        seed=17,
        users=400,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.01,
        malformed_rate=0.002,
        bad_timestamp_rate=0.002,
    )
    sent = produce_generated(
        kafka, {"playback": playback, "interactions": interactions}, config, 30_000
    )
    job = build(gap=timedelta(milliseconds=GAP_MS), allowed_lateness=timedelta(seconds=30))
    bindings = Bindings.for_job(
        job,
        [
            f"playback={playback}",
            f"interactions={interactions}",
            f"sessions={sessions}",
            f"session-retractions={retractions}",
            f"sessions-late-events={late}",
            f"dead-letters={dead}",
        ],
    )
    worker = run_job_until_idle(kafka, job, bindings)
    now_ms = time.time_ns() // 1_000_000

    # --- the reference over what was sent ---------------------------------------------
    decodable = [r.value for r in sent if r.corrupt is None]
    valid = [v for v in decodable if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
    partition_of: dict[str, int] = {}
    for topic in (playback, interactions):
        for m in read_all(kafka, topic):
            user = m.key().decode()
            assert partition_of.setdefault(user, m.partition()) == m.partition(), user
    watermarks = worker.last_watermarks  # per task: one task per input partition
    assert sorted(watermarks) == [0, 1, 2, 3]
    want = {
        key: summary
        for key, summary in reference_sessions(valid, GAP_MS).items()
        if summary["session_end_ms"] + GAP_MS <= watermarks[partition_of[key[0]]]
    }

    # --- what the job wrote -----------------------------------------------------------
    got_records = decoded(read_all(kafka, sessions), "SessionSummary")
    got = {(r["user_id"], r["device_id"], r["session_start_ms"]): r for r in got_records}
    assert len(got) == len(got_records), "a session was emitted twice"
    assert len(want) > 60
    assert all(r["revision"] == 0 for r in got_records)
    assert_same_sessions(got, want)
    dead_letters = decoded(read_all(kafka, dead), "DeadLetter")
    assert len(dead_letters) == len(sent) - len(valid)
    counters = worker.counters()
    assert counters["session-retractions"]["in"] == counters["sessions-late-events"]["in"] == 0
    assert counters["playback"]["in"] + counters["interactions"]["in"] == len(sent)
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
