"""The job API: a job is a graph of named steps built from immutable stream objects.

Streams are typed by their records: ``Stream[T]``, and ``KeyedStream[K, T]`` keyed
by ``K``. ``map``/``filter``/``key_by``/``process``/``aggregate`` carry the types from
step to step, so a type checker (``mypy --strict``) catches a step that reads a field
its input does not have, or reads it as the wrong type. A source's records are
``Any`` unless it names their type (``record=``, e.g. a ``TypedDict``).

Examples:
    >>> from datetime import timedelta
    >>> from runtime.api import Job, Json, WatermarkStrategy, windows
    >>> from runtime.api.aggregates import Count
    >>> job = Job("plays_per_user")
    >>> plays = job.source("playback", schema="PlaybackEvent",
    ...                    timestamp=lambda e: e["event_time_ms"],
    ...                    watermarks=WatermarkStrategy.bounded(timedelta(seconds=5)))
    >>> counts = (plays.filter(lambda e: e["event_type"] == "start", name="starts")
    ...                .key_by("by_user", lambda e: e["user_id"])
    ...                .window("per_minute", windows.tumbling(timedelta(minutes=1)))
    ...                .aggregate(Count()))
    >>> counts.sink("plays_per_minute", Json())
    >>> [n.name for n in job.nodes]
    ['playback', 'starts', 'by_user', 'per_minute', 'plays_per_minute']
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from datetime import timedelta
from os import PathLike, fspath
from typing import Any, Generic, Literal, Never, TypeVar, overload

from runtime.api.aggregates import Collect, Reduce
from runtime.api.errors import JobDefinitionError
from runtime.api.evolution import StateSchema
from runtime.api.functions import AggregateFunction, KeyedProcessFunction, Window
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
    default_join_output,
    default_table_join_output,
    default_window_output,
    utf8_key,
)
from runtime.api.io import Avro, Json, SinkFormat, format_schema
from runtime.api.watermarks import WatermarkStrategy
from runtime.api.windows import Session, WindowSpec

T = TypeVar("T")  # a stream's records
U = TypeVar("U")  # the records of the next step
K = TypeVar("K")  # a keyed stream's key
A = TypeVar("A")  # an aggregate's accumulator
R = TypeVar("R")  # an aggregate's result
L = TypeVar("L")  # the records of a window step's late output (its input records)
N = TypeVar("N")  # what a window's result may also be: None where windows merge away
V = TypeVar("V")  # the records a join step emits
TK = TypeVar("TK")  # a table's keys
W = TypeVar("W")  # a table's values

_NO_SCHEMA = object()  # ``sink(schema=...)`` not given
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


class Job:
    """A named streaming job: sources, steps and sinks.

    Args:
        name: the job's name; it names the consumer group, internal topics and state.
        on_error: what to do with bad records and failing user functions (default:
            dead-letter them and keep running).
        dead_letter_topic: where dead letters go; default ``<name>.dead-letters``.
    """

    def __init__(
        self,
        name: str,
        *,
        on_error: ErrorPolicy | str = ErrorPolicy.DEAD_LETTER,
        dead_letter_topic: str | None = None,
        schemas: str | PathLike[str] | None = None,
    ) -> None:
        _check_name(name, "job")
        self.name = name
        # The job author's own *.avsc folder, beside the built-in schemas (e.g.
        # ``Path(__file__).parent / "schemas"``); ``shoal run --schemas`` adds more.
        self.schema_dirs: tuple[str, ...] = (fspath(schemas),) if schemas is not None else ()
        self.on_error = ErrorPolicy(on_error)
        self.dead_letter_topic = dead_letter_topic or f"{name}.dead-letters"
        self._nodes: list[Node] = []
        self._names: set[str] = set()
        self._counter = 0
        # Declared state types of stateful steps (see runtime.api.evolution).
        self._state_schemas: dict[str, StateSchema] = {}

    def __repr__(self) -> str:
        return f"Job({self.name!r}, steps={len(self._nodes)})"

    @property
    def nodes(self) -> tuple[Node, ...]:
        """All steps in the order they were declared (parents before children)."""
        return tuple(self._nodes)

    @property
    def sources(self) -> tuple[SourceNode, ...]:
        """The job's sources."""
        return tuple(n for n in self._nodes if isinstance(n, SourceNode))

    @property
    def sinks(self) -> tuple[SinkNode, ...]:
        """The job's sinks."""
        return tuple(n for n in self._nodes if isinstance(n, SinkNode))

    @property
    def tables(self) -> tuple[TableNode, ...]:
        """The job's tables."""
        return tuple(n for n in self._nodes if isinstance(n, TableNode))

    def node(self, name: str) -> Node:
        """The step called ``name``.

        Raises:
            JobDefinitionError: no such step.
        """
        for n in self._nodes:
            if n.name == name:
                return n
        raise JobDefinitionError(f"job {self.name!r} has no step {name!r}")

    @overload
    def source(
        self,
        name: str,
        *,
        schema: str,
        record: type[T],
        timestamp: Callable[[T], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
    ) -> Stream[T]: ...

    @overload
    def source(
        self,
        name: str,
        *,
        schema: str,
        timestamp: Callable[[Any], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
    ) -> Stream[Any]: ...

    def source(
        self,
        name: str,
        *,
        schema: str,
        record: type[Any] | None = None,
        timestamp: Callable[[Any], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
    ) -> Stream[Any]:
        """Declare an input stream.

        Args:
            name: the source's name; config binds it to a topic (default: the name).
            schema: the Avro record name its records are read as: a built-in schema
                (``schemas/``) or one of the job's own (``Job(..., schemas=FOLDER)``).
            record: for type checkers only: the type of its records as decoded (a
                ``TypedDict`` of the schema's fields); the stream is then a
                ``Stream[record]``. Records are dicts either way.
            timestamp: event time in epoch ms of a record; default: the Kafka timestamp.
            watermarks: the watermark strategy; default: no allowed disorder.
        """
        node = SourceNode(
            name=name,
            schema=schema,
            timestamp=timestamp,
            watermarks=watermarks or WatermarkStrategy(),
        )
        return Stream(self, self._add(node))

    @overload
    def table(
        self,
        name: str,
        *,
        schema: str,
        key: Callable[[bytes], TK],
        kind: Literal["co-partitioned", "global"] = "co-partitioned",
        record: type[W],
    ) -> Table[TK, W]: ...

    @overload
    def table(
        self,
        name: str,
        *,
        schema: str,
        key: Callable[[bytes], TK],
        kind: Literal["co-partitioned", "global"] = "co-partitioned",
    ) -> Table[TK, Any]: ...

    @overload
    def table(
        self,
        name: str,
        *,
        schema: str,
        kind: Literal["co-partitioned", "global"] = "co-partitioned",
        record: type[W],
    ) -> Table[str, W]: ...

    @overload
    def table(
        self,
        name: str,
        *,
        schema: str,
        kind: Literal["co-partitioned", "global"] = "co-partitioned",
    ) -> Table[str, Any]: ...

    def table(
        self,
        name: str,
        *,
        schema: str,
        key: Callable[[bytes], Any] = utf8_key,
        kind: str = "co-partitioned",
        record: type[Any] | None = None,
    ) -> Table[Any, Any]:
        """Declare a table: a (compacted) topic materialized as the latest value per key.

        Each record of the topic sets the value of its key (its Kafka key, turned into
        the table key by ``key``); a record with no value (a tombstone) deletes the
        key. Streams are enriched from it with :meth:`Stream.join_table`.

        ``kind="co-partitioned"`` (large tables): the topic must have as many
        partitions as the job's inputs, keyed alike, and task ``N`` holds partition
        ``N``. ``kind="global"`` (small dimension data such as a title catalogue):
        every task holds the whole table, read from every partition.

        The topic itself is the table's changelog: a task reads its part from the
        start when it opens, and follows updates while it runs.

        Args:
            name: the table's name; config binds it to a topic (default: the name).
            schema: the Avro record name its values are read as (``""``: JSON).
            key: turns a record's Kafka key (bytes) into the table key; default:
                UTF-8 text. A record whose key is missing or does not turn is
                dead-lettered.
            kind: ``"co-partitioned"`` or ``"global"``.
            record: for type checkers only: the type of its values as decoded.

        Returns:
            The table, to join streams with.

        Raises:
            JobDefinitionError: ``kind`` is unknown or ``key`` is not callable.
        """
        del record  # typing only
        if kind not in ("co-partitioned", "global"):
            raise JobDefinitionError(
                f"table {name!r}: kind must be 'co-partitioned' or 'global', not {kind!r}"
            )
        if not callable(key):
            raise JobDefinitionError(f"table {name!r}: key must be a function of the key bytes")
        node = TableNode(name, (), schema=schema, key=key, table_kind=TableKind(kind))
        return Table(self, self._add(node))

    def state_schema(
        self,
        step: str,
        *,
        value: Any = None,
        key: str | None = None,
        version: int = 1,
        migrate: Callable[[Any], Any] | None = None,
    ) -> StateSchema:
        """Declare the state type of the stateful step ``step`` (savepoint evolution).

        See :mod:`runtime.api.evolution`: ``value`` is the Avro schema of the state value
        (a window's accumulator), ``key`` the Avro type of its keys, ``migrate`` turns
        values of an older ``version`` into this one. The step may be declared later.

        Raises:
            JobDefinitionError: the declaration is invalid or the step has one already.
        """
        _check_name(step, "step")
        if step in self._state_schemas:
            raise JobDefinitionError(f"job {self.name!r}: step {step!r} declares its state twice")
        declared = StateSchema(value=value, key=key, version=version, migrate=migrate)
        self._state_schemas[step] = declared
        return declared

    @property
    def state_schemas(self) -> dict[str, StateSchema]:
        """Declared state types by step name (a copy)."""
        return dict(self._state_schemas)

    def _auto_name(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self._counter}"

    def _add(self, node: Node) -> Node:
        _check_name(node.name, "step")
        if node.name in self._names:
            raise JobDefinitionError(
                f"job {self.name!r} already has a step named {node.name!r}; step names "
                "must be unique because they name state, topics and metrics"
            )
        for parent in node.parents:
            if parent not in self._nodes:
                raise JobDefinitionError(f"step {node.name!r} uses a stream of another job")
        self._names.add(node.name)
        self._nodes.append(node)
        return node


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise JobDefinitionError(
            f"invalid {what} name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter, at most 100 characters)"
        )


class Stream(Generic[T]):
    """An unkeyed stream of records of type ``T``. Every method returns a new object."""

    __slots__ = ("_job", "_node")

    def __init__(self, job: Job, node: Node) -> None:
        self._job = job
        self._node = node

    @property
    def node(self) -> Node:
        """The step that produces this stream."""
        return self._node

    @property
    def job(self) -> Job:
        """The job this stream belongs to."""
        return self._job

    def _then(self, node: Node) -> Stream[Any]:
        return Stream(self._job, self._job._add(node))

    def map(self, fn: Callable[[T], U], *, name: str | None = None) -> Stream[U]:
        """One output record per input record."""
        return self._then(MapNode(name or self._job._auto_name("map"), (self._node,), fn=fn))

    def filter(self, fn: Callable[[T], bool], *, name: str | None = None) -> Stream[T]:
        """Keep records for which ``fn`` returns true."""
        return self._then(FilterNode(name or self._job._auto_name("filter"), (self._node,), fn=fn))

    def flat_map(self, fn: Callable[[T], Iterable[U]], *, name: str | None = None) -> Stream[U]:
        """Zero or more output records per input record."""
        return self._then(
            FlatMapNode(name or self._job._auto_name("flat_map"), (self._node,), fn=fn)
        )

    def merge(self, *others: Stream[T], name: str | None = None) -> Stream[T]:
        """Union of this stream and ``others``."""
        parents = (self._node, *(o._node for o in others))
        return self._then(MergeNode(name or self._job._auto_name("merge"), parents))

    def key_by(
        self, name: str, key: Callable[[T], K], *, repartition: bool = True
    ) -> KeyedStream[K, T]:
        """Key the stream.

        Args:
            name: the step's stable name (names its repartition topic).
            key: the key of a record (str, int, bytes or a tuple of those).
            repartition: ``False`` declares that the input topic is already partitioned
                by this key (its message key), so no repartition topic is needed.
        """
        node = self._job._add(KeyByNode(name, (self._node,), fn=key, repartition=repartition))
        return KeyedStream(self._job, node)

    def join(
        self,
        other: Never,
        name: str,
        *,
        within: tuple[timedelta, timedelta],
        how: Literal["inner", "left"] = "inner",
        allowed_lateness: timedelta = timedelta(0),
        output: None = None,
    ) -> object:
        """Joins pair records by key: only a ``KeyedStream`` joins (see
        :meth:`KeyedStream.join`).

        Raises:
            JobDefinitionError: always; key the stream first.
        """
        raise JobDefinitionError(
            f"join {name!r}: the left stream is not keyed; key it first with .key_by(name, key)"
        )

    @overload
    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: Literal["inner", "left"] = "inner",
        output: None = None,
    ) -> Stream[dict[str, Any]]: ...

    @overload
    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: Literal["inner"] = "inner",
        output: Callable[[TK, T, W], V],
    ) -> Stream[V]: ...

    @overload
    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: Literal["left"],
        output: Callable[[TK, T, W | None], V],
    ) -> Stream[V]: ...

    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: str = "inner",
        output: Callable[[TK, T, Any], Any] | None = None,
    ) -> Stream[Any]:
        """Enrich each record with a global table's value under ``key(record)``.

        The lookup is made when the record is processed (see
        :meth:`KeyedStream.join_table` for the semantics); an unkeyed stream can only
        join a ``global`` table, since any task may need any key.

        Args:
            table: the table (``Job.table``).
            name: the step's stable name.
            key: the table key of a record.
            how: ``"inner"`` (records whose key the table lacks are dropped) or
                ``"left"`` (they go on with ``None`` as the table value).
            output: builds the emitted record from ``(key, record, table_value)``;
                default: a dict with ``key``, ``value`` and ``table``.

        Returns:
            The enriched stream.

        Raises:
            JobDefinitionError: the table is co-partitioned or of another job, ``key``
                is missing, or ``how`` is unknown.
        """
        node = _table_join(self, table, name, key, how, output, keyed=False)
        return Stream(self._job, node)

    @overload
    def sink(
        self,
        name: str,
        format: SinkFormat,
        *,
        key: Callable[[T], object] | None = None,
    ) -> None: ...

    @overload
    def sink(
        self,
        name: str,
        *,
        schema: str | None,
        key: Callable[[T], object] | None = None,
    ) -> None: ...

    def sink(
        self,
        name: str,
        format: SinkFormat | None = None,
        *,
        key: Callable[[T], object] | None = None,
        schema: object = _NO_SCHEMA,
    ) -> None:
        """Write the stream to a named output.

        Args:
            name: the sink's name; config binds it to a topic (default: the name).
            format: ``Avro("Record")`` to encode with that Avro record schema, or
                ``Json()``. (The older ``schema="Record"`` / ``schema=None`` still
                works, with a ``DeprecationWarning``.)
            key: the message key of a record; default: the stream's key, if keyed.

        Raises:
            JobDefinitionError: no format, or not one of ``Avro(...)``, ``Json()``.
        """
        fmt = _sink_format(name, format, schema)
        self._job._add(SinkNode(name, (self._node,), schema=format_schema(fmt), key=key))


