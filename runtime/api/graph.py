"""The job graph: immutable nodes that the job API builds and the engines execute.

Each node has a stable ``name``: it names the step's state, its changelog topic and
its metric labels. Renaming a stateful step is a state migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runtime.api.functions import AggregateFunction, KeyedProcessFunction, Window
from runtime.api.watermarks import WatermarkStrategy
from runtime.api.windows import WindowSpec


class ErrorPolicy(StrEnum):
    """What happens to a bad record or a failing user function."""

    DEAD_LETTER = "dead_letter"  # write it to the job's dead-letter topic and go on
    SKIP = "skip"  # count it as dead-lettered, but write it nowhere
    FAIL = "fail"  # stop the job


@dataclass(frozen=True, eq=False)
class Node:
    """A step of the job graph."""

    name: str
    parents: tuple[Node, ...] = ()

    @property
    def kind(self) -> str:
        """Short name of the step type (for metrics and topology views)."""
        return type(self).__name__.removesuffix("Node").lower()


@dataclass(frozen=True, eq=False)
class SourceNode(Node):
    """Reads a named input, bound to a topic by config."""

    schema: str = ""
    timestamp: Callable[[Any], int] | None = None
    watermarks: WatermarkStrategy = field(default_factory=WatermarkStrategy)


@dataclass(frozen=True, eq=False)
class MapNode(Node):
    """One output per input."""

    fn: Callable[[Any], Any] = lambda v: v


@dataclass(frozen=True, eq=False)
class FilterNode(Node):
    """Keeps inputs for which ``fn`` is true."""

    fn: Callable[[Any], bool] = lambda v: True


@dataclass(frozen=True, eq=False)
class FlatMapNode(Node):
    """Zero or more outputs per input."""

    fn: Callable[[Any], Iterable[Any]] = lambda v: (v,)


@dataclass(frozen=True, eq=False)
class MergeNode(Node):
    """Union of several streams."""


@dataclass(frozen=True, eq=False)
class KeyByNode(Node):
    """Assigns a key. ``repartition=False`` declares the input already partitioned by it."""

    fn: Callable[[Any], Any] = lambda v: v
    repartition: bool = True


@dataclass(frozen=True, eq=False)
class WindowNode(Node):
    """Keyed window aggregation with a late-events side output."""

    spec: WindowSpec | None = None
    aggregate: AggregateFunction[Any, Any, Any] | None = None
    output: Callable[[Any, Window, Any], Any] | None = None


@dataclass(frozen=True, eq=False)
class LateNode(Node):
    """Side output of a window or join step: records that came after allowed lateness.

    ``side`` is ``"left"`` or ``"right"`` for a join step (which input's late records),
    empty for a window step.
    """

    side: str = ""


@dataclass(frozen=True, eq=False)
class ProcessNode(Node):
    """Keyed process function with state and timers."""

    fn: KeyedProcessFunction[Any, Any, Any] | None = None


class JoinKind(StrEnum):
    """Which records an interval join emits."""

    INNER = "inner"  # every matching pair
    LEFT = "left"  # every matching pair, and each left record that matched nothing


@dataclass(frozen=True, eq=False)
class JoinNode(Node):
    """Interval join of two keyed streams; ``parents`` are ``(left, right)``.

    A pair of records of the same key joins when ``left.ts + lower_ms <= right.ts <=
    left.ts + upper_ms``; ``output(key, left, right)`` builds the emitted record
    (``right`` is ``None`` for an unmatched left record of a left join). Declarative
    on purpose: each engine runs it its own way (see ``runtime.engine.joins``).
    """

    lower_ms: int = 0
    upper_ms: int = 0
    how: JoinKind = JoinKind.INNER
    allowed_lateness_ms: int = 0
    output: Callable[[Any, Any, Any], Any] | None = None


class TableKind(StrEnum):
    """How a table is spread over a job's tasks."""

    CO_PARTITIONED = "co-partitioned"  # task N holds partition N of the table topic
    GLOBAL = "global"  # every task holds the whole table (every partition)


def utf8_key(raw: bytes) -> str:
    """The default key of a table record: its Kafka key as UTF-8 text."""
    return raw.decode("utf-8")


@dataclass(frozen=True, eq=False)
class TableNode(Node):
    """A table materialized from a (compacted) topic: the latest value per key.

    ``key`` turns a record's Kafka key into the table key; a record without a value
    (a tombstone) deletes its key. It has no parents: it reads its topic itself.
    """

    schema: str = ""
    key: Callable[[bytes], Any] = utf8_key
    table_kind: TableKind = TableKind.CO_PARTITIONED


@dataclass(frozen=True, eq=False)
class TableJoinNode(Node):
    """Enriches a stream from a table; ``parents`` are ``(stream, table)``.

    Each record is looked up under ``key(record)`` (``None``: the record's own key)
    in the table as the task holds it when the record is processed, and
    ``output(key, record, table_value)`` builds the emitted record (``table_value``
    is ``None`` for a record of a left join whose key the table lacks).
    """

    how: JoinKind = JoinKind.INNER
    key: Callable[[Any], Any] | None = None
    output: Callable[[Any, Any, Any], Any] | None = None


@dataclass(frozen=True, eq=False)
class SinkNode(Node):
    """Writes to a named output, bound to a topic (or another sink) by config."""

    schema: str = ""
    key: Callable[[Any], Any] | None = None


def default_window_output(key: Any, window: Window, result: Any) -> dict[str, Any]:
    """The default record a window step emits."""
    return {
        "key": key,
        "window_start_ms": window.start_ms,
        "window_end_ms": window.end_ms,
        "value": result,
    }


def default_join_output(key: Any, left: Any, right: Any) -> dict[str, Any]:
    """The default record a join step emits (``right`` is ``None`` when unmatched)."""
    return {"key": key, "left": left, "right": right}


def default_table_join_output(key: Any, record: Any, table_value: Any) -> dict[str, Any]:
    """The default record a table join emits (``table`` is ``None`` when unmatched)."""
    return {"key": key, "value": record, "table": table_value}
