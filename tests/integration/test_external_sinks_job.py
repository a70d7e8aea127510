"""Reference jobs on the real broker with their sinks bound to real PostgreSQL and Redis.

Each run has a fault in the middle: PostgreSQL stopped for ten seconds, Redis
restarted. The worker's checkpoint waits in the sink's retries (with backoff) until
the server is back, then goes on; the end result must equal the brute-force
reference of the job's own tests: nothing lost, nothing twice, values right. A
second run of the QoE job over the same input replays every record into the same
table, which must not change.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.personalization import Catalogue, Model, build
from jobs.qoe import job as qoe_job
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.api.watermarks import DEFAULT_MIN_VALID_MS
from runtime.composition import kafka_runner
from runtime.engine.worker import Worker, WorkerOptions
from runtime.generator import Degradation, GeneratorConfig, catalogue
from runtime.runner import RunConfig
from tests.integration.helpers import produce_generated, read_all, run_until_quiet, unique
from tests.unit.jobs.test_personalization import GAP_MS, HALF_LIFE_MS, MIN_CHANGE, TOP_N, Reference
from tests.unit.jobs.test_qoe import (
    MAX_FUTURE_MS,
    MIN_VALID_MS,
    MINUTE,
    assert_same_metrics,
    facts,
    reference_metrics,
)

if TYPE_CHECKING:
    from tests.services import PostgresServer, RedisServer

# the fixtures postgres and redis_server: a plugin, so one server each for the session
# (imported here, tests.services would be imported before pytest rewrites it)
pytest_plugins = ["tests.services"]
pytestmark = pytest.mark.integration

TOL = MIN_CHANGE + 1e-9


class Outage:
    """Stops a server when called, starts it again ``seconds`` later from a thread."""

    def __init__(self, stop: Callable[[], None], start: Callable[[], None], seconds: float):
        self.stop, self.start, self.seconds = stop, start, seconds
        self.thread: threading.Thread | None = None
        self.started_at = self.ended_at = 0.0

    def __call__(self) -> None:
        self.stop()
        self.started_at = time.monotonic()
        self.thread = threading.Thread(target=self._restart)
        self.thread.start()

    def _restart(self) -> None:
        time.sleep(self.seconds)
        self.start()
        self.ended_at = time.monotonic()

    def join(self) -> None:
        """Wait until the server is back (if the fault happened)."""
        if self.thread is not None:
            self.thread.join()


def run_job(
    kafka: str,
    job: Job,
    bindings: Bindings,
    *,
    fault_when: Callable[[Worker, dict[str, Any]], bool] | None = None,
    fault: Callable[[], None] | None = None,
    idle_s: float = 4.0,
    timeout_s: float = 120.0,
) -> tuple[Worker, dict[str, Any]]:
    """Run ``job`` in one worker until its input is quiet; ``fault()`` once, as soon as
    ``fault_when(worker, sinks)``. Returns the worker and its external sinks."""
    config = RunConfig(
        bootstrap=kafka,
        state="memory",
        state_dir=Path(tempfile.mkdtemp(prefix="shoal-state-")),
        group=f"{job.name}-{uuid.uuid4().hex[:6]}",
        worker_id="w0",
        # small batches and frequent checkpoints: many flushes, some during the fault
        options=WorkerOptions(batch_size=500, checkpoint_interval_ms=300),
        # small fetches interleave the partitions, so watermarks (and outputs) advance
        # all through the run instead of after one partition was read to its end
        source_overrides={"max.partition.fetch.bytes": 32 * 1024},
    )
    runner = kafka_runner(job, bindings, config)
    worker, sinks = runner.worker, dict(runner.external)
    assert worker is not None
    pending, written_at_fault = fault, -1

    def maybe_fault() -> None:
        nonlocal pending, written_at_fault
        if pending is not None and fault_when is not None and fault_when(worker, sinks):
            pending()
            pending, written_at_fault = None, _written(sinks)

    try:
        run_until_quiet(runner, idle_s=idle_s, timeout_s=timeout_s, before_step=maybe_fault)
    finally:
        runner.close()
    assert pending is None, "the job ended before the fault"
    # mid-run: the job still had results to write after the fault
    assert written_at_fault < _written(sinks), (written_at_fault, _written(sinks))
    return worker, sinks


def _written(sinks: dict[str, Any]) -> int:
    """Rows or keys the external sinks wrote so far."""
    return sum(
        getattr(s, "rows_written", 0) + getattr(s, "keys_written", 0) for s in sinks.values()
    )


# --- QoE -> PostgreSQL ----------------------------------------------------------------


def _table_rows(server: PostgresServer, table: str) -> list[dict[str, Any]]:
    with psycopg.connect(server.url, row_factory=dict_row) as conn:
        return conn.execute(f'SELECT * FROM "{table}"').fetchall()


def test_qoe_to_postgres_survives_a_stopped_server(kafka: str, postgres: PostgresServer) -> None:
    playback, excluded, dead = unique("playback"), unique("excluded"), unique("dead")
    table = f"qoe_{uuid.uuid4().hex[:8]}"
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4)])
    start_ms = (time.time_ns() // 1_000_000 - 3 * 3_600_000) // 3_600_000 * 3_600_000
    config = GeneratorConfig(
        start_ms=start_ms, seed=41, users=300, late_rate=0.0, out_of_order_ms=2_000,
        duplicate_rate=0.01, malformed_rate=0.002, bad_timestamp_rate=0.002,
        interaction_ratio=0.0, degradations=(Degradation("cdn-c", 2 * MINUTE, 6 * MINUTE),),
    )  # fmt: skip
    sent = produce_generated(kafka, {"playback": playback}, config, 12_000)
    bindings = Bindings.for_job(qoe_job, [
        f"playback={playback}", f"qoe-metrics={postgres.sink_url(table=table)}",
        f"qoe-excluded-events={excluded}", f"dead-letters={dead}",
    ])  # fmt: skip
    outage = Outage(postgres.stop, postgres.start, 10.0)
    try:
        # as soon as the job reads: its results leave through a repartition hop (visible
        # once that hop's transaction commits), so they reach the sink in one burst, and
        # the burst must wait out the outage
        worker, sinks = run_job(
            kafka, qoe_job, bindings, fault=outage,
            fault_when=lambda w, s: w.records_read > 0,
        )  # fmt: skip
    finally:
        outage.join()
    now_ms = time.time_ns() // 1_000_000

    # the sink waited out the outage: it retried with growing waits and reconnected
    sink = sinks["qoe-metrics"]
    assert sink.retries >= 3  # it waited the outage out with backoff
    assert outage.ended_at - outage.started_at >= 10.0

    # --- the reference over what was sent -------------------------------------------------
    decodable = [r.value for r in sent if r.corrupt is None]
    valid = [v for v in decodable if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
    first_copies = list({v["event_id"]: v for v in reversed(valid)}.values())
    # several tasks (the job repartitions): windows before the slowest task's watermark
    # must all be there; any other row must be a complete window, exact as well
    watermark = min(worker.last_watermarks.values())
    reference = reference_metrics(facts(first_copies))
    rows = _table_rows(postgres, table)
    keys = {
        (r["window_kind"], r["group_kind"], r["title_id"], r["device_type"], r["country"],
         r["cdn"], r["window_start_ms"])
        for r in rows
    }
    want = {
        key: m
        for key, m in reference.items()
        if key[-1] + (MINUTE if key[0] == "tumbling_1m" else 5 * MINUTE) <= watermark
        or key in keys
    }
    assert len(want) > 500
    assert len(rows) == len(want)
    assert_same_metrics(rows, want)  # every window once, with the right values
    assert sink.rows_written >= len(rows)
    assert worker.counters()["playback"]["in"] == len(sent)

    # --- a replay of everything into the same table changes nothing ---------------------
    again, replayed = run_job(kafka, qoe_job, bindings)
    assert min(again.last_watermarks.values()) == watermark
    assert replayed["qoe-metrics"].rows_written >= len(rows)

    def by_key(r: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(str(r[k]) for k in ("window_kind", "group_kind", "title_id", "device_type",
                                         "country", "cdn", "window_start_ms"))  # fmt: skip

    assert sorted(_table_rows(postgres, table), key=by_key) == sorted(rows, key=by_key)
    # the Kafka outputs of the same runs are complete too
    assert len(read_all(kafka, dead, first_wait_s=10)) == 2 * (len(sent) - len(valid))


# --- personalization -> Redis ---------------------------------------------------------


def test_personalization_to_redis_survives_a_restart(
    kafka: str,
    redis_server: RedisServer,
) -> None:
    playback, interactions, dead = unique("playback"), unique("interactions"), unique("dead")
    prefix = f"scores-{uuid.uuid4().hex[:6]}"
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 4)])
    config = GeneratorConfig(
        seed=37, users=100, out_of_order_ms=2000, out_of_order_rate=0.05, late_rate=0.005,
        late_delay_ms=(5_000, 30_000), duplicate_rate=0.01, malformed_rate=0.002,
        bad_timestamp_rate=0.002,
    )  # fmt: skip
    sent = produce_generated(kafka, {"playback": playback, "interactions": interactions},
                             config, 10_000)  # fmt: skip
    cat = Catalogue.of(catalogue(config))
    job = build(
        half_life=timedelta(milliseconds=HALF_LIFE_MS), top_n=TOP_N, catalogue=cat,
        abandon_after=timedelta(milliseconds=GAP_MS), min_change=MIN_CHANGE,
    )  # fmt: skip
    bindings = Bindings.for_job(job, [
        f"playback={playback}", f"interactions={interactions}",
        f"personalization-scores={redis_server.sink_url(prefix=prefix)}",
        f"dead-letters={dead}",
    ])  # fmt: skip
    outage = Outage(redis_server.stop, redis_server.start, 2.0)
    try:
        worker, sinks = run_job(
            kafka, job, bindings, fault=outage, idle_s=6.0,
            # Only the input's progress: waiting for a first write as well made the
            # fault land after the last output on a loaded machine (the whole input can
            # be read before the first checkpoint flushes).
            fault_when=lambda w, s: w.records_read >= len(sent) * 2 // 5,
        )  # fmt: skip
    finally:
        outage.join()
    assert sinks["personalization-scores"].retries >= 1
    task_of = {
        m.key().decode(): m.partition()
        for topic in (playback, interactions) for m in read_all(kafka, topic)
    }  # fmt: skip

    # --- the reference over every valid record that was sent -----------------------------
    far = config.start_ms + 10 * 24 * 3_600_000
    valid = [
        r for r in sent
        if r.corrupt is None and DEFAULT_MIN_VALID_MS <= r.value["event_time_ms"] <= far
    ]  # fmt: skip
    ref = Reference(cat, Model.load())
    for r in valid:
        ref.receive(r.stream, r.value)
    for task, watermark in worker.last_watermarks.items():
        ref.watermark(watermark, {u for u, t in task_of.items() if t == task})
    assert worker.counters()["scores"]["in"] == len(valid)  # the job read everything

    # --- what Redis holds: each user's latest scores -------------------------------------
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        users = {k.split(":")[1] for k in client.scan_iter(f"{prefix}:*")}
        assert users == {u for u, s in ref.users.items() if s.now is not None}
        assert len(users) > 50
        for user_id in users:
            got = client.hgetall(f"{prefix}:{user_id}")
            top = client.zrevrange(f"{prefix}:{user_id}:top", 0, -1, withscores=True)
            now, genres, titles = ref.state(user_id)
            want = ref.top(genres, titles)
            assert int(got["updated_ms"]) <= now
            assert got["model_version"] == Model.load().version
            assert [t["title_id"] for t in json.loads(got["top_titles"])] == [t for t, _ in want]
            assert {t for t, _ in top} == {t for t, _ in want}, user_id
            for title, score in top:
                assert abs(score - dict(want)[title]) <= TOL, (user_id, title)
            affinity = json.loads(got["genre_affinity"])
            assert affinity.keys() == genres.keys()
            for genre, value in affinity.items():
                assert abs(value - genres[genre]) <= TOL * max(1.0, abs(value)), (user_id, genre)
    finally:
        client.close()