def _table_join(
    stream: Stream[Any],
    table: object,
    name: str,
    key: object,
    how: object,
    output: object,
    *,
    keyed: bool,
) -> Node:
    """Check a ``join_table`` call and add its step."""
    if not isinstance(table, Table):
        raise JobDefinitionError(f"join_table {name!r}: {table!r} is not a table (Job.table)")
    if table.job is not stream.job:
        raise JobDefinitionError(f"join_table {name!r}: the table belongs to another job")
    if how not in ("inner", "left"):
        raise JobDefinitionError(f"join_table {name!r}: how must be 'inner' or 'left', not {how!r}")
    if key is not None and not callable(key):
        raise JobDefinitionError(f"join_table {name!r}: key must be a function of the record")
    if output is not None and not callable(output):
        raise JobDefinitionError(f"join_table {name!r}: output must be a function")
    kind = table.node.table_kind
    if kind is TableKind.CO_PARTITIONED and (not keyed or key is not None):
        raise JobDefinitionError(
            f"join_table {name!r}: table {table.name!r} is co-partitioned, so only a keyed "
            "stream joins it, by its own key; use kind='global' to look up by key="
        )
    if key is None and not keyed:
        raise JobDefinitionError(
            f"join_table {name!r}: the stream is not keyed; give key= (the table key of a record)"
        )
    node = TableJoinNode(
        name,
        (stream.node, table.node),
        how=JoinKind(how),
        key=key,
        output=output or default_table_join_output,
    )
    return stream.job._add(node)


