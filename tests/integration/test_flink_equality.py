"""The reference jobs on Apache Flink (PyFlink, local mini cluster) against brute force.

Each test produces generated events to the real broker, runs the job on Flink with
a bounded source (it stops at the offsets that were the latest when it started; the
end of input moves event time to the end, so every window fires) and reads the
output read_committed: the sinks write in Kafka transactions that commit with
Flink's checkpoints. The input has no late events, so the results are exact.

The cumulative-window test runs its job on the native engine too (one worker until
its input is quiet): both engines against the brute force, the native one as far as
its final watermark got.

The failover test fails a task once mid-run, after a checkpoint completed: Flink
restarts the job from that checkpoint (RocksDB state, source offsets) and aborts the
transactions of the failed attempt, so the committed output is still exactly right.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.user_counts import build as build_user_counts
from runtime import Json
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.composition import FLINK_CONNECTORS
from runtime.flink import FlinkOptions, run_on_flink
from runtime.generator import GeneratorConfig
from tests.integration.helpers import decoded, produce_generated, read_all, unique
from tests.reference.counts import window_counts

FLINK_MARKS = [
    pytest.mark.integration,
    # PyFlink's own modules (its table API and httplib2 under apache-beam) warn at import.
    pytest.mark.filterwarnings(
        "ignore:.*deprecated since version 2.1.0:DeprecationWarning:pyflink"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2"),
    # The JVM of PyFlink's gateway lives as long as the test process, on purpose: one
    # gateway serves every Flink test.
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
]
pytestmark = FLINK_MARKS

PARTITIONS = 4
SIZE_MS = 10_000


def recent_start_ms() -> int:
    """Event times a few hours back: sinks stamp records with event time, and the
    broker's retention would delete output stamped years ago."""
    return (time.time_ns() // 1_000_000 - 3 * 3_600_000) // 3_600_000 * 3_600_000


def options(kafka: str, tmp_path: Path, **kw: Any) -> FlinkOptions:
    return FlinkOptions(
        bootstrap=kafka,
        group=unique("flink"),
        bounded=True,
        checkpoint_interval_ms=500,
        checkpoint_dir=tmp_path / "checkpoints",
        restart_delay_ms=200,
        **kw,
    )


def produce_playback(kafka: str, n: int, seed: int) -> tuple[str, list[dict[str, Any]]]:
    topic = unique("flink-playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(topic, PARTITIONS)])
    config = GeneratorConfig(
        start_ms=recent_start_ms(),
        seed=seed,
        users=300,
        late_rate=0.0,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
        interaction_ratio=0.0,
    )
    sent = produce_generated(kafka, {"playback": topic, "interactions": topic}, config, n)
    return topic, [r.value for r in sent]


def counts_of(kafka: str, topic: str) -> tuple[dict[tuple[str, int], int], int]:
    messages = read_all(kafka, topic)
    rows = decoded(messages, "")
    # Keyed like the native engine's output: by the stream's key, the user.
    assert [m.key() for m in messages] == [r["user_id"].encode() for r in rows]
    return {(r["user_id"], r["window_start_ms"]): r["count"] for r in rows}, len(rows)


@pytest.mark.parametrize("parallelism", [None, 1], ids=["one-per-partition", "one-subtask"])
def test_user_counts_on_flink_equals_reference(
    kafka: str, tmp_path: Path, parallelism: int | None
) -> None:
    """Also with fewer subtasks than partitions: watermarks stay per partition (each
    partition's reader stamps its own records; the steps after it may interleave them)."""
    playback, values = produce_playback(kafka, 20_000, seed=5)
    out, dead = unique("flink-counts"), unique("flink-dead")
    job = build_user_counts()
    bindings = Bindings.for_job(
        job, [f"playback={playback}", f"user-counts={out}", f"dead-letters={dead}"]
    )
    settings = options(kafka, tmp_path, parallelism=parallelism)
    run = run_on_flink(job, bindings, settings, connectors=FLINK_CONNECTORS)
    assert run.status == "FINISHED"
    got, rows = counts_of(kafka, out)
    want = window_counts(values, SIZE_MS)
    assert rows == len(got), "a window was emitted twice"
    assert got == want
    assert not read_all(kafka, dead, first_wait_s=2)


class FailOnce:
    """A map that raises once, after ``after`` records and a completed checkpoint.

    The flag file makes only the first attempt fail: the restarted task sees it.
    """

    def __init__(self, flag: Path, checkpoints: Path, after: int) -> None:
        self.flag = flag
        self.checkpoints = checkpoints
        self.after = after
        self.seen = 0

    def __call__(self, value: Any) -> Any:
        self.seen += 1
        if (
            self.seen >= self.after
            and not self.flag.exists()
            and any(self.checkpoints.glob("*/*/chk-*/_metadata"))
        ):
            self.flag.write_text("failed once")
            raise RuntimeError("injected task failure")
        return value


def failing_user_counts(flag: Path, checkpoints: Path) -> Job:
    """``jobs.user_counts`` with a map that fails the task once; ``fail`` policy, so the
    exception fails the task instead of dead-lettering the record."""
    from runtime import WatermarkStrategy, windows
    from runtime.aggregates import Count

    job = Job("user_counts_failover", on_error="fail")
    (
        job.source(
            "playback",
            schema="PlaybackEvent",
            timestamp=lambda e: e["event_time_ms"],
            watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=None),
        )
        .map(FailOnce(flag, checkpoints, after=3_000), name="fail_once")
        .key_by("by_user", lambda e: e["user_id"], repartition=False)
        .window("counts_10s", windows.tumbling(timedelta(milliseconds=SIZE_MS)))
        .aggregate(
            Count(),
            output=lambda user, w, n: {"user_id": user, "window_start_ms": w.start_ms, "count": n},
        )
        .sink("user-counts", Json())
    )
    return job


def test_failover_restores_from_checkpoint_exactly_once(kafka: str, tmp_path: Path) -> None:
    playback, values = produce_playback(kafka, 40_000, seed=11)
    out = unique("flink-failover")
    flag, checkpoints = tmp_path / "failed-once", tmp_path / "checkpoints"
    job = failing_user_counts(flag, checkpoints)
    bindings = Bindings.for_job(job, [f"playback={playback}", f"user-counts={out}"])
    run = run_on_flink(job, bindings, options(kafka, tmp_path), connectors=FLINK_CONNECTORS)
    assert run.status == "FINISHED"
    assert flag.exists(), "the injected failure never happened"
    got, rows = counts_of(kafka, out)
    assert rows == len(got), "a window was emitted twice"
    assert got == window_counts(values, SIZE_MS)


# -- cumulative windows on both engines ------------------------------------------------
PERIOD_MS, STEP_MS = 30_000, 10_000


def cumulative_user_counts() -> Job:
    """Per user, the count of each 30 s period so far, every 10 s (cumulative windows)."""
    from runtime import WatermarkStrategy, windows
    from runtime.aggregates import Count

    job = Job("user_counts_cumulative")
    (
        job.source(
            "playback",
            schema="PlaybackEvent",
            timestamp=lambda e: e["event_time_ms"],
            watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=None),
        )
        .key_by("by_user", lambda e: e["user_id"], repartition=False)
        .window(
            "counts_cumulative",
            windows.cumulative(timedelta(milliseconds=PERIOD_MS), timedelta(milliseconds=STEP_MS)),
        )
        .aggregate(
            Count(),
            output=lambda user, w, n: {
                "user_id": user,
                "window_start_ms": w.start_ms,
                "window_end_ms": w.end_ms,
                "count": n,
            },
        )
        .sink("user-counts", Json())
    )
    return job


