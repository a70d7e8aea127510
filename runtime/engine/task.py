"""A task: one instance of a job's pipeline with its own state, watermark and counters.

The worker feeds a task raw batches per source partition; the task decodes them,
checks event times, runs the operator chain over the batch and collects sink
records and dead letters. ``advance`` moves event time and processing time on and
fires windows and timers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import (
    DecodeError,
    InvariantError,
    JobDefinitionError,
    RecordError,
    RecordOrigin,
    ShoalError,
    TimestampError,
    UserFunctionError,
)
from runtime.api.expressions import function_of
from runtime.api.graph import (
    ErrorPolicy,
    FilterNode,
    FlatMapNode,
    JoinKind,
    JoinNode,
    KeyByNode,
    LateNode,
    MapNode,
    MergeNode,
    Node,
    ProcessNode,
    SinkNode,
    SourceNode,
    TableJoinNode,
    TableKind,
    TableNode,
    WindowNode,
)
from runtime.api.io import CodecFactory, RawRecord
from runtime.api.job import Job
from runtime.engine import columnar
from runtime.engine.columnar import ColumnarWindow
from runtime.engine.joins import SIDES, JoinOperator
from runtime.engine.operators import (
    FilterOperator,
    FlatMapOperator,
    KeyByOperator,
    MapOperator,
    Operator,
    PassOperator,
    Rec,
    SinkOperator,
)
from runtime.engine.process import ProcessOperator
from runtime.engine.repartition import RECORD, RepartitionWriter, internal_source
from runtime.engine.repartition import decode as decode_internal
from runtime.engine.tables import TableJoinOperator, TableOperator
from runtime.engine.watermarks import NO_WATERMARK, WatermarkTracker
from runtime.engine.windows import WindowOperator
from runtime.state.base import StateBackend, StateStore


def wall_clock_ms() -> int:
    """The system clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, and why."""

    job: str
    step: str
    error_class: str
    error_message: str
    topic: str | None
    partition: int | None
    offset: int | None
    key: bytes | None
    value: Any
    failed_ms: int


class SourceOperator(Operator):
    """Entry of a source: counts what came in and what was dead-lettered."""

    def process(self, batch: list[Rec]) -> None:
        """Forward decoded, timestamped records."""
        self.emit(batch)


class Task:
    """One pipeline instance of ``job``.

    Args:
        job: the job graph.
        task_id: the partition number (or 0 for a single task); names state stores.
        codecs: gives the codec of a schema name.
        backend: the state backend that opens one store per stateful step.
        clock: the processing clock in epoch ms (injected: manual in the test driver).
        taps: step name -> callback receiving that step's output batches.
    """

    def __init__(
        self,
        job: Job,
        task_id: int,
        codecs: CodecFactory,
        backend: StateBackend,
        clock: Callable[[], int] = wall_clock_ms,
        taps: dict[str, Callable[[str, list[Rec]], None]] | None = None,
        repartition_partitions: int | None = None,
    ) -> None:
        self.job = job
        # With a partition count, repartitioning key_by steps go through internal topics
        # of that many partitions (see runtime.engine.repartition); without, in process.
        self.repartition_partitions = repartition_partitions
        self.writers: dict[str, RepartitionWriter] = {}
        self.internal: dict[str, Operator] = {}
        self.stage: dict[str, int] = {}
        self._marks_sent: dict[str, int] = {}
        # Live taps of step outputs (shared with the worker): step name -> callback.
        self.taps = taps if taps is not None else {}
        self.task_id = task_id
        self.codecs = codecs
        self.now_ms = clock
        self.tracker = WatermarkTracker()
        self.trackers: list[WatermarkTracker] = [self.tracker]
        self.dead_letters: list[DeadLetter] = []
        self.ops: dict[str, Operator] = {}
        self.sources: dict[str, tuple[SourceNode, SourceOperator]] = {}
        self.sinks: dict[str, SinkOperator] = {}
        self.stores: list[StateStore] = []
        #: Seconds spent decoding input (the worker's ``decode`` phase).
        self.decode_seconds = 0.0
        # Tables (runtime.engine.tables): their stores are read from the table topics,
        # never written to a changelog, so they are not among ``stores``.
        self.tables: dict[str, TableOperator] = {}
        self._extra_ops: list[tuple[int, Operator]] = []
        for node in job.nodes:
            stage = max((self.stage[p.name] for p in node.parents), default=0)
            if (
                isinstance(node, KeyByNode)
                and node.repartition
                and repartition_partitions is not None
            ):
                # upstream: key, then out to the internal topic; downstream: an internal
                # source whose output continues where the key_by's would have.
                keyer = KeyByOperator(node.name + ".key", self, node.fn)
                writer = RepartitionWriter(node.name + ".out", self, node.name)
                keyer.children.append(writer)
                for parent in node.parents:
                    self.ops[parent.name].children.append(keyer)
                self.writers[node.name] = writer
                inbound = SourceOperator(node.name, self)
                self.internal[internal_source(node.name)] = inbound
                self.ops[node.name] = inbound
                self.stage[node.name] = stage + 1
                while len(self.trackers) <= stage + 1:
                    self.trackers.append(WatermarkTracker())
                keyer.stage = writer.stage = stage
                self._extra_ops.extend([(stage, keyer), (stage, writer)])
                inbound.stage = stage + 1
                continue
            op = self._build(node, backend)
            op.stage = stage
            self.stage[node.name] = stage
            self.ops[node.name] = op
            for i, parent in enumerate(node.parents):
                parent_op = self.ops[parent.name]
                if isinstance(node, LateNode):
                    self._add_late(node, parent_op, op)
                elif isinstance(op, JoinOperator):
                    parent_op.children.append(op.inputs[i])
                elif isinstance(parent_op, TableOperator):
                    continue  # a join reads the table's store; the table emits nothing
                else:
                    parent_op.children.append(op)
        self.order = list(self.ops.values())
        #: Sources whose key_by and window steps take the columnar path (see
        #: runtime.engine.columnar), by source name.
        self.columnar: dict[str, ColumnarWindow] = {}
        for name, (node, op) in self.sources.items():
            fused = columnar.plan(op, node, job)
            if fused is not None:
                self.columnar[name] = fused
        self.by_stage: list[list[Operator]] = [[] for _ in self.trackers]
        for op in self.order:
            self.by_stage[op.stage].append(op)

    @staticmethod
    def _add_late(node: LateNode, parent_op: Operator, op: Operator) -> None:
        """Attach a late side output to its window or join step."""
        if isinstance(parent_op, WindowOperator) and not node.side:
            parent_op.late_children.append(op)
        elif isinstance(parent_op, JoinOperator) and node.side in SIDES:
            parent_op.late_children[node.side].append(op)
        else:
            raise JobDefinitionError(
                f"step {node.name!r}: late records come from a window step or one side "
                f"of a join step, not from {parent_op.name!r}"
            )

    def _build(self, node: Node, backend: StateBackend) -> Operator:
        name = node.name
        if isinstance(node, SourceNode):
            op = SourceOperator(name, self)
            self.sources[name] = (node, op)
            return op
        if isinstance(node, MapNode):
            return MapOperator(name, self, node.fn)
        if isinstance(node, FilterNode):
            return FilterOperator(name, self, node.fn)
        if isinstance(node, FlatMapNode):
            return FlatMapOperator(name, self, node.fn)
        if isinstance(node, KeyByNode):
            return KeyByOperator(name, self, node.fn)
        if isinstance(node, MergeNode | LateNode):
            return PassOperator(name, self)
        if isinstance(node, SinkNode):
            sink = SinkOperator(name, self, node.key)
            self.sinks[name] = sink
            return sink
        if isinstance(node, WindowNode):
            if node.spec is None or node.aggregate is None or not node.output:
                raise JobDefinitionError(f"window step {name!r} has no aggregation")
            store = backend.open_store(self.job.name, name, self.task_id)
            self.stores.append(store)
            win = WindowOperator(name, self, node.spec, node.aggregate, node.output, store)
            win.restore_index()
            return win
        if isinstance(node, ProcessNode):
            if node.fn is None:
                raise JobDefinitionError(f"process step {name!r} has no function")
            store = backend.open_store(self.job.name, name, self.task_id)
            self.stores.append(store)
            return ProcessOperator(name, self, node.fn, store)
        if isinstance(node, JoinNode):
            if node.output is None or len(node.parents) != 2:
                raise JobDefinitionError(f"join step {name!r} needs two inputs and an output")
            store = backend.open_store(self.job.name, name, self.task_id)
            self.stores.append(store)
            return JoinOperator(
                name,
                self,
                lower_ms=node.lower_ms,
                upper_ms=node.upper_ms,
                lateness_ms=node.allowed_lateness_ms,
                outer=node.how is JoinKind.LEFT,
                output=node.output,
                store=store,
            )
        if isinstance(node, TableNode):
            store = backend.open_store(self.job.name, name, self.task_id)
            codecs, schema = self.codecs, node.schema
            table = TableOperator(name, self, store, node.key, lambda: codecs.source(name, schema))
            self.tables[name] = table
            return table
        if isinstance(node, TableJoinNode):
            if node.output is None or len(node.parents) != 2:
                raise JobDefinitionError(f"table join {name!r} needs a stream, a table, an output")
            table_op = self.ops.get(node.parents[1].name)
            if not isinstance(table_op, TableOperator):
                raise JobDefinitionError(
                    f"table join {name!r}: {node.parents[1].name!r} is no table"
                )
            return TableJoinOperator(
                name,
                self,
                table=table_op,
                key=node.key,
                outer=node.how is JoinKind.LEFT,
                output=node.output,
            )
        raise ShoalError(f"step {name!r}: unsupported step type {type(node).__name__}")

    def queryable_stores(self) -> list[tuple[StateStore, bool]]:
        """Stores state queries read: ``(store, global)``; a global table's store is
        the same in every task, so a query reads it in one task only."""
        out = [(store, False) for store in self.stores]
        for name, table in self.tables.items():
            node = self.job.node(name)
            is_global = isinstance(node, TableNode) and node.table_kind is TableKind.GLOBAL
            out.append((table.store, is_global))
        return out

    def ingest_table(self, table: str, raws: Sequence[RawRecord]) -> None:
        """Apply records read from ``table``'s topic (see ``runtime.engine.tables``)."""
        self.tables[table].apply(raws)

    def reindex(self) -> None:
        """Rebuild in-memory indexes (firing times, timers) after state was restored."""
        for op in self.order:
            op.restore_index()

    # -- event time -----------------------------------------------------------------
    @property
    def watermark(self) -> int:
        """The task's watermark (the furthest-behind stage's)."""
        return min(t.current for t in self.trackers)

    def tracker_of(self, source: str) -> WatermarkTracker:
        """The watermark tracker of the stage a (possibly internal) source feeds."""
        if source in self.internal:
            return self.trackers[self.internal[source].stage]
        return self.tracker

    def add_partition(self, source: str, partition: int) -> None:
        """Start reading ``partition`` of ``source`` (or of an internal topic)."""
        if source in self.internal:
            if self.repartition_partitions is None:
                raise InvariantError(f"internal source {source!r} without a partition count")
            self.tracker_of(source).add_marker_partition(
                source, partition, self.repartition_partitions, self.now_ms()
            )
            return
        node = self.sources[source][0]
        self.tracker.add_partition(source, partition, node.watermarks, self.now_ms())

    def remove_partition(self, source: str, partition: int) -> None:
        """Stop reading a partition."""
        self.tracker_of(source).remove_partition(source, partition)

    def hold_active(self, source: str, partition: int) -> None:
        """A partition with records still unread is behind, not idle: keep it holding
        the watermark (internal partitions never go idle anyway)."""
        if source not in self.internal and self.tracker.tracks(source, partition):
            self.tracker.touch(source, partition, self.now_ms())

    def partition_progress(self, source: str, partition: int) -> tuple[int, int]:
        """(max event time, watermark) of a partition, for checkpoint metadata."""
        tracker = self.tracker_of(source)
        if source in self.internal:
            return NO_WATERMARK, tracker.partition_watermark(source, partition)
        return tracker.partition_max_ts(source, partition), tracker.current

    def restore_progress(
        self, source: str, partition: int, max_ts: int | None, watermark: int | None
    ) -> None:
        """Apply checkpointed event-time progress of a partition."""
        self.tracker_of(source).restore_partition(source, partition, max_ts, watermark)

    def resume_event_time(self) -> int:
        """After a restore, before any record: every stage takes up the watermark it
        had at the checkpoint, so a record that was late then is late now, and what
        fired then does not fire again. Returns the task's watermark."""
        for stage, tracker in enumerate(self.trackers):
            wm = tracker.resume()
            for op in self.by_stage[stage]:
                op.resume_watermark(wm)
        return self.watermark

    def advance(self, force_watermark_ms: int | None = None) -> int:
        """Fire processing-time work, then move event time on; returns the watermark."""
        now = self.now_ms()
        for op in self.order:
            op.on_processing_time(now)
        for stage, tracker in enumerate(self.trackers):
            if force_watermark_ms is not None:
                tracker.force(force_watermark_ms)
            before = tracker.current
            wm = tracker.advance(now)
            if wm != before:
                for op in self.by_stage[stage]:
                    op.advance_watermark(wm)
        return self.watermark

    def ingest_internal(self, source: str, partition: int, raws: Sequence[RawRecord]) -> None:
        """Process records and watermark markers read from an internal topic.

        Anything else found there (junk, a record of another format, a malformed
        marker) is counted in and dead-lettered with its topic, partition and offset.
        """
        op = self.internal[source]
        tracker = self.tracker_of(source)
        upstream = self.repartition_partitions
        batch: list[Rec] = []
        t = time.perf_counter()
        for raw in raws:
            data = raw.value()
            try:
                item = decode_internal(data, upstream)
            except DecodeError as exc:
                op.counters.records_in += 1
                where = RecordOrigin(raw.topic(), raw.partition(), raw.offset())
                self._reject(op, DecodeError(exc.reason, origin=where, step=op.name), raw, data)
                continue
            if item[0] == RECORD:
                batch.append((item[1], item[2], item[3], raw))
            else:
                tracker.mark(source, partition, item[1], item[2])
        self.decode_seconds += time.perf_counter() - t
        op.counters.records_in += len(batch)
        op.process(batch)

    def drain_internal(self) -> dict[str, list[tuple[Any, bytes, int]]]:
        """Take the records each repartition step queued for its internal topic."""
        return {step: w.drain() for step, w in self.writers.items()}

    def markers_due(self) -> dict[str, int]:
        """Per repartition step, the watermark to send downstream when it moved.

        A step's marker is the watermark of the stage it writes from, so every stage
        waits for the one before it.
        """
        due = {}
        for step, writer in self.writers.items():
            wm = self.trackers[writer.stage].current
            if wm > self._marks_sent.get(step, NO_WATERMARK):
                self._marks_sent[step] = wm
                due[step] = wm
        return due

    # -- input ----------------------------------------------------------------------
    def ingest(self, source: str, partition: int, raws: Sequence[RawRecord]) -> None:
        """Decode and process a batch of raw records from one source partition."""
        node, op = self.sources[source]
        op.counters.records_in += len(raws)
        codec = self.codecs.source(source, node.schema)
        t = time.perf_counter()
        values, failures = codec.decode_batch([r.value() for r in raws], raws)
        self.decode_seconds += time.perf_counter() - t
        if failures:
            bad = set()
            for idx, err in failures:
                bad.add(idx)
                self._reject(op, err, raws[idx], raws[idx].value())
            good = [r for i, r in enumerate(raws) if i not in bad]
        else:
            good = list(raws)
        if node.timestamp is None:
            stamps: list[Any] = [r.timestamp()[1] for r in good]
            self._route(node, op, partition, values, stamps, good)
        else:
            self._route(node, op, partition, values, None, good)

    def ingest_values(
        self,
        source: str,
        partition: int,
        values: Sequence[Any],
        timestamps: Sequence[int | None] | None = None,
        origins: Sequence[Any] | None = None,
    ) -> None:
        """Process already-decoded values (the test driver's entry)."""
        node, op = self.sources[source]
        op.counters.records_in += len(values)
        origins = origins if origins is not None else [None] * len(values)
        self._route(node, op, partition, list(values), timestamps, list(origins))

    def _route(
        self,
        node: SourceNode,
        op: SourceOperator,
        partition: int,
        values: list[Any],
        stamps: Sequence[Any] | None,
        origins: Sequence[Any],
    ) -> None:
        now = self.now_ms()
        fused = self.columnar.get(node.name)
        if (
            fused is not None
            and stamps is None
            and fused.run(node, self.tracker, partition, values, origins, now)
        ):
            return
        strategy = node.watermarks
        lo = strategy.min_valid_ms
        bounded = strategy.max_future_ms is not None
        hi = now + strategy.max_future_ms if strategy.max_future_ms is not None else 2**62
        # Clamping: a time beyond the bound is processed at the bound (checked below
        # only when it is out of range, so the common case costs nothing more).
        clamp = bounded and strategy.future == "clamp"
        ts_fn = function_of(node.timestamp) if node.timestamp is not None else None
        batch: list[Rec] = []
        append = batch.append
        max_ts = NO_WATERMARK
        for i, v in enumerate(values):
            try:
                t = stamps[i] if stamps is not None and stamps[i] is not None else ts_fn(v)  # type: ignore[misc]
                if type(t) is not int or not lo <= t <= hi:
                    if type(t) is int and t > hi and clamp:
                        t = hi
                    elif type(t) is int and t > hi:
                        raise TimestampError(
                            f"event time {t} is {t - now} ms ahead of the processing clock "
                            f"(bound: {strategy.max_future_ms} ms ahead, {hi})",
                            step=node.name,
                        )
                    else:
                        raise TimestampError(
                            f"absurd or missing event time {t!r} (valid: {lo}..{hi})",
                            step=node.name,
                        )
            except Exception as exc:
                self._reject(op, exc, origins[i], v)
                continue
            if t > max_ts:
                max_ts = t
            append((None, v, t, origins[i]))
        if max_ts != NO_WATERMARK:
            self.tracker.observe(node.name, partition, max_ts, now)
        else:
            self.tracker.touch(node.name, partition, now)
        op.process(batch)

    def _reject(self, op: Operator, exc: BaseException, origin: Any, value: Any) -> None:
        op.counters.dead_lettered += 1
        self.dead_letter(op.name, exc, origin, value)

    # -- output ---------------------------------------------------------------------
    def dead_letter(self, step: str, exc: BaseException, origin: Any, value: Any) -> None:
        """Handle a failed record according to the job's error policy.

        The dead letter holds the raw source record (``origin``) when there is one,
        else ``value``.
        """
        if not self._keeps(step, exc, origin):
            return
        self.dead_letters.append(
            DeadLetter(
                job=self.job.name,
                step=step,
                error_class=type(exc).__name__,
                error_message=str(exc)[:1000],
                topic=origin.topic() if origin is not None else None,
                partition=origin.partition() if origin is not None else None,
                offset=origin.offset() if origin is not None else None,
                key=origin.key() if origin is not None else None,
                value=origin.value() if origin is not None else value,
                failed_ms=self.now_ms(),
            )
        )

    def dead_letter_output(
        self, step: str, exc: BaseException, origin: Any, key: bytes | None, value: Any
    ) -> None:
        """Handle an output record ``step`` cannot write, according to the job's error
        policy: its dead letter holds the output itself (``key``, ``value``) and names
        the source record it came from (``origin``), when there is one."""
        if not self._keeps(step, exc, origin):
            return
        self.dead_letters.append(
            DeadLetter(
                job=self.job.name,
                step=step,
                error_class=type(exc).__name__,
                error_message=str(exc)[:1000],
                topic=origin.topic() if origin is not None else None,
                partition=origin.partition() if origin is not None else None,
                offset=origin.offset() if origin is not None else None,
                key=key,
                value=value,
                failed_ms=self.now_ms(),
            )
        )

    def _keeps(self, step: str, exc: BaseException, origin: Any) -> bool:
        """Whether the error policy keeps a dead letter of a failed record.

        Raises:
            RecordError: (the same class, naming job, step and record) under ``FAIL``.
            UserFunctionError: a job function's exception, under ``FAIL``.
        """
        policy = self.job.on_error
        if policy is ErrorPolicy.FAIL:
            where = f"job {self.job.name!r}, step {step!r}"
            if origin is not None:
                where += f", record {origin.topic()}[{origin.partition()}]@{origin.offset()}"
            if isinstance(exc, RecordError):
                raise type(exc)(f"{exc.reason}; {where}") from exc
            raise UserFunctionError(f"{type(exc).__name__}: {exc} ({where})") from exc
        return policy is not ErrorPolicy.SKIP

    def drain_sinks(self) -> dict[str, list[Rec]]:
        """Take every sink's pending ``(key, value, event time, origin)`` records."""
        return {name: sink.drain() for name, sink in self.sinks.items()}

    def drain_dead_letters(self) -> list[DeadLetter]:
        """Take the pending dead letters."""
        out, self.dead_letters = self.dead_letters, []
        return out

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters (a repartitioning key_by counts what it received back;
        ``STEP.key`` and ``STEP.out`` count its keying and its writes)."""
        out = {name: op.counters.as_dict() for name, op in self.ops.items()}
        for _, op in self._extra_ops:
            out[op.name] = op.counters.as_dict()
        return out

    def close(self) -> None:
        """Close the task's state stores (its tables' too)."""
        for store in self.stores:
            store.close()
        for table in self.tables.values():
            table.store.close()