class Table(Generic[TK, W]):
    """A table of values ``W`` by key ``TK`` (``Job.table``): the latest value per key
    of a compacted topic, held in state; streams join it with ``join_table``."""

    __slots__ = ("_job", "_node")

    def __init__(self, job: Job, node: Node) -> None:
        if not isinstance(node, TableNode):
            raise JobDefinitionError(f"step {node.name!r} is not a table")
        self._job = job
        self._node = node

    def __repr__(self) -> str:
        return f"Table({self._node.name!r}, kind={str(self._node.table_kind)!r})"

    @property
    def name(self) -> str:
        """The table's name (names its state and, by default, its topic)."""
        return self._node.name

    @property
    def node(self) -> TableNode:
        """The table's step."""
        return self._node

    @property
    def job(self) -> Job:
        """The job this table belongs to."""
        return self._job


def _join_bounds(name: str, within: object) -> tuple[int, int]:
    """``(lower_ms, upper_ms)`` of a join's ``within``."""
    if (
        not isinstance(within, tuple)
        or len(within) != 2
        or not all(isinstance(b, timedelta) for b in within)
    ):
        raise JobDefinitionError(
            f"join {name!r}: within must be a (lower, upper) pair of timedeltas, got {within!r}"
        )
    lower, upper = (b // timedelta(milliseconds=1) for b in within)
    if lower > upper:
        raise JobDefinitionError(
            f"join {name!r}: the lower bound {within[0]} is above the upper bound {within[1]}"
        )
    return lower, upper


def _sink_format(name: str, format: object, schema: object) -> SinkFormat:
    """The format of sink ``name`` from its arguments (``schema=`` is the old spelling)."""
    if schema is not _NO_SCHEMA:
        if format is not None:
            raise JobDefinitionError(f"sink {name!r}: give a format or schema=, not both")
        if schema is not None and not isinstance(schema, str):
            raise JobDefinitionError(f"sink {name!r}: schema must be a record name or None")
        warnings.warn(
            f"sink {name!r}: schema= is deprecated; pass Avro({schema!r}) or Json() instead"
            if schema
            else f"sink {name!r}: schema=None is deprecated; pass Json() instead",
            DeprecationWarning,
            stacklevel=3,
        )
        return Avro(schema) if schema else Json()
    if not isinstance(format, Avro | Json):
        raise JobDefinitionError(
            f'sink {name!r} needs a format: Avro("RecordName") or Json(), got {format!r}'
        )
    return format


class KeyedStream(Stream[T], Generic[K, T]):
    """A stream of records ``T`` partitioned by key ``K``: the only place stateful steps
    exist."""

    __slots__ = ()

    # The first signature that matches wins: session windows are the ones that merge.
    @overload
    def window(  # type: ignore[overload-overlap]
        self, name: str, spec: Session
    ) -> WindowedStream[K, T, None]: ...

    @overload
    def window(self, name: str, spec: WindowSpec) -> WindowedStream[K, T, Never]: ...

    def window(self, name: str, spec: WindowSpec) -> WindowedStream[K, T, Any]:
        """Group each key's records into windows (see ``runtime.api.windows``).

        Session windows merge: a window output function of theirs also gets ``None``
        as the result of a session a late record merged into another (a retraction).
        """
        return WindowedStream(self, name, spec)

    @overload
    def join(
        self,
        other: KeyedStream[K, U],
        name: str,
        *,
        within: tuple[timedelta, timedelta],
        how: Literal["inner", "left"] = "inner",
        allowed_lateness: timedelta = ...,
        output: None = None,
    ) -> JoinedStream[K, dict[str, Any], T, U]: ...

    @overload
    def join(
        self,
        other: KeyedStream[K, U],
        name: str,
        *,
        within: tuple[timedelta, timedelta],
        how: Literal["inner"] = "inner",
        allowed_lateness: timedelta = ...,
        output: Callable[[K, T, U], V],
    ) -> JoinedStream[K, V, T, U]: ...

    @overload
    def join(
        self,
        other: KeyedStream[K, U],
        name: str,
        *,
        within: tuple[timedelta, timedelta],
        how: Literal["left"],
        allowed_lateness: timedelta = ...,
        output: Callable[[K, T, U | None], V],
    ) -> JoinedStream[K, V, T, U]: ...

    def join(
        self,
        other: KeyedStream[K, U],
        name: str,
        *,
        within: tuple[timedelta, timedelta],
        how: str = "inner",
        allowed_lateness: timedelta = timedelta(0),
        output: Callable[[K, T, Any], Any] | None = None,
    ) -> JoinedStream[K, Any, T, U]:
        """Interval join: pair each record of this (left) stream with the records of
        ``other`` (right) of the same key whose event times are close to its own.

        A left record at ``l`` and a right record at ``r`` pair when ``l + lower <= r <=
        l + upper`` (``within=(lower, upper)``; bounds may be negative: ``(-5 min, 0)``
        pairs a record with the right records of the five minutes before it). Each pair
        is emitted once, when its second record arrives, with event time ``max(l, r)``.
        With ``how="left"``, a left record that matched nothing is emitted once with
        ``None`` as its right value, at its own event time, when the watermark has
        passed ``l + upper + allowed_lateness``.

        A record is late when ``ts + allowed_lateness`` is below the watermark it
        arrives at (the lower of both inputs'): it joins nothing and goes to
        ``late_left()``/``late_right()``. Every pair of records that are not late is
        emitted; state is kept only until no such record can still match it.

        Both streams must be keyed by the same key, partitioned alike (two ``key_by``
        steps, or inputs declared already partitioned by it).

        Args:
            other: the right stream.
            name: the step's stable name (names its state and changelog).
            within: ``(lower, upper)`` bounds of ``right.ts - left.ts``, inclusive.
            how: ``"inner"`` (pairs only) or ``"left"`` (also unmatched left records).
            allowed_lateness: how far behind the watermark a record may still join.
            output: builds the emitted record from ``(key, left, right)``; default: a
                dict with ``key``, ``left`` and ``right``.

        Returns:
            The joined stream, keyed by the join key.

        Raises:
            JobDefinitionError: a stream is not keyed, the bounds are not timedeltas or
                ``lower > upper``, ``how`` is unknown, or the lateness is negative.
        """
        if not isinstance(other, KeyedStream):
            raise JobDefinitionError(
                f"join {name!r}: the right stream is not keyed; key it first with "
                ".key_by(name, key)"
            )
        if other.job is not self.job:
            raise JobDefinitionError(f"join {name!r}: the right stream belongs to another job")
        lower_ms, upper_ms = _join_bounds(name, within)
        if how not in ("inner", "left"):
            raise JobDefinitionError(f"join {name!r}: how must be 'inner' or 'left', not {how!r}")
        if not isinstance(allowed_lateness, timedelta) or allowed_lateness < timedelta(0):
            raise JobDefinitionError(
                f"join {name!r}: allowed_lateness must be a non-negative timedelta, "
                f"got {allowed_lateness!r}"
            )
        node = self._job._add(
            JoinNode(
                name,
                (self._node, other.node),
                lower_ms=lower_ms,
                upper_ms=upper_ms,
                how=JoinKind(how),
                allowed_lateness_ms=allowed_lateness // timedelta(milliseconds=1),
                output=output or default_join_output,
            )
        )
        return JoinedStream(self._job, node)

    @overload
    def join_table(
        self,
        table: Table[K, W],
        name: str,
        *,
        key: None = None,
        how: Literal["inner", "left"] = "inner",
        output: None = None,
    ) -> KeyedStream[K, dict[str, Any]]: ...

    @overload
    def join_table(
        self,
        table: Table[K, W],
        name: str,
        *,
        key: None = None,
        how: Literal["inner"] = "inner",
        output: Callable[[K, T, W], V],
    ) -> KeyedStream[K, V]: ...

    @overload
    def join_table(
        self,
        table: Table[K, W],
        name: str,
        *,
        key: None = None,
        how: Literal["left"],
        output: Callable[[K, T, W | None], V],
    ) -> KeyedStream[K, V]: ...

    @overload
    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: Literal["inner", "left"] = "inner",
        output: None = None,
    ) -> KeyedStream[K, dict[str, Any]]: ...

    @overload
    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: Literal["inner"] = "inner",
        output: Callable[[TK, T, W], V],
    ) -> KeyedStream[K, V]: ...

    @overload
    def join_table(
        self,
        table: Table[TK, W],
        name: str,
        *,
        key: Callable[[T], TK],
        how: Literal["left"],
        output: Callable[[TK, T, W | None], V],
    ) -> KeyedStream[K, V]: ...

    def join_table(
        self,
        table: Table[Any, Any],
        name: str,
        *,
        key: Callable[[T], Any] | None = None,
        how: str = "inner",
        output: Callable[[Any, T, Any], Any] | None = None,
    ) -> KeyedStream[K, Any]:
        """Enrich each record with the table's value for its key, as of its processing.

        Each record is looked up under its own key (or ``key(record)``, for a global
        table) in the table as this task holds it *when the record is processed*, like
        Kafka Streams' KStream-KTable join: a table update counts for the records
        processed after it, whatever their event times. This is deliberate: an
        event-time ("as of") join would need every version of every key kept in state
        until the watermark passes it; that is later work. Before a task processes
        its first record, its table has read the table topic up to the end it had
        when the task opened; updates arriving while it runs are applied between
        batches of records.

        ``how="inner"`` drops a record whose key the table lacks; ``how="left"`` emits
        it with ``None`` as the table value. Records keep their key and event time.

        A co-partitioned table is looked up by the record's key only, and its topic
        must have the stream's partition count (partitioned by the same key). A
        global table can be looked up by any ``key=`` function.

        Args:
            table: the table (``Job.table``).
            name: the step's stable name.
            key: the table key of a record; default: the record's key.
            how: ``"inner"`` or ``"left"``.
            output: builds the emitted record from ``(key, record, table_value)``;
                default: a dict with ``key``, ``value`` and ``table``.

        Returns:
            The enriched stream, keyed as this one.

        Raises:
            JobDefinitionError: the table is of another job, ``how`` is unknown, or a
                co-partitioned table is given a ``key=``.
        """
        node = _table_join(self, table, name, key, how, output, keyed=True)
        return KeyedStream(self._job, node)

    def process(self, name: str, fn: KeyedProcessFunction[K, T, U]) -> KeyedStream[K, U]:
        """Run a keyed process function with state and timers; outputs stay keyed."""
        node = self._job._add(ProcessNode(name, (self._node,), fn=fn))
        return KeyedStream(self._job, node)