def reference_cumulative(values: list[dict[str, Any]]) -> dict[tuple[str, int, int], int]:
    """Brute force: per (user, period start, window end), the events of the period that
    came before the end."""
    out: Counter[tuple[str, int, int]] = Counter()
    for v in values:
        ts = v["event_time_ms"]
        start = ts // PERIOD_MS * PERIOD_MS
        for end in range(start + STEP_MS, start + PERIOD_MS + 1, STEP_MS):
            if ts < end:
                out[(v["user_id"], start, end)] += 1
    return dict(out)


def test_cumulative_windows_on_both_engines_equal_reference(kafka: str, tmp_path: Path) -> None:
    from tests.integration.test_flink_reference_jobs import key_of, run_both

    playback, values = produce_playback(kafka, 12_000, seed=23)
    worker, native, flink = run_both(
        kafka, tmp_path, cumulative_user_counts(), {"playback": playback}, ["user-counts"]
    )
    want = reference_cumulative(values)
    assert len(want) > 1_000
    got = {}
    for engine, out in (("native", native), ("flink", flink)):
        messages = out["user-counts"]
        rows = decoded(messages, "")
        assert [key_of(m) for m in messages] == [r["user_id"] for r in rows], engine
        got[engine] = {
            (r["user_id"], r["window_start_ms"], r["window_end_ms"]): r["count"] for r in rows
        }
        assert len(rows) == len(got[engine]), f"{engine}: a window was emitted twice"
        assert not out["dead-letters"], engine
    # The end of Flink's bounded input fires every window; the native worker fires
    # those that ended before its final watermark, and maybe some more.
    assert got["flink"] == want
    watermark = min(worker.last_watermarks.values())
    assert got["native"] == {
        w: n for w, n in want.items() if w[2] <= watermark or w in got["native"]
    }
    assert sum(1 for w in want if w[2] <= watermark) > 1_000


