"""Where offsets commit: the worker loop that drives tasks from sources to sinks.

A worker owns one task per input partition; a ``key_by`` on a new key hands its
records to the task that owns the key through an internal topic. One loop
iteration polls a batch, groups it by partition, runs each task over its part,
advances event time, then encodes what sinks and dead letters collected and hands
it to the transport.

A checkpoint (every ``checkpoint_interval_ms``, on revocation and on shutdown)
commits, together: the outputs written since the last one, every task's state
changes (to a compacted changelog topic per stateful step and task), and the
input offsets with metadata naming the task's checkpoint sequence number and
event-time progress. With the exactly-once transport that is one Kafka
transaction; with at-least-once the outputs are flushed before the offsets
commit. Local state (RocksDB) is written only after the commit succeeded, so it
never runs ahead of Kafka: a task whose local checkpoint number equals the
committed one reuses it; otherwise it restores from the changelog first.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

from runtime.api.bindings import Bindings
from runtime.api.errors import CheckpointAborted, OutputRefused
from runtime.api.graph import KeyByNode
from runtime.api.io import CodecFactory, ExternalSink, RefusedWrite, SourceReader
from runtime.api.job import Job
from runtime.engine.calls import CallQueue
from runtime.engine.queryable import MAX_ENTRIES, StateLookup, lookup_state
from runtime.engine.recovery import apply_changes, check_local_state
from runtime.engine.repartition import (
    encode_marker,
    internal_source,
    partition_for,
)
from runtime.engine.stats import CHECKPOINT_BOUNDS_S, LATENCY_BOUNDS_S, Histogram
from runtime.engine.task import DeadLetter, Task, wall_clock_ms
from runtime.state.base import StateBackend

log = logging.getLogger("shoal.worker")

_META = "shoal.checkpoint"
# How often partitions with unread records are kept from going idle (ms): well below
# any sensible idle timeout.
UNREAD_CHECK_MS = 500


class Transport(Protocol):
    """What the worker writes through and commits with (see connectors.kafka.transport)."""

    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None: ...

    def write_many(
        self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]
    ) -> None: ...

    def commit(self, offsets: Mapping[tuple[str, int], tuple[int, str]]) -> None: ...

    def take_refused(self) -> list[RefusedWrite]:
        """Records not written because their topic would refuse them (to dead-letter)."""
        ...


class Offsets(Protocol):
    """Committed offsets and metadata of the worker's consumer group, and rewinding."""

    def committed(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, str]]: ...

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None: ...

    def beginning(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...


# Reads a changelog partition from the start: (key, value, offset) records, oldest first.
ChangelogRead = Callable[[str, int], Iterator[tuple[bytes, bytes | None, int]]]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Tuning of the worker loop."""

    batch_size: int = 10_000
    poll_timeout_s: float = 0.1
    checkpoint_interval_ms: int = 1_000


def needs_single_task(job: Job) -> bool:
    """True when a ``key_by`` needs repartitioning: then one task owns every partition.

    Keyed state must live in exactly one task per key. When every key_by declares
    the input already partitioned by its key (``repartition=False``), each input
    partition is a task of its own and the job scales across workers; otherwise the
    worker runs the whole job in one task, which is correct on a single worker.
    """
    return any(isinstance(n, KeyByNode) and n.repartition for n in job.nodes)


def repartition_topic(app: str, step: str) -> str:
    """The internal topic a repartitioning ``key_by`` step writes through.

    ``app`` is the job's consumer group (its name unless another group is given), so two
    deployments of one job never share internal topics.
    """
    return f"{app}.{step}.repartition"


def changelog_topic(app: str, step: str) -> str:
    """The compacted topic that holds a stateful step's changes (``app``: the group)."""
    return f"{app}.{step}.changelog"


def _key(key: Any) -> bytes | None:
    """``key_bytes`` with the common cases inlined (hot path)."""
    if type(key) is str:
        return key.encode()
    return key_bytes(key)


def key_bytes(key: Any) -> bytes | None:
    """The message key for a record key."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, tuple):
        return "|".join(str(k) for k in key).encode()
    return str(key).encode()


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
    ) -> None:
        self.job = job
        # Names internal and changelog topics: the consumer group (default: the job name).
        self.app = app or job.name
        # Internal topics of repartitioning key_by steps (see runtime.engine.repartition):
        # with a partition count every input partition is its own task.
        self.repartition_partitions = repartition_partitions
        self.internal_topics = {
            repartition_topic(app or job.name, n.name): internal_source(n.name)
            for n in job.nodes
            if isinstance(n, KeyByNode) and n.repartition and repartition_partitions
        }
        self.bindings = bindings
        self.transport = transport
        self.codecs = codecs
        self.backend = backend
        self.offsets = offsets
        self.changelog = changelog
        self.external = dict(external or {})
        self.options = options
        self.clock = clock
        self.single_task = repartition_partitions is None and needs_single_task(job)
        self.tasks: dict[int, Task] = {}
        self.task_seq: dict[int, int] = {}
        self.topic_source = {**bindings.topic_sources(), **self.internal_topics}
        self.positions: dict[tuple[str, int], int] = {}
        self.records_read = 0
        self.checkpoints = 0
        self.restored_records = 0
        self.restore_seconds = 0.0
        self._dirty = False
        self.failed = False
        self.rewinds = 0
        self.last_progress = time.monotonic()
        # Live taps (step -> callback) and calls from other threads run between batches.
        self.taps: dict[str, Callable[[str, list[Any]], None]] = {}
        self.calls: CallQueue[Worker] = CallQueue()
        self.stats: dict[str, float] = {
            "checkpoint_seconds": 0.0,
            "checkpoint_records": 0.0,
            "checkpoint_failures": 0.0,
        }
        self.lag: dict[tuple[str, int], int] = {}
        self._expect: dict[tuple[str, int], list[int]] = {}
        self.last_watermarks: dict[int, int] = {}
        self._retired: dict[str, dict[str, int]] = {}
        # Refusals taken while writing dead letters that belong to other outputs.
        self._refused_later: list[RefusedWrite] = []
        self._last_checkpoint = clock()
        # Checkpoint durations and event-to-sink latency, for /metrics (plain counts).
        self.checkpoint_durations = Histogram(CHECKPOINT_BOUNDS_S)
        self.sink_latency = Histogram(LATENCY_BOUNDS_S)
        self._next_unread_check = clock()
        self._sink_codecs = {
            s.name: (bindings.sinks[s.name], codecs.sink(s.name, s.schema))
            for s in job.sinks
            if s.name not in self.external
        }
        self._dead_codec = codecs("DeadLetter")

    # -- tasks ----------------------------------------------------------------------
    def task_id(self, partition: int) -> int:
        """The task that owns an input partition."""
        return 0 if self.single_task else partition

    def _task_partitions(self, tid: int) -> list[tuple[str, int]]:
        return [tp for tp in self.positions if self.task_id(tp[1]) == tid]

    def on_assign(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Partitions were assigned: open (and restore) their tasks before any record.

        Returns:
            Where to start reading each partition (negative: from the beginning): the
            committed offsets the tasks' state was restored to, from the same reading.
        """
        committed = self.offsets.committed(pairs) if self.offsets is not None else {}
        log.info(
            "assigned %s",
            sorted(
                (t, p, committed.get((t, p), (-1, ""))[0], committed.get((t, p), (-1, ""))[1])
                for t, p in pairs
            ),
        )
        new_tasks: dict[int, list[tuple[str, int]]] = {}
        for topic, partition in pairs:
            tid = self.task_id(partition)
            offset, _ = committed.get((topic, partition), (-1, ""))
            self.positions[(topic, partition)] = offset
            if tid not in self.tasks:
                new_tasks.setdefault(tid, []).append((topic, partition))
            else:
                self._add_partition(self.tasks[tid], topic, partition, committed)
        for tid, tps in new_tasks.items():
            task = Task(
                self.job,
                tid,
                self.codecs,
                self.backend,
                self.clock,
                taps=self.taps,
                repartition_partitions=self.repartition_partitions,
            )
            self.tasks[tid] = task
            self._restore(task, tid, [committed.get(tp, (-1, ""))[1] for tp in tps])
            for topic, partition in tps:
                self._add_partition(task, topic, partition, committed)
        return {tp: self.positions[tp] for tp in pairs}

    def _add_partition(
        self, task: Task, topic: str, partition: int, committed: Mapping[tuple[str, int], Any]
    ) -> None:
        source = self.topic_source[topic]
        task.add_partition(source, partition)
        meta = _parse_meta(committed.get((topic, partition), (-1, ""))[1])
        if meta is not None:
            task.restore_progress(source, partition, meta.get("max_ts"), meta.get("wm"))

    def _restore(self, task: Task, tid: int, metas: Sequence[str]) -> None:
        """Bring the task's state to its last committed checkpoint."""
        parsed = [m for m in (_parse_meta(x) for x in metas) if m is not None]
        last = max(parsed, key=lambda m: int(m["seq"]), default=None)
        seq = int(last["seq"]) if last is not None else 0
        # Sequence numbers alone can repeat across workers; the id names one commit.
        ckpt = _checkpoint_name(last)
        self.task_seq[tid] = seq
        if not task.stores:
            return
        t0 = time.monotonic()
        restored = 0
        for store in task.stores:
            local = store.get_meta(_META)
            local_ckpt = _checkpoint_name(json.loads(local)) if local else None
            log.info(
                "task %s store %s: local checkpoint %s, committed %s",
                tid,
                store.name,
                local_ckpt,
                ckpt,
            )
            if local_ckpt == ckpt and seq > 0:
                check_local_state(store)
                continue  # local state is exactly the committed checkpoint
            if local_ckpt is not None or len(store):
                store.clear()
            if seq == 0 or self.changelog is None:
                continue
            topic = changelog_topic(self.app, store.name)
            batch: list[tuple[bytes, bytes | None]] = []
            offsets: list[int] = []
            for key, value, offset in self.changelog(topic, tid):
                batch.append((key, value))
                offsets.append(offset)
                if len(batch) >= 50_000:
                    apply_changes(store, batch, offsets, topic, tid)
                    restored += len(batch)
                    batch, offsets = [], []
                    if restored % 250_000 == 0:
                        log.warning(
                            "task %s of %s: restoring %s, %d records so far (%.1fs)",
                            tid,
                            self.job.name,
                            topic,
                            restored,
                            time.monotonic() - t0,
                        )
            if batch:
                apply_changes(store, batch, offsets, topic, tid)
                restored += len(batch)
            store.put_meta(_META, json.dumps(_local_meta(last)).encode())
            store.checkpoint()
        task.reindex()
        took = time.monotonic() - t0
        self.restored_records += restored
        self.restore_seconds += took
        if restored:
            log.warning(
                "task %s of %s restored %d changelog records in %.2fs",
                tid,
                self.job.name,
                restored,
                took,
            )

    def on_revoke(self, pairs: list[tuple[str, int]]) -> None:
        """Partitions are going: checkpoint, then close the tasks that lost them all."""
        log.info("revoked %s", sorted(pairs))
        if not self.failed:
            self.checkpoint()
        for topic, partition in pairs:
            self.positions.pop((topic, partition), None)
            self._expect.pop((topic, partition), None)
            tid = self.task_id(partition)
            task = self.tasks.get(tid)
            if task is not None:
                task.remove_partition(self.topic_source[topic], partition)
                if not self._task_partitions(tid):
                    self._retire(tid, task)
                    del self.tasks[tid]

    # -- loop -----------------------------------------------------------------------
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

    def _serve_calls(self) -> None:
        self.calls.serve(self)

    def query_state(self, step: str, key: Any, limit: int = MAX_ENTRIES) -> StateLookup:
        """Entries of a stateful step for ``key`` (at most ``limit``), found by key.

        Window state is keyed ``(key, window_start)``, process state ``(key, state)``;
        both are read as one key range (see :mod:`runtime.engine.queryable`).
        """
        return lookup_state(self.tasks.items(), step, key, limit)

    def step(self, source: SourceReader) -> int:
        """One iteration: poll, process, write; checkpoint when due. Returns records read."""
        self._serve_calls()
        self.last_progress = time.monotonic()
        msgs = source.poll(self.options.batch_size, self.options.poll_timeout_s)
        if msgs:
            groups: dict[tuple[str, int], list[Any]] = {}
            for m in msgs:
                tp: Any = (m.topic(), m.partition())
                group = groups.get(tp)
                if group is None:
                    groups[tp] = [m]
                else:
                    group.append(m)
            tasks, positions, names = self.tasks, self.positions, self.topic_source
            single = self.single_task
            for (topic, partition), group in groups.items():
                task = tasks.get(0 if single else partition)
                if task is None:
                    continue  # revoked while in flight: the new owner reads it again
                if self._expect:
                    group = self._accept(topic, partition, group)
                    if not group:
                        continue
                if topic in self.internal_topics:
                    task.ingest_internal(names[topic], partition, group)
                else:
                    task.ingest(names[topic], partition, group)
                positions[(topic, partition)] = group[-1].offset() + 1
            self.records_read += len(msgs)
            self._dirty = True
        now = self.clock()
        if now >= self._next_unread_check:
            self._next_unread_check = now + UNREAD_CHECK_MS
            self._hold_unread()
        for task in self.tasks.values():
            task.advance()
        self.write_outputs()
        if now - self._last_checkpoint >= self.options.checkpoint_interval_ms:
            self.checkpoint()
        return len(msgs)

    def _hold_unread(self) -> None:
        """Partitions with records fetched or fetchable but not yet read are behind,
        not idle: a consumer catching up may leave one waiting longer than its idle
        timeout while others are served, and declaring it idle would move the
        watermark past its unread records (making them late)."""
        unread = getattr(self.offsets, "unread", None)
        if unread is None:
            return
        for topic, partition in unread(self.positions):
            source = self.topic_source.get(topic)
            task = self.tasks.get(self.task_id(partition))
            if source is not None and task is not None:
                task.hold_active(source, partition)

    def _accept(self, topic: str, partition: int, group: list[Any]) -> list[Any]:
        """After a rewind: the part of a batch that starts where the rewind pointed.

        Records before the target were already replayed; a batch that starts after it
        means the seek was lost, so seek again once. A second look at the same gap is
        accepted: offsets of a transactional input skip control records.
        """
        expect = self._expect.get((topic, partition))
        if expect is None:
            return group
        target, tries = expect
        first = group[0].offset()
        if first == target:
            del self._expect[(topic, partition)]
            return group
        if first < target:
            del self._expect[(topic, partition)]
            return [m for m in group if m.offset() >= target]
        if tries < 2:
            log.warning(
                "%s[%s]: expected offset %s after rewinding, got %s; seeking again",
                topic,
                partition,
                target,
                first,
            )
            expect[1] = tries + 1
            assert self.offsets is not None
            self.offsets.seek({(topic, partition): target})
            return []
        del self._expect[(topic, partition)]
        return group

    def write_outputs(self) -> None:
        """Encode and queue what the sinks and the dead-letter output collected."""
        write_many = self.transport.write_many
        now_s = self.clock() / 1000
        for task in self.tasks.values():
            for name, records in task.drain_sinks().items():
                if not records:
                    continue
                self._dirty = True
                self.sink_latency.observe_many(now_s - t / 1000 for _, _, t in records)
                external = self.external.get(name)
                if external is not None:
                    external.write(records)
                    continue
                topic, codec = self._sink_codecs[name]
                encode = codec.encode
                write_many(topic, [(_key(k), encode(v), t) for k, v, t in records])
            if self.internal_topics:
                self._write_internal(task)
            self._dead_letter_refused(task)
            for dl in task.drain_dead_letters():
                self._dirty = True
                self._write_dead_letter(dl)

    def _dead_letter_refused(self, task: Task) -> None:
        """Output records their topic would refuse become dead letters of the step that
        wrote them (a sink, or a repartitioning ``key_by``'s ``.out``), counted there."""
        refused = self._refused_later + self.transport.take_refused()
        self._refused_later = []
        if not refused:
            return
        steps = {topic: name for name, (topic, _) in self._sink_codecs.items()}
        writers = {repartition_topic(self.app, step): step for step in task.writers}
        now = self.clock()
        for r in refused:
            if r.topic in steps:
                op: Any = task.sinks[steps[r.topic]]
            elif r.topic in writers:
                op = task.writers[writers[r.topic]]
            else:
                # A state change the topic refuses cannot be dead-lettered; changelog
                # records are small, so this is a misconfigured topic. (Dead letters
                # are handled as they are written: see _write_dead_letter.)
                raise OutputRefused(r.reason)
            op.counters.dead_lettered += 1
            op.counters.records_out -= 1
            task.dead_letters.append(
                DeadLetter(
                    job=self.job.name,
                    step=op.name,
                    error_class=OutputRefused.__name__,
                    error_message=r.reason[:1000],
                    topic=None,
                    partition=None,
                    offset=None,
                    key=r.key,
                    value=r.value,
                    failed_ms=now,
                )
            )

    def _write_internal(self, task: Task) -> None:
        """Records of repartitioning steps, and watermark markers, to internal topics."""
        n = self.repartition_partitions
        assert n is not None
        write = self.transport.write
        for step, records in task.drain_internal().items():
            if not records:
                continue
            self._dirty = True
            topic = repartition_topic(self.app, step)
            for k, data, t in records:
                kb = key_bytes(k)
                write(topic, kb, data, t, None, partition_for(kb, n))
        for step, wm in task.markers_due().items():
            self._dirty = True
            marker = encode_marker(task.task_id, wm)
            topic = repartition_topic(self.app, step)
            for q in range(n):
                write(topic, None, marker, None, None, q)

    def _write_dead_letter(self, dl: DeadLetter) -> None:
        """Write one dead letter.

        A dead letter holds the original key and value, so a record near the broker's
        size limit (or with a huge key, which the dead letter's own key repeats) makes
        one its topic refuses. Failing the worker would fail it again on every restart,
        at the same record. Such a dead letter is written again without the original
        key and value: it still names the source topic, partition and offset they can
        be read back from, and its message says what was left out and why.

        Raises:
            OutputRefused: the dead-letter topic refuses even that (it is misconfigured).
        """
        self._write_dead_record(dl)
        refused = self._take_dead_refused()
        if not refused:
            return
        if dl.key is None and dl.value is None:
            raise OutputRefused(refused[0].reason)
        note = f" [original key and value left out: {refused[0].reason}]"
        self._write_dead_record(
            replace(dl, key=None, value=None, error_message=dl.error_message + note)
        )
        refused = self._take_dead_refused()
        if refused:
            raise OutputRefused(refused[0].reason)

    def _take_dead_refused(self) -> list[RefusedWrite]:
        """Refusals of the dead-letter topic since the last call; others (a state change
        written by the checkpoint) wait for ``_dead_letter_refused``."""
        topic = self.bindings.dead_letters
        refused = self.transport.take_refused()
        self._refused_later.extend(r for r in refused if r.topic != topic)
        return [r for r in refused if r.topic == topic]

    def _write_dead_record(self, dl: DeadLetter) -> None:
        value = dl.value
        if value is not None and not isinstance(value, bytes):
            value = json.dumps(value, default=repr, sort_keys=True).encode()
        record = {
            "job": dl.job,
            "step": dl.step,
            "error_class": dl.error_class,
            "error_message": dl.error_message,
            "source_topic": dl.topic,
            "source_partition": dl.partition,
            "source_offset": dl.offset,
            "original_key": dl.key,
            "original_value": value,
            "failed_ms": dl.failed_ms,
        }
        headers = [
            ("shoal.error.class", dl.error_class.encode()),
            ("shoal.error.message", dl.error_message.encode()[:1000]),
            ("shoal.job", dl.job.encode()),
            ("shoal.step", dl.step.encode()),
            ("shoal.source.topic", (dl.topic or "").encode()),
            ("shoal.source.partition", str(dl.partition).encode()),
            ("shoal.source.offset", str(dl.offset).encode()),
        ]
        self.transport.write(
            self.bindings.dead_letters,
            dl.key,
            self._dead_codec.encode(record),
            dl.failed_ms,
            headers,
        )

    def _dead_letter_undelivered(self, name: str, sink: ExternalSink) -> None:
        """Records an external sink gave up on go to the dead-letter output (this checkpoint)."""
        for rec in sink.drain_undelivered():
            dl = DeadLetter(
                job=self.job.name,
                step=name,
                error_class=rec.error_class,
                error_message=rec.error_message,
                topic=None,
                partition=None,
                offset=None,
                key=rec.key,
                value=rec.value,
                failed_ms=self.clock(),
            )
            self._write_dead_letter(dl)

    def checkpoint(self) -> None:
        """Commit outputs, state changes and offsets together (see the module docstring)."""
        t0 = time.monotonic()
        self.write_outputs()
        prepared: list[Any] = []
        changed = 0
        for tid, task in self.tasks.items():
            for store in task.stores:
                changes = store.prepare_checkpoint()
                changed += len(changes)
                prepared.append(store)
                if changes:
                    self._dirty = True
                    topic = changelog_topic(self.app, store.name)
                    for raw_key, raw_value in changes:
                        self.transport.write(topic, raw_key, raw_value, None, None, tid)
        self._last_checkpoint = self.clock()
        if not self._dirty:
            for store in prepared:
                store.commit_checkpoint()
            return
        for name, sink in self.external.items():
            sink.flush()
            self._dead_letter_undelivered(name, sink)
        now_ms = self.clock()
        offsets: dict[tuple[str, int], tuple[int, str]] = {}
        next_seq: dict[int, int] = {}
        ckpt_id = secrets.token_hex(6)  # names this commit: see _restore
        for (topic, partition), pos in self.positions.items():
            if pos < 0:
                continue  # nothing read and nothing committed yet
            tid = self.task_id(partition)
            task = self.tasks[tid]
            seq = next_seq.setdefault(tid, self.task_seq.get(tid, 0) + 1)
            max_ts, wm = task.partition_progress(self.topic_source[topic], partition)
            # "at": when it committed (wall clock), so `shoal status` can tell its age
            # from Kafka alone.
            meta = {"seq": seq, "id": ckpt_id, "max_ts": max_ts, "wm": wm, "at": now_ms}
            offsets[(topic, partition)] = (pos, json.dumps(meta, separators=(",", ":")))
        try:
            self.transport.commit(offsets)
        except CheckpointAborted as exc:
            log.warning("%s; rewinding to the last committed checkpoint", exc)
            self.stats["checkpoint_failures"] += 1
            self.rewind()
            return
        self.task_seq.update(next_seq)
        for tid, seq in next_seq.items():
            # Only tasks whose offsets this commit carried: a store marked with a
            # checkpoint that Kafka does not hold for it could be taken for it later.
            for store in self.tasks[tid].stores:
                store.put_meta(_META, json.dumps({"seq": seq, "id": ckpt_id}).encode())
        for store in prepared:
            store.commit_checkpoint()
        self.checkpoints += 1
        self._dirty = False
        self.stats["checkpoint_seconds"] = time.monotonic() - t0
        self.checkpoint_durations.observe(self.stats["checkpoint_seconds"])
        self.stats["checkpoint_records"] = float(changed)
        lag = getattr(self.offsets, "lag", None)
        if lag is not None:
            self.lag = lag(self.positions)

    def rewind(self) -> None:
        """Drop uncommitted progress: reopen every task at its committed checkpoint.

        Local state never runs ahead of Kafka, so reopening restores exactly the last
        committed state; the consumer is moved back to the committed offsets.
        """
        pairs = list(self.positions)
        for tid, task in list(self.tasks.items()):
            self._retire(tid, task)
        self.tasks.clear()
        self.positions.clear()
        self.on_assign(pairs)
        if self.offsets is not None:
            unknown = [tp for tp, pos in self.positions.items() if pos < 0]
            self.positions.update(self.offsets.beginning(unknown))
            log.info("rewinding consumer to %s", sorted(self.positions.items()))
            self.offsets.seek(dict(self.positions))
            # A seek can be lost in a rebalance; the first batch of each partition is
            # checked against these targets (see ``_accept``).
            self._expect = {tp: [pos, 0] for tp, pos in self.positions.items()}
        self._dirty = False
        self.rewinds += 1

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

    def close(self) -> None:
        """Close every task's state (``last_watermarks`` keeps their final watermarks)."""
        self.last_watermarks.update({tid: t.watermark for tid, t in self.tasks.items()})
        for task in self.tasks.values():
            task.close()
        self.tasks.clear()

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters summed over tasks."""
        total: dict[str, dict[str, int]] = {}
        for task in self.tasks.values():
            for step, c in task.counters().items():
                acc = total.setdefault(step, dict.fromkeys(c, 0))
                for k, v in c.items():
                    acc[k] += v
        for step, c in self._retired.items():
            acc = total.setdefault(step, dict.fromkeys(c, 0))
            for k, v in c.items():
                acc[k] += v
        return total

    def _retire(self, tid: int, task: Task) -> None:
        """Close a task that lost its partitions, keeping its counts in the totals."""
        self.last_watermarks[tid] = task.watermark
        for step, c in task.counters().items():
            acc = self._retired.setdefault(step, dict.fromkeys(c, 0))
            for k, v in c.items():
                acc[k] += v
        task.close()


def _checkpoint_name(meta: Mapping[str, Any] | None) -> str | None:
    """``seq.id`` of a checkpoint's metadata (``None``: no checkpoint)."""
    if meta is None:
        return None
    return f"{meta['seq']}.{meta.get('id', '')}"


def _local_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a store records of the committed checkpoint it was restored to."""
    if meta is None:
        return {"seq": 0}
    return {"seq": meta["seq"], "id": meta.get("id", "")}


def _parse_meta(text: str) -> dict[str, Any] | None:
    if not text or not text.startswith("{"):
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and "seq" in meta else None