class WindowedStream(Generic[K, T, N]):
    """A keyed stream cut into windows; ``aggregate`` turns it back into a stream.

    ``N`` is ``None`` for session windows (whose output function may get a ``None``
    result: a retraction), ``Never`` for the others.

    ``reduce`` and ``collect`` are ``aggregate`` with a built-in function
    (``aggregates.Reduce``, ``aggregates.Collect``): a window step only ever runs an
    ``AggregateFunction``, whatever its kind of window.
    """

    __slots__ = ("_keyed", "_name", "_spec")

    def __init__(self, keyed: KeyedStream[K, T], name: str, spec: WindowSpec) -> None:
        self._keyed = keyed
        self._name = name
        self._spec = spec

    @overload
    def aggregate(
        self, fn: AggregateFunction[T, A, R], *, output: None = None
    ) -> AggregatedStream[K, dict[str, Any], T]: ...

    @overload
    def aggregate(
        self, fn: AggregateFunction[T, A, R], *, output: Callable[[K, Window, R | N], U]
    ) -> AggregatedStream[K, U, T]: ...

    def aggregate(
        self,
        fn: AggregateFunction[T, A, R],
        *,
        output: Callable[[K, Window, Any], Any] | None = None,
    ) -> AggregatedStream[K, Any, T]:
        """Aggregate each window incrementally.

        Args:
            fn: create / add / merge / result.
            output: builds the emitted record from (key, window, result); default: a dict
                with ``key``, ``window_start_ms``, ``window_end_ms`` and ``value``.
        """
        job = self._keyed.job
        node = job._add(
            WindowNode(
                self._name,
                (self._keyed.node,),
                spec=self._spec,
                aggregate=fn,
                output=output or default_window_output,
            )
        )
        return AggregatedStream(job, node)

    def reduce(
        self,
        fn: Callable[[Any, Any], Any],
        *,
        of: Callable[[T], Any] | None = None,
        output: Callable[[K, Window, Any], Any] | None = None,
    ) -> AggregatedStream[K, Any, T]:
        """Fold each window's records with ``fn`` (associative and commutative).

        Args:
            fn: combines two values into one, e.g. ``max``.
            of: picks the value out of a record; default: the record itself.
            output: as for :meth:`aggregate`.
        """
        return self.aggregate(Reduce(fn, of), output=output)

    def collect(
        self,
        *,
        of: Callable[[T], Any] | None = None,
        output: Callable[[K, Window, Any], Any] | None = None,
    ) -> AggregatedStream[K, Any, T]:
        """Each window's records (or ``of(record)``) as a list, in arrival order.

        Args:
            of: picks the value out of a record; default: the record itself.
            output: as for :meth:`aggregate`.
        """
        return self.aggregate(Collect(of), output=output)


class AggregatedStream(KeyedStream[K, T], Generic[K, T, L]):
    """Results ``T`` of a window step keyed by ``K``; ``late()`` gives the input records
    ``L`` that came too late."""

    __slots__ = ()

    def late(self, name: str | None = None) -> Stream[L]:
        """Side output: records that arrived after their window's allowed lateness."""
        return self._then(LateNode(name or f"{self._node.name}.late", (self._node,)))


class JoinedStream(KeyedStream[K, V], Generic[K, V, T, U]):
    """Records ``V`` of a join step keyed by ``K``; ``late_left()`` and ``late_right()``
    give the input records (``T``, ``U``) that came too late to join."""

    __slots__ = ()

    def late_left(self, name: str | None = None) -> Stream[T]:
        """Side output: left records that arrived after allowed lateness."""
        return self._then(
            LateNode(name or f"{self._node.name}.late_left", (self._node,), side="left")
        )

    def late_right(self, name: str | None = None) -> Stream[U]:
        """Side output: right records that arrived after allowed lateness."""
        return self._then(
            LateNode(name or f"{self._node.name}.late_right", (self._node,), side="right")
        )
