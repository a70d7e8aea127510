"""Table joins on Flink: a table read by the step that joins it, as on the native engine.

A ``join_table`` step runs as one ``ProcessFunction`` (:class:`TableJoinStep`). When a
subtask opens, it reads the table topic from the start of every partition to the end
each has then (the same reader the native engine uses, ``TableFeed``), so the table is
caught up before the subtask's first record; while it runs, it follows the topic and
applies new records before the record it processes next (at most every
``FOLLOW_EVERY_S``). Every record is looked up in the table as the subtask holds it
then: a join of processing time, the native engine's semantics (see
``runtime.engine.tables``), so both engines give the same results on the same input.

Why not Flink's broadcast state: a broadcast input has no order against the main
input, so a record could reach the join before the table records it needs, and what
it joined would depend on timing (the native engine reads the table first). PyFlink
offers no way to hold the main input until a bounded part of another is read. The
table topic is the table's changelog, as on the native engine: the table is not in
Flink's checkpoints, and a subtask restored from one reads its table again.

Where Flink differs (besides ``runtime.flink.translate``'s list):

* Every subtask holds the whole table, co-partitioned tables too: Flink spreads keys
  over subtasks by its own hash, not by Kafka partition, so no subtask can know which
  table partition its keys are in. A co-partitioned table costs its whole size per
  subtask there (a key outside its own partition is still found, where the native
  engine would miss it).
* Tables are not queryable over the HTTP service (Flink jobs have none).

Bad table records (no key, a key ``key`` cannot turn, a value that does not decode)
are dead-lettered with the table topic, partition and offset, by one subtask per
partition (partition ``p`` by subtask ``p mod parallelism``), and the table goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from runtime.api.io import Codec, CodecFactory, RawRecord
from runtime.engine.ports import TableFeed
from runtime.engine.tables import table_key
from runtime.flink import _pyflink as pf
from runtime.flink.failures import Failures
from runtime.flink.functions import DEAD_LETTERS, Pair, like

__all__ = ["FOLLOW_EVERY_S", "TableJoinStep", "TableSpec", "subtask"]

#: How often a subtask looks for new table records (between two records it processes).
FOLLOW_EVERY_S = 0.1
_MISSING: Any = object()


def subtask(runtime_context: Any) -> tuple[int, int]:
    """``(index of this subtask, parallelism)`` of a function's runtime context.

    PyFlink's thread mode asks Flink 1's Java methods, which Flink 2 moved to the task
    info (``getTaskInfo()``); those are asked when the first way fails.
    """
    try:
        index = runtime_context.get_index_of_this_subtask()
        return int(index), int(runtime_context.get_number_of_parallel_subtasks())
    except AttributeError:
        info = runtime_context._runtime_context.getTaskInfo()
        return int(info.getIndexOfThisSubtask()), int(info.getNumberOfParallelSubtasks())


class TableSpec:
    """What a join step needs of its table: its topic, key function and schema, and the
    failures of its records (named after the table)."""

    __slots__ = ("failures", "key", "schema", "topic")

    def __init__(
        self, topic: str, key: Callable[[bytes], Any], schema: str, failures: Failures
    ) -> None:
        self.topic = topic
        self.key = key
        self.schema = schema
        self.failures = failures


class TableJoinStep(pf.ProcessFunction):  # type: ignore[misc]
    """A ``join_table`` step (see the module docstring).

    Args:
        table: the table joined.
        key: the table key of a record (``None``: the pair's own key).
        outer: a left join (records whose key the table lacks go on with ``None``).
        output: builds the emitted record from ``(key, record, table_value)``.
        failures: what to do with a failing ``key`` or ``output`` call.
        feed: makes the table reader (a module-level function or a ``partial`` of one:
            Flink's Python workers call it).
        codecs: the codec factory of the table's values.
    """

    def __init__(
        self,
        table: TableSpec,
        key: Callable[[Any], Any] | None,
        outer: bool,
        output: Callable[[Any, Any, Any], Any],
        failures: Failures,
        feed: Callable[[], TableFeed],
        codecs: Callable[[], CodecFactory],
    ) -> None:
        self.table = table
        self.key = key
        self.outer = outer
        self.output = output
        self.failures = failures
        self.feed_factory = feed
        self.codecs = codecs
        self.values: dict[Any, Any] = {}
        self.positions: dict[int, int] = {}
        self.pending: list[Any] = []  # dead letters of table records, not yet emitted
        self.reports: frozenset[int] = frozenset()
        self.feed: TableFeed | None = None
        self.codec: Codec | None = None
        self.next_follow = 0.0

    def open(self, runtime_context: Any) -> None:
        spec = self.table
        self.codec = self.codecs()(spec.schema)
        self.feed = self.feed_factory()
        count = self.feed.partitions(spec.topic)
        index, parallelism = subtask(runtime_context)
        self.reports = frozenset(p for p in range(count) if p % parallelism == index)
        for partition in range(count):
            for batch in self.feed.load(spec.topic, partition):
                self.apply(batch)
        self.feed.follow({(spec.topic, p): self.positions.get(p, 0) for p in range(count)})
        self.next_follow = time.monotonic() + FOLLOW_EVERY_S

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
            self.feed = None

    def apply(self, raws: Sequence[RawRecord]) -> None:
        """Apply table records, oldest first per partition; records applied already
        (before a partition's position) are passed over."""
        for raw in raws:
            partition, offset = raw.partition(), raw.offset()
            if partition is None:
                continue
            if offset is not None:
                if offset < self.positions.get(partition, 0):
                    continue
                self.positions[partition] = offset + 1
            try:
                key = table_key(raw, self.table.key, self.table.failures.step, hash)
                data = raw.value()
                if data is None:
                    self.values.pop(key, None)
                    continue
                if self.codec is None:
                    raise RuntimeError(f"table join {self.failures.step!r} is not open")
                values, failures = self.codec.decode_batch([data], [raw])
                if failures:
                    raise failures[0][1]
                self.values[key] = values[0]
            except Exception as exc:
                if partition in self.reports:
                    self._reject(exc, raw)

    def _reject(self, exc: BaseException, raw: RawRecord) -> None:
        for tag, letter in self.table.failures.reject(exc, raw.value(), DEAD_LETTERS):
            letter.update(
                source_partition=raw.partition(), source_offset=raw.offset(), original_key=raw.key()
            )
            self.pending.append((tag, letter))

    def process_element(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        if self.feed is not None and time.monotonic() >= self.next_follow:
            self.apply(self.feed.poll())
            self.next_follow = time.monotonic() + FOLLOW_EVERY_S
        if self.pending:
            yield from self.pending
            self.pending.clear()
        record_key, value = pair
        try:
            key = record_key if self.key is None else self.key(value)
            found = self.values.get(key, _MISSING)
            if found is _MISSING:
                if not self.outer:
                    return
                found = None
            result = self.output(key, value, found)
        except Exception as exc:
            yield from self.failures.reject(exc, value, DEAD_LETTERS)
            return
        yield like(pair, (record_key, result))
