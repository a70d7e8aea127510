"""Where tables live on the native engine: a table's state and the steps that join it.

A table (``Job.table``) is the latest value per key of a (compacted) topic. A task
holds its part in a state store of the table's name: a co-partitioned table the
partition with the task's number, a global table every partition. The table topic is
its own changelog: the store is not checkpointed to a changelog topic of ours.
Instead, when a task opens, its table stores are cleared and read from the start of
their partitions up to the end each partition had then
(:meth:`runtime.engine.worker.Worker.on_assign`), so the table is caught up before the
task processes its first stream record. While the task runs, table records read
between batches update the store (:meth:`TableOperator.apply`). After a restart the
table is read again, as of the restart: a replayed stream record may then see a
newer table value than its first, uncommitted processing did (the join is one of
processing time).

State of a table step: ``key -> value`` (the table key as ``key`` turns the record's
Kafka key, and the decoded value); a tombstone (a record without a value) deletes
the key. The entries are keyed by the table key, so queryable state finds them
(``/state/JOB/TABLE/KEY``). Each partition's next offset to apply is kept in memory
only (:attr:`TableOperator.positions`): a record read twice (the initial read of a
task and the worker's follower overlap) is applied once.

A table record that cannot be applied is dead-lettered with its topic, partition and
offset, and the table goes on: one without a key, whose key ``key`` cannot turn or
state cannot hold, or whose value does not decode (or cannot be stored). Every task
holding a global table reads it, but only one reports each partition's bad records
(partition ``p`` by task ``p mod tasks``). As a table is read again from its start when
a task opens, a bad record stays in the table topic and is dead-lettered again after a
restart, until compaction or retention removes it.

A join step (:class:`TableJoinOperator`) looks each record up in the table store of
its own task when the record is processed; ``how="inner"`` drops a record whose key
the table lacks, ``how="left"`` emits it with ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from runtime.api.errors import DecodeError, RecordOrigin
from runtime.api.io import Codec, RawRecord
from runtime.engine.context import TaskContext
from runtime.engine.operators import Batch, Operator
from runtime.state.codec import encode_value
from runtime.state.serde import encode_key

if TYPE_CHECKING:
    from runtime.state.base import StateStore

__all__ = ["TableJoinOperator", "TableOperator", "table_key"]

_MISSING: Any = object()


class TableOperator(Operator):
    """A table's state in one task (see the module docstring).

    Args:
        name: the table's name (and its store's).
        task: the task it belongs to.
        store: the table's state store.
        key: turns a record's Kafka key (bytes) into the table key.
        codec: gives the codec that decodes the table's values (asked when a record
            is decoded, so that a test's decoded values need none).
        partitions: the table topic's partitions this task holds (``None``: every
            partition it is given; the worker sets it when the task opens).
    """

    stateful = True

    def __init__(
        self,
        name: str,
        task: TaskContext,
        store: StateStore,
        key: Callable[[bytes], Any],
        codec: Callable[[], Codec],
        partitions: frozenset[int] | None = None,
    ) -> None:
        super().__init__(name, task)
        self.store = store
        self.key = key
        self.codec = codec
        self.partitions = partitions
        #: partition -> next offset to apply (records before it were applied).
        self.positions: dict[int, int] = {}
        #: Partitions whose bad records this task dead-letters (``None``: all). A global
        #: table is held by every task: one of them reports each partition's bad records.
        self.reports: frozenset[int] | None = None

    def process(self, batch: Batch) -> None:
        """A table is fed through :meth:`apply`, not by a parent step."""
        raise NotImplementedError(f"table {self.name!r} has no parent step")

    def holds(self, partition: int) -> bool:
        """Whether this task holds ``partition`` of the table topic."""
        return self.partitions is None or partition in self.partitions

    def reset(self) -> None:
        """Forget everything: the table is about to be read from the start."""
        self.store.clear()
        self.positions.clear()

    def apply(self, raws: Sequence[RawRecord]) -> None:
        """Apply table records read from the topic, oldest first per partition.

        Records of partitions this task does not hold, and records before a
        partition's position (applied already), are passed over.
        """
        for raw in raws:
            partition, offset = raw.partition(), raw.offset()
            if partition is None or not self.holds(partition):
                continue
            if offset is not None:
                if offset < self.positions.get(partition, 0):
                    continue
                self.positions[partition] = offset + 1
            self.counters.records_in += 1
            try:
                key = self._key(raw)
                data = raw.value()
                if data is None:
                    self.store.delete(key)
                    continue
                value = self._decode(raw, data)
                encode_value(value)  # raises for a value state cannot hold
            except Exception as exc:
                self._reject(exc, raw, partition)
                continue
            self.store.put(key, value)
        self.flush()

    def apply_values(self, items: Sequence[tuple[Any, Any]]) -> None:
        """Apply decoded ``(key, value)`` updates (``None``: delete; the test driver's
        entry). A key or value state cannot hold is dead-lettered."""
        for key, value in items:
            self.counters.records_in += 1
            try:
                encode_key(key)
                if value is None:
                    self.store.delete(key)
                    continue
                encode_value(value)
            except Exception as exc:
                self.counters.dead_lettered += 1
                self.task.dead_letter(self.name, exc, None, {"key": key, "value": value})
                continue
            self.store.put(key, value)
        self.flush()

    def flush(self) -> None:
        """Make the applied updates durable locally. The changes are not written to a
        changelog: the table topic is one."""
        self.store.checkpoint()

    def _key(self, raw: RawRecord) -> Any:
        return table_key(raw, self.key, self.name, encode_key)

    def _decode(self, raw: RawRecord, data: bytes) -> Any:
        values, failures = self.codec().decode_batch([data], [raw])
        if failures:
            raise failures[0][1]
        return values[0]

    def _reject(self, exc: BaseException, raw: RawRecord, partition: int) -> None:
        self.counters.dead_lettered += 1
        if self.reports is None or partition in self.reports:
            self.task.dead_letter(self.name, exc, raw, raw.value())


def _origin(raw: RawRecord) -> RecordOrigin:
    return RecordOrigin(raw.topic(), raw.partition(), raw.offset())


def table_key(
    raw: RawRecord,
    key: Callable[[bytes], Any],
    step: str,
    check: Callable[[Any], object] | None = None,
) -> Any:
    """The table key of a table record: ``key`` of its Kafka key, which ``check`` (if
    given) accepts; the native engine checks that state can hold it, Flink that it hashes.

    Raises:
        DecodeError: the record has no key, or it does not turn (naming where it is).
    """
    data = raw.key()
    if data is None:
        raise DecodeError("table record without a key", origin=_origin(raw), step=step)
    try:
        turned = key(data)
        if check is not None:
            check(turned)
    except Exception as exc:
        raise DecodeError(
            f"table key {data[:64]!r} does not turn into a table key: {type(exc).__name__}: {exc}",
            origin=_origin(raw),
            step=step,
        ) from exc
    return turned


class TableJoinOperator(Operator):
    """Enriches records from a table held by the same task.

    Args:
        name: the step's name.
        task: the task it belongs to.
        table: the table's operator (its store is read).
        key: the table key of a record (``None``: the record's own key).
        outer: a left join (records whose key the table lacks go on with ``None``).
        output: builds the emitted record from ``(key, record, table_value)``.
    """

    def __init__(
        self,
        name: str,
        task: TaskContext,
        *,
        table: TableOperator,
        key: Callable[[Any], Any] | None,
        outer: bool,
        output: Callable[[Any, Any, Any], Any],
    ) -> None:
        super().__init__(name, task)
        self.table = table
        self.key = key
        self.outer = outer
        self.output = output

    def process(self, batch: Batch) -> None:
        """Look every record up in the table as it is now; emit the joined ones."""
        self.counters.records_in += len(batch)
        store, key_fn, outer, output = self.table.store, self.key, self.outer, self.output
        out: Batch = []
        for rec in batch:
            record_key, value, ts, origin = rec
            try:
                key = record_key if key_fn is None else key_fn(value)
                found = store.get(key, _MISSING)
                if found is _MISSING:
                    if outer:
                        out.append((record_key, output(key, value, None), ts, origin))
                    continue
                out.append((record_key, output(key, value, found), ts, origin))
            except Exception as exc:
                self.fail(exc, rec)
        self.emit(out)
