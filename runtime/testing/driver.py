"""The test driver (see the package docstring for an example)."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.api.choices import StateBackendName, check_state_backend
from runtime.api.errors import ConfigError
from runtime.api.io import Codec, CodecFactory
from runtime.api.job import Job
from runtime.engine.encoding import encode_sink_records
from runtime.engine.joins import SIDES, JoinOperator
from runtime.engine.operators import Batch, Operator
from runtime.engine.queryable import lookup_state
from runtime.engine.task import DeadLetter, Task
from runtime.engine.windows import WindowOperator
from runtime.state.base import Change, StateBackend

# The test driver's entry time: a fixed, valid epoch ms so runs are reproducible.
DEFAULT_START_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class TestRecord:
    """A record as the driver saw it: a stand-in for a Kafka message (same accessors)."""

    __test__ = False  # not a pytest test class

    topic_name: str
    partition_no: int
    offset_no: int
    key_bytes: bytes | None
    value_bytes: bytes | None
    ts: int

    def topic(self) -> str:
        """Source name."""
        return self.topic_name

    def partition(self) -> int:
        """Partition."""
        return self.partition_no

    def offset(self) -> int:
        """Offset."""
        return self.offset_no

    def key(self) -> bytes | None:
        """Key bytes."""
        return self.key_bytes

    def value(self) -> bytes | None:
        """Value bytes."""
        return self.value_bytes

    def timestamp(self) -> tuple[int, int]:
        """(create-time type, ms)."""
        return (1, self.ts)


class DriverCodecs(CodecFactory, Protocol):
    """The codecs the driver sends records through (``connectors.codecs.CodecFactory``)."""

    def knows(self, schema: str) -> bool:
        """Whether ``schema`` names a known record schema."""
        ...


@dataclass
class _Committed:
    """What the last checkpoint committed (see ``TestDriver.checkpoint``)."""

    outputs: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    late: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    progress: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)


class _Capture(Operator):
    """Collects a late side output for the driver."""

    def __init__(self, name: str, task: Task, into: list[Any]) -> None:
        super().__init__(name, task)
        self.into = into

    def process(self, batch: Batch) -> None:
        self.counters.records_in += len(batch)
        self.into.extend(batch)


class TestDriver:
    """Runs ``job`` in one task with a manual processing clock.

    Args:
        job: the job to drive.
        state: ``"memory"`` or ``"rocksdb"`` (in a temporary folder unless ``state_dir``).
        state_dir: folder for RocksDB state.
        start_ms: the processing clock's start (epoch ms).
        partitions: how many partitions each source has (records go to ``partition=``).
        codecs: the codecs records go through; default: Shoal's single-object Avro over
            ``schemas/`` and the job's own schema folders (from the composition root).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        job: Job,
        *,
        state: StateBackendName = "memory",
        state_dir: Path | None = None,
        start_ms: int = DEFAULT_START_MS,
        partitions: int = 1,
        codecs: DriverCodecs | None = None,
    ) -> None:
        self.job = job
        self._now = start_ms
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._state, self._state_dir, self._partitions = state, state_dir, partitions
        self.backend = self._backend(state, state_dir)
        self.codecs = codecs if codecs is not None else _default_codecs(job)
        # A sink's codec, or None for a schema the codecs do not know (named only for the
        # test: its records are kept as they are, like a source's).
        self._sink_codecs: dict[str, tuple[str, Codec | None]] = {
            s.name: (
                s.schema,
                self.codecs.sink(s.name, s.schema) if self.codecs.knows(s.schema) else None,
            )
            for s in job.sinks
        }
        self._outputs: dict[str, list[tuple[Any, Any, int]]] = defaultdict(list)
        self._late: dict[str, list[Any]] = defaultdict(list)
        self._dead: list[DeadLetter] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        # The broker-less stand-in for a checkpoint's Kafka transaction (a fake, named
        # so): committed changelog records per stateful step, and what had been emitted,
        # read and reached in event time when the last checkpoint committed.
        self._changelog: dict[str, list[Change]] = defaultdict(list)
        # What was sent to each table, in order: its topic (a table is read again from
        # it after a restore, as a worker reads the table topic when a task opens).
        self._table_topics: dict[str, list[TestRecord | tuple[Any, Any]]] = defaultdict(list)
        self._committed: _Committed | None = None
        self._crashed = False
        self.checkpoints = 0
        self.task = self._open_task()

    def _open_task(self) -> Task:
        task = Task(self.job, 0, self.codecs, self.backend, clock=lambda: self._now)
        for name, op in task.ops.items():
            if isinstance(op, WindowOperator):
                op.late_children.append(_Capture(f"{name}.capture", task, self._late[name]))
            elif isinstance(op, JoinOperator):
                for side in SIDES:
                    into = self._late[f"{name}:{side}"]
                    op.late_children[side].append(_Capture(f"{name}.capture", task, into))
        for source in task.sources:
            for p in range(self._partitions):
                task.add_partition(source, p)
        return task

    # -- checkpoints, crashes and restores (no broker) --------------------------------
    def checkpoint(self) -> int:
        """Commit like a worker's checkpoint: state changes, outputs and read positions.

        Returns:
            The number of checkpoints committed so far.
        """
        self._check_alive()
        for store in self.task.stores:
            self._changelog[store.name].extend(store.prepare_checkpoint())
            store.commit_checkpoint()
        self._committed = _Committed(
            outputs={name: len(records) for name, records in self._outputs.items()},
            dead=len(self._dead),
            late={name: len(values) for name, values in self._late.items()},
            offsets=dict(self._offsets),
            progress={
                (source, p): self.task.partition_progress(source, p)
                for source in self.task.sources
                for p in range(self._partitions)
            },
        )
        self.checkpoints += 1
        return self.checkpoints

    def crash(self) -> None:
        """Die like a killed worker: everything after the last checkpoint is gone.

        Outputs and dead letters since then are dropped (their transaction never
        committed), local state is lost, and the records sent since then count as
        unread: send them again after :meth:`restore`, as Kafka would deliver them again.
        """
        self._check_alive()
        self.task.close()
        self.backend.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        done = self._committed or _Committed()
        for name in list(self._outputs):
            del self._outputs[name][done.outputs.get(name, 0) :]
        del self._dead[done.dead :]
        for name in self._late:
            del self._late[name][done.late.get(name, 0) :]
        self._offsets = defaultdict(int, done.offsets)
        self._crashed = True

    def restore(self) -> None:
        """Start again from the last checkpoint: state from the changelog, event time
        from the checkpoint's progress, on a fresh backend (no local state reused)."""
        if not self._crashed:
            raise ConfigError("restore() follows crash(): the driver is running")
        self.backend = self._backend(
            self._state, None if self._state_dir is None else self._fresh_dir(self._state_dir)
        )
        self.task = self._open_task()
        for table, sent in self._table_topics.items():
            for item in sent:
                self._apply_table(table, item)
        for store in self.task.stores:
            changes = self._changelog.get(store.name, [])
            if changes:
                store.restore(list(changes))
                store.checkpoint()
        self.task.reindex()
        done = self._committed or _Committed()
        for (source, p), (max_ts, wm) in done.progress.items():
            self.task.restore_progress(source, p, max_ts, wm)
        self.task.resume_event_time()
        self._crashed = False

    def state(self, step: str, key: Any) -> list[tuple[Any, Any]]:
        """The entries of ``step``'s state for ``key``: ``(state key, value)`` pairs.

        Entries are as the step stores them: window state keyed ``(key, window_start,
        window_end)`` (session windows: ``key``, a list of ``WindowState``), process
        state ``(key, state name)`` with ``(value, last write ms)`` values.

        Raises:
            ConfigError: ``step`` keeps no state, or ``key`` cannot be a state key.
        """
        stores = {s.name for s, _ in self.task.queryable_stores()}
        if step not in stores:
            stateful = sorted(stores)
            raise ConfigError(f"step {step!r} keeps no state; stateful steps: {stateful}")
        found = lookup_state([(0, self.task)], step, key)
        return [(k, v) for _, k, v in found.entries]

    def _check_alive(self) -> None:
        if self._crashed:
            raise ConfigError("the driver has crashed: call restore() first")

    @staticmethod
    def _fresh_dir(base: Path) -> Path:
        n = 1
        while (base / f"restored-{n}").exists():
            n += 1
        return base / f"restored-{n}"

    def _backend(self, state: str, state_dir: Path | None) -> StateBackend:
        if check_state_backend(state) == "memory":
            from runtime.state.memory import MemoryBackend

            return MemoryBackend()
        from runtime.state.rocksdb import RocksDBBackend

        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="shoal-driver-")
            state_dir = Path(self._tmp.name)
        return RocksDBBackend(state_dir)

    # -- input ----------------------------------------------------------------------
    def send(
        self, source: str, value: Any, *, timestamp_ms: int | None = None, partition: int = 0
    ) -> None:
        """Send one record (its own batch); event time from ``timestamp_ms`` or the job."""
        self.send_many(source, [value], timestamps=[timestamp_ms], partition=partition)

    def send_many(
        self,
        source: str,
        values: Iterable[Any],
        *,
        timestamps: Iterable[int | None] | None = None,
        partition: int = 0,
    ) -> None:
        """Send records as one batch, then let event time advance.

        Each value goes through the source's real codec (encoded, then decoded as a
        worker would), so a record that does not match the source's schema fails here,
        in the test, and the job sees exactly what it would see in production.

        Raises:
            RecordError: a value does not match the source's schema.
        """
        self._check_source(source)
        self._check_alive()
        vals = self._through_codec(source, list(values))
        stamps = list(timestamps) if timestamps is not None else None
        origins = [self._origin(source, partition, None, None) for _ in vals]
        self.task.ingest_values(source, partition, vals, stamps, origins)
        self._collect(self.task.advance())

    def _through_codec(self, source: str, values: list[Any]) -> list[Any]:
        schema = next(n.schema for n in self.job.sources if n.name == source)
        if not schema or not self.codecs.knows(schema):
            return values  # a schema-less source, or one named only for the test
        codec = self.codecs(schema)
        out, failures = codec.decode_batch([codec.encode(v) for v in values])
        if failures:
            raise failures[0][1]
        return list(out)

    def send_raw(
        self, source: str, value: bytes | None, *, key: bytes | None = None, partition: int = 0
    ) -> None:
        """Send encoded bytes, decoded with the source's codec (to exercise bad input)."""
        self._check_source(source)
        self._check_alive()
        rec = self._origin(source, partition, key, value)
        self.task.ingest(source, partition, [rec])
        self._collect(self.task.advance())

    def send_raw_many(
        self,
        source: str,
        records: Iterable[tuple[bytes | None, bytes | None, int]],
        *,
        partition: int = 0,
    ) -> None:
        """Send encoded ``(key, value, record timestamp ms)`` records as one batch.

        As a worker reads them from Kafka: decoded with the source's codec (a record
        that does not decode becomes a dead letter), then event time advances. Replays
        of real topics use this (``shoal chaos``).
        """
        self._check_source(source)
        self._check_alive()
        raws = [self._origin(source, partition, k, v, ts) for k, v, ts in records]
        if raws:
            self.task.ingest(source, partition, raws)
            self._collect(self.task.advance())

    def _origin(
        self,
        source: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        ts: int | None = None,
    ) -> TestRecord:
        off = self._offsets[(source, partition)]
        self._offsets[(source, partition)] = off + 1
        return TestRecord(source, partition, off, key, value, self._now if ts is None else ts)

    def send_table(self, table: str, key: Any, value: Any) -> None:
        """Set ``key`` of ``table`` to ``value`` (``None``: a tombstone, deleting it),
        as a record of the table topic read between two batches.

        Raises:
            ConfigError: the job has no such table.
        """
        self._send_table(table, (key, value))

    def send_table_raw(self, table: str, key: bytes | None, value: bytes | None) -> None:
        """Send an encoded table record, decoded as a worker decodes the table topic
        (with the table's ``key`` function and codec): one that does not decode is
        dead-lettered.

        Raises:
            ConfigError: the job has no such table.
        """
        offset = len(self._table_topics[table])  # the table topic is never rolled back
        self._send_table(table, TestRecord(table, 0, offset, key, value, self._now))

    def _send_table(self, table: str, item: TestRecord | tuple[Any, Any]) -> None:
        self._check_alive()
        if table not in self.task.tables:
            raise ConfigError(
                f"job {self.job.name!r} has no table {table!r}; "
                f"tables: {', '.join(sorted(self.task.tables)) or 'none'}"
            )
        self._table_topics[table].append(item)
        self._apply_table(table, item)
        self._collect(self.task.advance())

    def _apply_table(self, table: str, item: TestRecord | tuple[Any, Any]) -> None:
        if isinstance(item, TestRecord):
            self.task.ingest_table(table, [item])
        else:
            self.task.tables[table].apply_values([item])

    def _check_source(self, source: str) -> None:
        if source not in self.task.sources:
            raise ConfigError(
                f"job {self.job.name!r} has no source {source!r}; "
                f"sources: {', '.join(sorted(self.task.sources))}"
            )

    # -- time -----------------------------------------------------------------------
    def advance_watermark(self, watermark_ms: int) -> None:
        """Move event time to at least ``watermark_ms`` and fire what is due."""
        self._collect(self.task.advance(force_watermark_ms=watermark_ms))

    def advance_time(self, ms: int) -> None:
        """Move the processing clock forward by ``ms`` and fire what is due."""
        self._now += ms
        self._collect(self.task.advance())

    @property
    def processing_time_ms(self) -> int:
        """The manual processing clock."""
        return self._now

    @property
    def watermark_ms(self) -> int:
        """The task's watermark."""
        return self.task.watermark

    def _collect(self, _wm: int) -> None:
        # Sink records go through the sink's real codec, as the worker writes them: one
        # that does not fit the schema becomes the same dead letter it would in
        # production. What is kept is the value the job emitted, not the decoded bytes.
        for name, records in self.task.drain_sinks().items():
            schema, codec = self._sink_codecs[name]
            if codec is not None and records:
                _, records = encode_sink_records(self.task, name, schema, codec, records)
            self._outputs[name].extend([(k, v, t) for k, v, t, _ in records])
        self._dead.extend(self.task.drain_dead_letters())

    # -- output ---------------------------------------------------------------------
    def output(self, sink: str) -> list[Any]:
        """Values written to ``sink`` so far."""
        return [v for _, v, _ in self.records(sink)]

    def records(self, sink: str) -> list[tuple[Any, Any, int]]:
        """``(key, value, event_time_ms)`` written to ``sink`` so far."""
        if sink not in self.task.sinks:
            raise ConfigError(
                f"job {self.job.name!r} has no sink {sink!r}; "
                f"sinks: {', '.join(sorted(self.task.sinks))}"
            )
        return list(self._outputs[sink])

    def late(self, step: str, side: str | None = None) -> list[Any]:
        """Values of records that were too late for window step ``step``, or for the
        ``side`` (``"left"`` or ``"right"``) of join step ``step``.

        Raises:
            ConfigError: no such window step, or no such join step and side.
        """
        name = step if side is None else f"{step}:{side}"
        if name not in self._late:
            if side is None and f"{step}:{SIDES[0]}" in self._late:
                raise ConfigError(f"step {step!r} is a join: name its side, 'left' or 'right'")
            what = "window step" if side is None else f"join step with a {side!r} side"
            raise ConfigError(f"job {self.job.name!r} has no {what} {step!r}")
        return [v for _, v, _, _ in self._late[name]]

    def dead_letters(self) -> list[DeadLetter]:
        """Dead letters so far: bad input, failed functions, and sink records that do not
        fit their sink's schema (encoded as the worker encodes them)."""
        return list(self._dead)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters (``in = processed + late + dead_lettered``)."""
        return self.task.counters()

    def close(self) -> None:
        """Release state."""
        if not self._crashed:
            self.task.close()
            self.backend.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _default_codecs(job: Job) -> DriverCodecs:
    # The composition root knows the connectors; importing it only when no codecs are
    # given keeps the driver itself free of them.
    from runtime.composition import default_codecs

    return default_codecs(job.schema_dirs)
