"""The worker loop: drives a job's tasks from the source to the sinks.

A worker owns one task per input partition; a ``key_by`` on a new key hands its
records to the task that owns the key through an internal topic. One loop
iteration polls a batch, groups it by partition, runs each task over its part,
advances event time, then hands what sinks and dead letters collected to the
output writer; a checkpoint is taken when one is due.

The rest has modules of its own: which task owns which partition (``assignment``),
where a checkpoint commits (``checkpoint``), where state is restored and the consumer
rewound (``recovery``), where outputs are encoded and routed (``outputs``), how
internal topics are named (``topics``) and what the worker needs from Kafka
(``ports``). The HTTP service reads a :class:`WorkerStats` snapshot through
:meth:`Worker.call`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from runtime.api.bindings import Bindings
from runtime.api.io import CodecFactory, ExternalSink, SourceReader
from runtime.api.job import Job
from runtime.engine.assignment import Assignment
from runtime.engine.calls import CallQueue
from runtime.engine.checkpoint import Checkpointer, Outcome
from runtime.engine.context import Tap
from runtime.engine.outputs import OutputWriter
from runtime.engine.ports import (
    ChangelogRead,
    Offsets,
    ReportsLag,
    ReportsUnread,
    TableFeed,
    Transport,
)
from runtime.engine.queryable import MAX_ENTRIES, StateLookup, lookup_state
from runtime.engine.recovery import RewindGuard, seek_committed
from runtime.engine.stats import Phases, WorkerStats
from runtime.engine.task import wall_clock_ms
from runtime.engine.topics import internal_topics
from runtime.state.base import StateBackend

__all__ = ["UNREAD_CHECK_MS", "Worker", "WorkerOptions", "WorkerStats"]

log = logging.getLogger("shoal.worker")

# How often partitions with unread records are kept from going idle (ms): well below
# any sensible idle timeout.
UNREAD_CHECK_MS = 500


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Tuning of the worker loop."""

    batch_size: int = 10_000
    poll_timeout_s: float = 0.1
    checkpoint_interval_ms: int = 1_000


