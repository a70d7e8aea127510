"""The job API: a job is a graph of named steps built from immutable stream objects.

Examples:
    >>> from datetime import timedelta
    >>> from runtime.api import Job, WatermarkStrategy, windows
    >>> from runtime.api.aggregates import Count
    >>> job = Job("plays_per_user")
    >>> plays = job.source("playback", schema="PlaybackEvent",
    ...                    timestamp=lambda e: e["event_time_ms"],
    ...                    watermarks=WatermarkStrategy.bounded(timedelta(seconds=5)))
    >>> counts = (plays.filter(lambda e: e["event_type"] == "start", name="starts")
    ...                .key_by("by_user", lambda e: e["user_id"])
    ...                .window("per_minute", windows.tumbling(timedelta(minutes=1)))
    ...                .aggregate(Count()))
    >>> _ = counts.sink("plays_per_minute", schema=None)
    >>> [n.name for n in job.nodes]
    ['playback', 'starts', 'by_user', 'per_minute', 'plays_per_minute']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from os import PathLike, fspath
from typing import Any

from runtime.api.errors import JobDefinitionError
from runtime.api.functions import AggregateFunction, KeyedProcessFunction, Window
from runtime.api.graph import (
    ErrorPolicy,
    FilterNode,
    FlatMapNode,
    KeyByNode,
    LateNode,
    MapNode,
    MergeNode,
    Node,
    ProcessNode,
    SinkNode,
    SourceNode,
    WindowNode,
    default_window_output,
)
from runtime.api.watermarks import WatermarkStrategy
from runtime.api.windows import WindowSpec

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

    def node(self, name: str) -> Node:
        """The step called ``name``.

        Raises:
            JobDefinitionError: no such step.
        """
        for n in self._nodes:
            if n.name == name:
                return n
        raise JobDefinitionError(f"job {self.name!r} has no step {name!r}")

    def source(
        self,
        name: str,
        *,
        schema: str,
        timestamp: Callable[[Any], int] | None = None,
        watermarks: WatermarkStrategy | None = None,
    ) -> Stream:
        """Declare an input stream.

        Args:
            name: the source's name; config binds it to a topic (default: the name).
            schema: the Avro record name its records are read as: a built-in schema
                (``schemas/``) or one of the job's own (``Job(..., schemas=FOLDER)``).
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


class Stream:
    """An unkeyed stream of records. Every method returns a new object."""

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

    def _then(self, node: Node) -> Stream:
        return Stream(self._job, self._job._add(node))

    def map(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """One output record per input record."""
        return self._then(MapNode(name or self._job._auto_name("map"), (self._node,), fn=fn))

    def filter(self, fn: Callable[[Any], bool], *, name: str | None = None) -> Stream:
        """Keep records for which ``fn`` returns true."""
        return self._then(FilterNode(name or self._job._auto_name("filter"), (self._node,), fn=fn))

    def flat_map(self, fn: Callable[[Any], Iterable[Any]], *, name: str | None = None) -> Stream:
        """Zero or more output records per input record."""
        return self._then(
            FlatMapNode(name or self._job._auto_name("flat_map"), (self._node,), fn=fn)
        )

    def merge(self, *others: Stream, name: str | None = None) -> Stream:
        """Union of this stream and ``others``."""
        parents = (self._node, *(o._node for o in others))
        return self._then(MergeNode(name or self._job._auto_name("merge"), parents))

    def key_by(
        self, name: str, key: Callable[[Any], Any], *, repartition: bool = True
    ) -> KeyedStream:
        """Key the stream.

        Args:
            name: the step's stable name (names its repartition topic).
            key: the key of a record (str, int, bytes or a tuple of those).
            repartition: ``False`` declares that the input topic is already partitioned
                by this key (its message key), so no repartition topic is needed.
        """
        node = self._job._add(KeyByNode(name, (self._node,), fn=key, repartition=repartition))
        return KeyedStream(self._job, node)

    def sink(
        self, name: str, *, schema: str | None, key: Callable[[Any], Any] | None = None
    ) -> None:
        """Write the stream to a named output.

        Args:
            name: the sink's name; config binds it to a topic (default: the name).
            schema: Avro record name to encode with; ``None`` writes JSON.
            key: the message key of a record; default: the stream's key, if keyed.
        """
        self._job._add(SinkNode(name, (self._node,), schema=schema or "", key=key))


class KeyedStream(Stream):
    """A stream partitioned by key: the only place stateful steps exist."""

    __slots__ = ()

    def window(self, name: str, spec: WindowSpec) -> WindowedStream:
        """Group each key's records into windows (see ``runtime.api.windows``)."""
        return WindowedStream(self, name, spec)

    def process(self, name: str, fn: KeyedProcessFunction) -> KeyedStream:
        """Run a keyed process function with state and timers; outputs stay keyed."""
        node = self._job._add(ProcessNode(name, (self._node,), fn=fn))
        return KeyedStream(self._job, node)


class WindowedStream:
    """A keyed stream cut into windows; ``aggregate`` turns it back into a stream."""

    __slots__ = ("_keyed", "_name", "_spec")

    def __init__(self, keyed: KeyedStream, name: str, spec: WindowSpec) -> None:
        self._keyed = keyed
        self._name = name
        self._spec = spec

    def aggregate(
        self,
        fn: AggregateFunction[Any, Any, Any],
        *,
        output: Callable[[Any, Window, Any], Any] | None = None,
    ) -> AggregatedStream:
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


class AggregatedStream(KeyedStream):
    """Results of a window step; ``late()`` gives the records that came too late."""

    __slots__ = ()

    def late(self, name: str | None = None) -> Stream:
        """Side output: records that arrived after their window's allowed lateness."""
        return self._then(LateNode(name or f"{self._node.name}.late", (self._node,)))
