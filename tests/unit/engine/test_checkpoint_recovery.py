"""Checkpoints and recovery of a real ``Worker``, through a broker-less fake of Kafka.

``FakeKafka`` keeps topics as lists of records and commits the way a Kafka transaction
does: what a checkpoint wrote becomes visible (to the sink reader, the changelog
reader and the committed offsets) only when ``commit`` succeeds, and an aborted
commit (``CheckpointAborted``, as after a lost rebalance race) discards it. The
worker, its tasks, state stores and codecs are the real ones. Results are checked
against a brute-force reference computed here from the same input.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Job, Json, ValueState, WatermarkStrategy
from runtime.api.bindings import Bindings
from runtime.api.errors import CheckpointAborted
from runtime.api.io import RefusedWrite
from runtime.engine.checkpoint import CheckpointMeta, Outcome
from runtime.engine.recovery import RewindGuard, latest_checkpoint, restore_tasks
from runtime.engine.task import Task
from runtime.engine.topics import changelog_topic
from runtime.engine.worker import Worker, WorkerOptions
from runtime.state.base import StateBackend
from runtime.state.memory import MemoryBackend
from runtime.state.serde import encode_key, encode_value

T0 = 1_700_000_000_000
TOTAL = ValueState("total")
TP = ("events", 0)


@dataclass(frozen=True, slots=True)
class Msg:
    """A stand-in for a Kafka message (the accessors the engine uses)."""

    topic_name: str
    offset_no: int
    data: bytes

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_no

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self.data

    def timestamp(self) -> tuple[int, int]:
        return (1, T0)


class FakeKafka:
    """Topics, one consumer position and transactions, in memory (a fake of Kafka).

    ``write``/``write_many`` go into the open transaction; ``commit`` makes them and
    the offsets visible at once, unless ``abort_next`` is set: then it discards them
    and raises ``CheckpointAborted``.
    """

    def __init__(self, inputs: list[bytes]) -> None:
        self.inputs = [Msg("events", i, data) for i, data in enumerate(inputs)]
        self.position = 0
        self.topics: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        self.open: list[tuple[tuple[str, int], bytes | None, bytes | None]] = []
        self.offsets: dict[tuple[str, int], tuple[int, str]] = {}
        self.abort_next = False
        self.commits = 0
        self.seeks: list[dict[tuple[str, int], int]] = []

    # -- source ----------------------------------------------------------------------
    def poll(self, max_records: int, timeout_s: float) -> list[Msg]:
        batch = self.inputs[self.position : self.position + max_records]
        self.position += len(batch)
        return batch

    def close(self) -> None:
        pass

    # -- transport -------------------------------------------------------------------
    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        self.open.append(((topic, partition or 0), key, value))

    def write_many(self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
        self.open.extend(((topic, 0), k, v) for k, v, _ in records)

    def commit(self, offsets: Mapping[tuple[str, int], tuple[int, str]]) -> None:
        if self.abort_next:
            self.abort_next = False
            self.open.clear()
            raise CheckpointAborted("the group moved on (a fake rebalance)")
        for tp, key, value in self.open:
            self.topics.setdefault(tp, []).append((key, value))
        self.open.clear()
        self.offsets.update(offsets)
        self.commits += 1

    def take_refused(self) -> list[RefusedWrite]:
        return []

    # -- offsets ---------------------------------------------------------------------
    def committed(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, str]]:
        return {tp: self.offsets[tp] for tp in pairs if tp in self.offsets}

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.seeks.append(dict(offsets))
        self.position = offsets[TP]

    def beginning(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(pairs, 0)

    # -- changelog reader ------------------------------------------------------------
    def fence(self) -> None:
        """A new worker took over the transactional id: the open transaction aborts."""
        self.open.clear()

    def read_changelog(
        self, topic: str, partition: int
    ) -> Iterator[tuple[bytes, bytes | None, int]]:
        for offset, (key, value) in enumerate(self.topics.get((topic, partition), [])):
            assert key is not None
            yield key, value, offset

    def committed_values(self, topic: str) -> list[Any]:
        return [json.loads(v) for _, v in self.topics.get((topic, 0), []) if v is not None]


class Totals:
    """Each user's running total of ``amount`` (keyed state)."""

    states = (TOTAL,)

    def process(self, value: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        handle = ctx.state(TOTAL)
        total = (handle.get() or 0) + value["amount"]
        handle.set(total)
        return [{"user": ctx.key, "total": total}]

    def on_timer(self, ts: int, ctx: Any) -> list[Any]:
        return []


def totals_job() -> Job:
    job = Job("totals")
    events = job.source(
        "events",
        schema="",
        timestamp=lambda e: e["t"],
        watermarks=WatermarkStrategy.bounded(timedelta(0), idle_timeout=None),
    )
    keyed = events.key_by("by_user", lambda e: e["user"], repartition=False)
    keyed.process("sum", Totals()).sink("out", Json())
    return job


def events(n: int) -> list[dict[str, Any]]:
    return [{"user": f"u{i % 7}", "amount": (i * 37) % 11 + 1, "t": T0 + i} for i in range(n)]


def reference_totals(values: list[dict[str, Any]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for v in values:
        out[v["user"]] += v["amount"]
    return dict(out)


def reference_outputs(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every running total, in input order (what the sink gets exactly once)."""
    running: Counter[str] = Counter()
    out = []
    for v in values:
        running[v["user"]] += v["amount"]
        out.append({"user": v["user"], "total": running[v["user"]]})
    return out


def backend(kind: str, folder: Path) -> StateBackend:
    if kind == "memory":
        return MemoryBackend()
    from runtime.state.rocksdb import RocksDBBackend

    return RocksDBBackend(folder)


def worker_on(kafka: FakeKafka, job: Job, state: StateBackend) -> Worker:
    worker = Worker(
        job,
        Bindings.for_job(job),
        kafka,
        codec_factory(),
        state,
        offsets=kafka,
        changelog=kafka.read_changelog,
        options=WorkerOptions(batch_size=10, checkpoint_interval_ms=10**9),
        clock=lambda: T0,
    )
    kafka.position = max(0, worker.on_assign([TP])[TP])
    return worker


def state_totals(worker: Worker, users: set[str]) -> dict[str, int]:
    found = {}
    for user in users:
        entries = worker.query_state("sum", user).entries
        if entries:
            (_, _, (total, _)) = entries[0]
            found[user] = total
    return found


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_an_aborted_checkpoint_rewinds_and_nothing_is_lost_or_doubled(
    kind: str, tmp_path: Path
) -> None:
    values = events(60)
    kafka = FakeKafka([json.dumps(v).encode() for v in values])
    job = totals_job()
    worker = worker_on(kafka, job, backend(kind, tmp_path))
    for _ in range(2):
        worker.step(kafka)
    worker.checkpoint()  # 20 records committed
    assert kafka.commits == 1 and kafka.offsets[TP][0] == 20
    for _ in range(2):
        worker.step(kafka)
    kafka.abort_next = True
    worker.checkpoint()  # 20 more records, aborted: rewind to offset 20
    assert worker.rewinds == 1 and kafka.seeks[-1] == {TP: 20}
    assert worker.snapshot().checkpoint_failures == 1
    while worker.step(kafka):
        pass
    worker.checkpoint()
    out = Bindings.for_job(job).sinks["out"]
    assert kafka.committed_values(out) == reference_outputs(values)
    users = {v["user"] for v in values}
    assert state_totals(worker, users) == reference_totals(values)
    worker.close()


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_a_restarted_worker_restores_exactly_the_committed_state(kind: str, tmp_path: Path) -> None:
    values = events(45)
    kafka = FakeKafka([json.dumps(v).encode() for v in values])
    job = totals_job()
    first = worker_on(kafka, job, backend(kind, tmp_path / "first"))
    for _ in range(3):
        first.step(kafka)
    first.checkpoint()
    first.step(kafka)  # read but never committed: the crash loses it
    first.close()
    kafka.fence()
    committed = values[:30]
    meta = CheckpointMeta.parse(kafka.offsets[TP][1])
    assert meta is not None and meta.seq == 1 and meta.max_ts == T0 + 29

    # A new worker (fresh local state) replays the changelog, then reads on from 30.
    second = worker_on(kafka, job, backend(kind, tmp_path / "second"))
    users = {v["user"] for v in values}
    assert second.restored_records == len(kafka.topics[(changelog_topic("totals", "sum"), 0)])
    assert state_totals(second, users) == reference_totals(committed)
    assert kafka.position == 30
    while second.step(kafka):
        pass
    second.checkpoint()
    assert state_totals(second, users) == reference_totals(values)
    out = Bindings.for_job(job).sinks["out"]
    assert kafka.committed_values(out) == reference_outputs(values)
    second.close()


def test_local_state_that_holds_the_committed_checkpoint_is_reused(tmp_path: Path) -> None:
    from runtime.state.rocksdb import RocksDBBackend

    values = events(30)
    kafka = FakeKafka([json.dumps(v).encode() for v in values])
    job = totals_job()
    local = RocksDBBackend(tmp_path)
    first = worker_on(kafka, job, local)
    while first.step(kafka):
        pass
    first.checkpoint()
    first.close()
    local.close()
    local = RocksDBBackend(tmp_path)
    again = worker_on(kafka, job, local)
    assert again.restored_records == 0  # nothing replayed: the local store is current
    assert state_totals(again, {v["user"] for v in values}) == reference_totals(values)
    again.close()
    local.close()


def test_nothing_read_nothing_committed() -> None:
    kafka = FakeKafka([])
    worker = worker_on(kafka, totals_job(), MemoryBackend())
    assert worker.checkpointer.take({}, {}, lambda p: p, {}, False) is Outcome.NOTHING_TO_COMMIT
    worker.checkpoint()
    assert kafka.commits == 0 and worker.checkpoints == 0
    assert worker.snapshot().last_checkpoint_ms == T0


def test_checkpoint_metadata_round_trips_and_foreign_metadata_is_ignored() -> None:
    meta = CheckpointMeta(seq=7, id="a1b2", max_ts=T0, wm=T0 - 5, at=T0 + 9)
    assert CheckpointMeta.parse(meta.to_json()) == meta
    assert meta.name == "7.a1b2"
    for foreign in ("", "plain text", "[1]", '{"id":"x"}', '{"seq":"many"}', "{broken"):
        assert CheckpointMeta.parse(foreign) is None, foreign
    older = CheckpointMeta.parse('{"seq":3}')  # metadata written before ids existed
    assert older == CheckpointMeta(seq=3)
    assert latest_checkpoint([meta.to_json(), '{"seq":3}', "junk"]) == meta


class FakeSeeks:
    """Offsets that record seeks (a fake)."""

    def __init__(self) -> None:
        self.seeks: list[dict[tuple[str, int], int]] = []

    def committed(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, str]]:
        return {}

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.seeks.append(dict(offsets))

    def beginning(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(pairs, 0)


def batch(first: int, n: int = 3) -> list[Msg]:
    return [Msg("events", o, b"{}") for o in range(first, first + n)]


def test_rewind_guard_drops_replayed_records_and_seeks_again_when_a_seek_was_lost() -> None:
    offsets = FakeSeeks()
    guard = RewindGuard(offsets)
    guard.expect({TP: 10, ("events", 1): 5})
    assert [m.offset() for m in guard.accept("events", 0, batch(8))] == [10]
    assert guard  # partition 1 still expected
    assert guard.accept("events", 1, batch(7)) == []  # past the target: the seek was lost
    assert offsets.seeks == [{("events", 1): 5}]
    assert guard.accept("events", 1, batch(7)) == []
    assert len(offsets.seeks) == 2
    # a third look at the same gap is accepted (offsets of transactional input skip)
    assert [m.offset() for m in guard.accept("events", 1, batch(7))] == [7, 8, 9]
    assert not guard


class SlowTotals(Totals):
    """``Totals`` that takes 2 ms per record (time the operators phase must show)."""

    def process(self, value: dict[str, Any], ctx: Any) -> list[dict[str, Any]]:
        import time

        time.sleep(0.002)
        return super().process(value, ctx)


def test_the_loop_counts_where_its_time_goes() -> None:
    """Each phase is counted once, apart from the others: a slow step's time is in
    ``operators`` and nowhere else, and the phases never add up to more than the wall
    clock of the steps and checkpoints that spent them."""
    import time

    from runtime.engine.stats import PHASES

    values = events(20)
    kafka = FakeKafka([json.dumps(v).encode() for v in values])
    job = Job("slow")
    bound = WatermarkStrategy.bounded(timedelta(0), idle_timeout=None)
    source = job.source("events", schema="", timestamp=lambda e: e["t"], watermarks=bound)
    source.key_by("by_user", lambda e: e["user"], repartition=False).process(
        "sum", SlowTotals()
    ).sink("out", Json())
    worker = worker_on(kafka, job, MemoryBackend())
    t0 = time.perf_counter()
    while worker.step(kafka):
        pass
    worker.checkpoint()
    elapsed = time.perf_counter() - t0
    phases = worker.snapshot().phase_seconds
    assert list(phases) == list(PHASES)
    assert phases["operators"] >= 20 * 0.002
    assert all(phases[p] > 0 for p in ("fetch", "decode", "emit", "state", "commit")), phases
    assert sum(phases.values()) <= elapsed
    worker.close()


class ChunkedChangelog:
    """Changelog partitions in memory, read the way a consumer of all of them at once
    hands them over: chunks of every partition interleaved in a seeded random order."""

    def __init__(self, topics: dict[tuple[str, int], list[tuple[bytes, bytes | None]]]) -> None:
        self.topics = topics
        self.asked: list[list[tuple[str, int]]] = []

    def __call__(self, topic: str, partition: int) -> Iterator[tuple[bytes, bytes | None, int]]:
        raise AssertionError("partitions were read one at a time")

    def read_many(
        self, pairs: Sequence[tuple[str, int]], chunk: int
    ) -> Iterator[tuple[tuple[str, int], list[tuple[bytes, bytes | None, int]]]]:
        self.asked.append(list(pairs))
        rng = random.Random(7)
        queues = {
            tp: [(k, v, o) for o, (k, v) in enumerate(self.topics.get(tp, []))] for tp in pairs
        }
        while any(queues.values()):
            tp = rng.choice([tp for tp, q in queues.items() if q])
            size = min(chunk, rng.randint(1, 5))
            yield tp, queues[tp][:size]
            del queues[tp][:size]


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
@pytest.mark.parametrize("together", [True, False], ids=["together", "one-by-one"])
def test_tasks_restore_their_changelog_partitions_together_or_one_by_one(
    kind: str, together: bool, tmp_path: Path
) -> None:
    job = totals_job()
    rng = random.Random(11)
    topic = changelog_topic("totals", "sum")
    topics: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
    expected: dict[int, dict[Any, Any]] = {}
    for tid in range(4):
        model: dict[Any, Any] = {}
        records: list[tuple[bytes, bytes | None]] = []
        for _ in range(rng.randint(0, 60)):
            key = f"u{rng.randint(0, 9)}"
            value = None if rng.random() < 0.2 else [rng.randint(0, 99), tid]
            records.append((encode_key(key), None if value is None else encode_value(value)))
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        topics[(topic, tid)] = records
        expected[tid] = model
    state = backend(kind, tmp_path)
    tasks = [
        (Task(job, tid, codec_factory(), state), tid, CheckpointMeta(3, "c")) for tid in range(4)
    ]
    reader = ChunkedChangelog(topics)
    plain = FakeKafka([])
    plain.topics = dict(topics)
    restored = restore_tasks(tasks, reader if together else plain.read_changelog, "totals")
    if together:
        assert reader.asked == [sorted((topic, tid) for tid in range(4))]  # one read for all
    for task, tid, _ in tasks:
        (store,) = task.stores
        assert dict(store.items()) == expected[tid]
        assert restored[tid].records == len(topics[(topic, tid)])
        assert restored[tid].seq == 3
    # Restored stores hold the checkpoint: reopening them reuses them, nothing replayed.
    for task, _, _ in tasks:
        task.close()
    again = [
        (Task(job, tid, codec_factory(), state), tid, CheckpointMeta(3, "c")) for tid in range(4)
    ]
    if kind == "rocksdb":
        assert all(r.records == 0 for r in restore_tasks(again, reader, "totals").values())
    for task, _, _ in again:
        task.close()
    state.close()