class Worker:
    """Runs ``job`` over every partition this worker is assigned.

    Args:
        job: the job.
        bindings: topics of sources, sinks and dead letters.
        transport: writes outputs and commits checkpoints.
        codecs: schema name -> codec.
        backend: opens one state store per (stateful step, task).
        offsets: reads the group's committed offsets and checkpoint metadata.
        changelog: reads a changelog partition from the start (restore).
        external: sinks outside Kafka, by sink name.
        options: loop tuning.
        clock: processing clock in epoch ms.
        repartition_partitions: partitions of the internal topics (every input
            partition is then its own task); ``None``: repartition in process.
        app: names internal and changelog topics (the consumer group; default: the job).
        tables: reads the job's table topics (``runtime.engine.tables``).
    """

    def __init__(
        self,
        job: Job,
        bindings: Bindings,
        transport: Transport,
        codecs: CodecFactory,
        backend: StateBackend,
        *,
        offsets: Offsets | None = None,
        changelog: ChangelogRead | None = None,
        external: Mapping[str, ExternalSink] | None = None,
        options: WorkerOptions = WorkerOptions(),
        clock: Callable[[], int] = wall_clock_ms,
        repartition_partitions: int | None = None,
        app: str | None = None,
        tables: TableFeed | None = None,
    ) -> None:
        self.job = job
        self.table_feed = tables if job.tables else None
        # Table topic -> the tables read from it.
        self.table_of_topic: dict[str, list[str]] = {}
        for node in job.tables:
            topic = bindings.tables.get(node.name, node.name)
            self.table_of_topic.setdefault(topic, []).append(node.name)
        self.app = app or job.name
        # Internal topics of repartitioning key_by steps (see runtime.engine.repartition):
        # with a partition count every input partition is its own task.
        self.internal_topics = internal_topics(job, self.app) if repartition_partitions else {}
        self.offsets = offsets
        self.options = options
        self.clock = clock
        self.topic_source = {**bindings.topic_sources(), **self.internal_topics}
        self.records_read = 0
        self.failed = False
        self.rewinds = 0
        self.last_progress = time.monotonic()
        # Live taps (step -> callback) and calls from other threads run between batches.
        self.taps: dict[str, Tap] = {}
        self.calls: CallQueue[Worker] = CallQueue()
        self.lag: dict[tuple[str, int], int] = {}
        self.assignment = Assignment(
            job,
            codecs,
            backend,
            clock,
            taps=self.taps,
            topic_source=self.topic_source,
            changelog=changelog,
            app=self.app,
            repartition_partitions=repartition_partitions,
            tables=self.table_feed,
            table_topics=bindings.tables,
        )
        # The assignment's own (never rebound) dicts, read by the loop and by tests.
        self.tasks = self.assignment.tasks
        self.positions = self.assignment.positions
        self.last_watermarks = self.assignment.last_watermarks
        # Records read or outputs written since the last commit.
        self._dirty = False
        self._next_unread_check = clock()
        # Optional capabilities of the consumer, checked once.
        self._lag = offsets if isinstance(offsets, ReportsLag) else None
        self._unread = offsets if isinstance(offsets, ReportsUnread) else None
        self._guard = RewindGuard(offsets)
        self.outputs = OutputWriter(
            job,
            bindings,
            transport,
            codecs,
            external or {},
            app=self.app,
            internal_partitions=repartition_partitions if self.internal_topics else None,
            clock=clock,
        )
        #: Where the loop's time goes (``runtime.engine.stats.PHASES``).
        self.phases = Phases()
        self.checkpointer = Checkpointer(transport, self.outputs, self.app, clock, self.phases)

    @property
    def checkpoints(self) -> int:
        """Checkpoints committed so far."""
        return self.checkpointer.committed

    @property
    def restored_records(self) -> int:
        """Changelog records replayed into state so far."""
        return self.assignment.restored_records

    @property
    def restore_seconds(self) -> float:
        """Time spent restoring state so far."""
        return self.assignment.restore_seconds

    # -- partitions -----------------------------------------------------------------
    def on_assign(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Partitions were assigned: open (and restore) their tasks before any record.

        Returns:
            Where to start reading each partition (negative: from the beginning): the
            committed offsets the tasks' state was restored to, from the same reading.
        """
        committed = self.offsets.committed(pairs) if self.offsets is not None else {}
        # "assigned [(topic, partition, offset, metadata), ...]": tests and operators grep it
        log.info("assigned %s", sorted((*tp, *committed.get(tp, (-1, ""))) for tp in pairs))
        self.checkpointer.seq.update(self.assignment.assign(pairs, committed))
        if self.table_feed is not None:
            self.table_feed.follow(self.assignment.table_positions())
        return {tp: self.positions[tp] for tp in pairs}

    def on_revoke(self, pairs: list[tuple[str, int]]) -> None:
        """Partitions are going: checkpoint, then close the tasks that lost them all."""
        log.info("revoked %s", sorted(pairs))
        if not self.failed:
            self.checkpoint()
        for tp in pairs:
            self._guard.forget(tp)
        self.assignment.revoke(pairs)

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint(self) -> None:
        """Commit outputs, state changes and offsets together (:mod:`.checkpoint`); a
        commit that lost a race with a rebalance rewinds."""
        outcome = self.checkpointer.take(
            self.tasks, self.positions, self.assignment.task_id, self.topic_source, self._dirty
        )
        if outcome is Outcome.ABORTED:
            self.rewind()
        elif outcome is Outcome.COMMITTED:
            self._dirty = False
            if self._lag is not None:
                self.lag = self._lag.lag(self.positions)

    def rewind(self) -> None:
        """Drop uncommitted progress: reopen every task at its committed checkpoint.

        Local state never runs ahead of Kafka, so reopening restores exactly the last
        committed state; the consumer is moved back to the committed offsets.
        """
        self.on_assign(self.assignment.retire_all())
        if self.offsets is not None:
            seek_committed(self.offsets, self.positions)
            self._guard.expect(self.positions)
        self._dirty = False
        self.rewinds += 1

    # -- loop -----------------------------------------------------------------------
    def run(
        self,
        source: SourceReader,
        *,
        should_stop: Callable[[], bool],
        on_tick: Callable[[Worker], None] | None = None,
        tick_s: float = 1.0,
    ) -> None:
        """Loop until ``should_stop()``; then checkpoint (graceful shutdown)."""
        next_tick = time.monotonic() + tick_s
        try:
            while not should_stop():
                self.step(source)
                if on_tick is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick_s
                    on_tick(self)
            self.checkpoint()
        except BaseException:
            # A half-processed batch must never be committed: the restart replays it.
            self.failed = True
            raise

    def step(self, source: SourceReader) -> int:
        """One iteration: poll, process, write; checkpoint when due. Returns records read."""
        self.calls.serve(self)
        self.last_progress = time.monotonic()
        phases, clock = self.phases, time.perf_counter
        t = clock()
        if self.table_feed is not None:
            self._read_tables(self.table_feed)
        t, phases.operators = clock(), phases.operators + clock() - t
        msgs = source.poll(self.options.batch_size, self.options.poll_timeout_s)
        t, phases.fetch = clock(), phases.fetch + clock() - t
        if msgs:
            decoded_before = phases.decode
            groups: dict[tuple[str, int], list[Any]] = {}
            for m in msgs:
                tp: Any = (m.topic(), m.partition())
                group = groups.get(tp)
                if group is None:
                    groups[tp] = [m]
                else:
                    group.append(m)
            tasks, positions, names = self.tasks, self.positions, self.topic_source
            single, guard = self.assignment.single_task, self._guard
            for (topic, partition), group in groups.items():
                task = tasks.get(0 if single else partition)
                if task is None:
                    continue  # revoked while in flight: the new owner reads it again
                if guard:
                    group = guard.accept(topic, partition, group)
                    if not group:
                        continue
                decoding = task.decode_seconds
                if topic in self.internal_topics:
                    task.ingest_internal(names[topic], partition, group)
                else:
                    task.ingest(names[topic], partition, group)
                phases.decode += task.decode_seconds - decoding
                positions[(topic, partition)] = group[-1].offset() + 1
            self.records_read += len(msgs)
            self._dirty = True
            now_t = clock()
            ingest = now_t - t
            phases.operators += ingest - (phases.decode - decoded_before)
            t = now_t
        now = self.clock()
        if now >= self._next_unread_check:
            self._next_unread_check = now + UNREAD_CHECK_MS
            self._hold_unread()
        for task in self.tasks.values():
            task.advance()
        t, phases.operators = clock(), phases.operators + clock() - t
        if self.outputs.write(self.tasks.values()):
            self._dirty = True
        phases.emit += clock() - t
        if now - self.checkpointer.last_pass_ms >= self.options.checkpoint_interval_ms:
            self.checkpoint()
        return len(msgs)

    def _read_tables(self, feed: TableFeed) -> None:
        """Apply table records that came since the last step to every task holding
        their partition (before the batch: a record is joined as of its processing)."""
        updates = feed.poll()
        if not updates:
            return
        by_topic: dict[str | None, list[Any]] = {}
        for raw in updates:
            by_topic.setdefault(raw.topic(), []).append(raw)
        for topic, raws in by_topic.items():
            for name in self.table_of_topic.get(topic or "", ()):
                for task in self.tasks.values():
                    task.ingest_table(name, raws)

    def _hold_unread(self) -> None:
        """Partitions with records fetched or fetchable but not yet read are behind,
        not idle: a consumer catching up may leave one waiting longer than its idle
        timeout while others are served, and declaring it idle would move the
        watermark past its unread records (making them late)."""
        if self._unread is None:
            return
        for topic, partition in self._unread.unread(self.positions):
            source = self.topic_source.get(topic)
            task = self.tasks.get(self.assignment.task_id(partition))
            if source is not None and task is not None:
                task.hold_active(source, partition)

    # -- what other threads see -----------------------------------------------------
    def call(self, fn: Callable[[Worker], Any], deadline: float | None = None) -> Future[Any]:
        """Run ``fn(worker)`` on the worker's thread between two batches (thread-safe).

        State stores belong to the worker thread; the HTTP service reads state and
        metrics through this. The queue is bounded and served a few calls per loop
        iteration (see :mod:`runtime.engine.calls`).

        Args:
            fn: the call.
            deadline: ``time.monotonic()`` after which the call is dropped unrun.

        Raises:
            WorkerBusy: too many calls are pending.
        """
        return self.calls.submit(fn, deadline)

    def query_state(self, step: str, key: Any, limit: int = MAX_ENTRIES) -> StateLookup:
        """Entries of a stateful step for ``key`` (at most ``limit``), found by key.

        Window state is keyed ``(key, window_start)``, process state ``(key, state)``;
        both are read as one key range (see :mod:`runtime.engine.queryable`).
        """
        return lookup_state(self.tasks.items(), step, key, limit)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters summed over tasks (closed ones included)."""
        return self.assignment.counters()

    def snapshot(self) -> WorkerStats:
        """What the worker reports about itself (call on the worker thread: see ``call``)."""
        ckpt = self.checkpointer
        return WorkerStats(
            failed=self.failed,
            uncommitted=self._dirty,
            counters=self.counters(),
            lag=dict(self.lag),
            watermarks={tid: task.watermark for tid, task in self.tasks.items()},
            partitions=self.assignment.partitions_by_task(),
            state_entries=self.assignment.state_entries(),
            checkpoints=ckpt.committed,
            checkpoint_seconds=ckpt.last_seconds,
            checkpoint_records=ckpt.last_records,
            checkpoint_failures=ckpt.failures,
            last_checkpoint_ms=ckpt.last_pass_ms,
            checkpoint_interval_ms=self.options.checkpoint_interval_ms,
            restore_seconds=self.assignment.restore_seconds,
            restored_records=self.assignment.restored_records,
            records_read=self.records_read,
            rewinds=self.rewinds,
            checkpoint_histogram=ckpt.durations.snapshot(),
            latency_histogram=self.outputs.sink_latency.snapshot(),
            phase_seconds=self.phases.snapshot(),
        )

    def close(self) -> None:
        """Close every task's state (``last_watermarks`` keeps their final watermarks)."""
        self.assignment.close()