# Session windows run in Flink's process mode, which runs its Python workers in this
# process (loopback); their gRPC reader thread complains when the job ends.
@pytest.mark.filterwarnings(
    "ignore:Exception in thread read_grpc_client_inputs"
    ":pytest.PytestUnhandledThreadExceptionWarning"
)
def test_sessionization_on_flink_equals_reference(kafka: str, tmp_path: Path) -> None:
    from jobs.sessionization import build as build_sessionization
    from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS
    from tests.reference.sessionization import assert_same_sessions, reference_sessions

    gap_ms = 60_000
    playback, interactions = unique("flink-playback"), unique("flink-interactions")
    KafkaAdmin(kafka).ensure_topics(
        [TopicSpec(playback, PARTITIONS), TopicSpec(interactions, PARTITIONS)]
    )
    config = GeneratorConfig(
        start_ms=recent_start_ms(),
        seed=17,
        users=300,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.01,
        malformed_rate=0.002,
        bad_timestamp_rate=0.002,
    )
    sent = produce_generated(
        kafka, {"playback": playback, "interactions": interactions}, config, 15_000
    )
    sessions, retractions, late, dead = (unique(p) for p in ("ss", "sr", "sl", "sd"))
    job = build_sessionization(
        gap=timedelta(milliseconds=gap_ms), allowed_lateness=timedelta(seconds=30)
    )
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
    run = run_on_flink(job, bindings, options(kafka, tmp_path), connectors=FLINK_CONNECTORS)
    assert run.status == "FINISHED"
    now_ms = time.time_ns() // 1_000_000
    decodable = [r.value for r in sent if r.corrupt is None]
    valid = [v for v in decodable if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
    # The end of the bounded input closes every session.
    want = reference_sessions(valid, gap_ms)
    got_records = decoded(read_all(kafka, sessions), "SessionSummary")
    got = {(r["user_id"], r["device_id"], r["session_start_ms"]): r for r in got_records}
    assert len(got) == len(got_records), "a session was emitted twice"
    assert len(want) > 60
    assert all(r["revision"] == 0 for r in got_records)
    assert_same_sessions(got, want)
    letters = decoded(read_all(kafka, dead), "DeadLetter")
    assert len(letters) == len(sent) - len(valid)
    assert {d["step"] for d in letters} <= {"playback", "interactions"}
    assert not read_all(kafka, retractions, first_wait_s=1)
    assert not read_all(kafka, late, first_wait_s=1)
