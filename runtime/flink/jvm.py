"""JVM steps: a source, its key and a window of a built-in aggregate that Flink runs
without Python.

When a job reads a source whose event time and key are plain field expressions
(``timestamp=field("event_time_ms")``, ``key_by(..., field("user_id"))``) into a
tumbling or hopping window with the built-in ``Count``, or ``Sum``, ``Mean``, ``Min``
or ``Max`` of a numeric field (``Sum(field("bitrate_kbps"))``), nothing in between needs
Python per record: Shoal's JVM steps (``deploy/flink/jvm``, a jar built with Maven,
``jars.steps_jar``) decode the Avro single-object records in the Kafka source, assign
event times and bounded-disorder watermarks per partition there, and aggregate on
Flink's own window operator (with the results Shoal's aggregates give, see
``Aggregates.java``), whose rules for tumbling and hopping windows are Shoal's (fired
at the watermark that reaches a window's end, late when every window of the record
ended ``allowed_lateness`` or more before it, results stamped ``end - 1``; late
records are dropped and counted by Flink, ``numLateRecordsDropped``). Python
runs once per window result, for the job's output function, and on for the steps
after the window.

A record the JVM decoder refuses (framing, unknown writer schema, a body that does not
decode in full, strings that are not UTF-8, a missing or absurd event time) goes to
the Python decoder of the source, which dead-letters it exactly as the Python path
does. The JVM decoder is the stricter of the two: should the Python decoder read a
record the JVM one refused, it is dead-lettered with the JVM decoder's reason
(:class:`RefusedStep`).

What it takes (:func:`plan`): the source's codec is single-object Avro from the
schema repository (no schema registry), the key field a plain ``string``, the time
field a plain ``long`` or ``int`` and an aggregated field a plain ``int``, ``long``,
``float`` or ``double``, all at the top level of the record, an event-time
floor at or above 0, the key step and the window each the only consumer of their
input, no late step on the window and no early updates. Any other job runs on the
Python steps of ``translate`` unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runtime.api.aggregates import Count, Max, Mean, Min, Sum
from runtime.api.errors import RecordError
from runtime.api.expressions import path_of
from runtime.api.functions import Window
from runtime.api.graph import KeyByNode, LateNode, Node, SinkNode, SourceNode, WindowNode
from runtime.api.io import CodecFactory
from runtime.api.job import Job
from runtime.api.windows import Hopping, Tumbling
from runtime.engine.topics import key_bytes
from runtime.flink import _pyflink as pf
from runtime.flink.failures import Failures
from runtime.flink.functions import DEAD_LETTERS, DecodeStep
from runtime.flink.windows import output_pair

TIME_TYPES = ("long", "int")
#: Avro types an aggregate may read in the JVM, and whether Java reads them as doubles.
NUMBERS = {"int": False, "long": False, "float": True, "double": True}
#: The built-in aggregates the JVM steps run, by the name ``Aggregates.java`` knows.
AGGREGATES: dict[type, str] = {Count: "count", Sum: "sum", Mean: "mean", Min: "min", Max: "max"}


class JvmRefusedError(RecordError):
    """A record the JVM decoder refused and the Python decoder read."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A source -> key -> count window chain that runs on the JVM steps.

    Attributes:
        source: the source step.
        key: the key step.
        window: the window step.
        key_field: the record field the key step reads.
        time_field: the record field the source's event time is.
        reader: the reader schema (JSON text).
        writers: every known writer version of it (JSON texts).
        aggregate: the aggregate's name in ``Aggregates.java``.
        value_field: the field the aggregate reads (``None`` for ``Count``).
        floating: whether that field is a ``float`` or ``double``.
        sink: the window's one consumer when it is a sink: the window's results are
            then output and encoded for the sink in batches (``BatchOutputStep``).
    """

    source: SourceNode
    key: KeyByNode
    window: WindowNode
    key_field: str
    time_field: str
    reader: str
    writers: tuple[str, ...]
    aggregate: str = "count"
    value_field: str | None = None
    floating: bool = False
    sink: SinkNode | None = None

    @property
    def floating_result(self) -> bool:
        """Whether the aggregate's results are doubles (``Aggregates.floatingResult``)."""
        return self.aggregate in ("sum", "mean") or (self.floating and self.aggregate != "count")


def _consumers(job: Job, node: Node) -> list[Node]:
    return [n for n in job.nodes if any(p is node for p in n.parents)]


def _field_type(schema: dict[str, Any], name: str) -> Any:
    for f in schema.get("fields", ()):
        if f.get("name") == name:
            return f.get("type")
    return None


def plans(job: Job, codecs: CodecFactory) -> dict[str, Plan]:
    """The job's chains that run on the JVM steps, by window step name."""
    if getattr(codecs, "single_object_schemas", None) is None:  # e.g. a schema registry
        return {}
    found: dict[str, Plan] = {}
    for node in job.nodes:
        if isinstance(node, WindowNode):
            p = plan(job, node, codecs)
            if p is not None:
                found[node.name] = p
    return found


def plan(job: Job, window: WindowNode, codecs: Any) -> Plan | None:
    """The JVM plan of a window step, or ``None`` when it needs the Python steps."""
    spec, agg = window.spec, window.aggregate
    kind = AGGREGATES.get(type(agg))
    if kind is None or type(spec) not in (Tumbling, Hopping):
        return None
    if spec.early_every_ms is not None or window.output is None:  # type: ignore[union-attr]
        return None
    after = _consumers(job, window)
    if any(isinstance(n, LateNode) for n in after):
        return None
    (key,) = window.parents
    if not isinstance(key, KeyByNode) or len(_consumers(job, key)) != 1:
        return None
    (source,) = key.parents
    if not isinstance(source, SourceNode) or len(_consumers(job, source)) != 1:
        return None
    key_path, time_path = path_of(key.fn), path_of(source.timestamp)
    if key_path is None or time_path is None or len(key_path) != 1 or len(time_path) != 1:
        return None
    if source.watermarks.min_valid_ms < 0 or not source.schema:
        return None
    schemas = codecs.single_object_schemas(source.schema)
    if schemas is None:
        return None
    reader, writers = schemas
    fields = json.loads(reader)
    if _field_type(fields, key_path[0]) != "string":
        return None
    if _field_type(fields, time_path[0]) not in TIME_TYPES:
        return None
    value_field, floating = None, False
    if kind != "count":
        value_path = path_of(getattr(agg, "of", None))
        if value_path is None or len(value_path) != 1:
            return None
        value_type = _field_type(fields, value_path[0])
        if not isinstance(value_type, str) or value_type not in NUMBERS:
            return None
        value_field, floating = value_path[0], NUMBERS[value_type]
    sink = after[0] if len(after) == 1 and isinstance(after[0], SinkNode) else None
    return Plan(
        source,
        key,
        window,
        key_path[0],
        time_path[0],
        reader,
        writers,
        kind,
        value_field,
        floating,
        sink,
    )


def decoder(p: Plan) -> Any:
    """The Kafka source's value deserializer (``AvroFields``)."""
    strategy = p.source.watermarks
    steps = pf.shoal_steps()
    fields = steps.AvroFields(
        p.reader,
        pf.java_strings(list(p.writers)),
        p.key_field,
        p.time_field,
        p.value_field,
        p.floating,
        strategy.min_valid_ms,
        steps.AvroFields.NONE if strategy.max_future_ms is None else strategy.max_future_ms,
        strategy.future == "clamp",
    )
    return pf.DeserializationSchema(fields)


def raw_values() -> Any:
    """The Kafka source's value deserializer of the Python steps: ``Row(raw)``, with
    ``None`` for a record without a value (``RawValues``), which the decoder then
    dead-letters as the native engine does."""
    return pf.DeserializationSchema(pf.shoal_steps().RawValues())


def watermarks(p: Plan) -> Any:
    """The source's watermark strategy, on the decoded records' event time."""
    strategy = p.source.watermarks
    idle = -1 if strategy.idle_timeout_ms is None else strategy.idle_timeout_ms
    j = pf.shoal_steps().Steps.watermarks(strategy.max_out_of_order_ms, idle)
    return pf.WatermarkStrategy(j)


def split(raw: Any, p: Plan) -> tuple[Any, Any]:
    """``(decoded Row(key, ts, value), refused Row(raw, error))`` of the source's records."""
    steps = pf.shoal_steps().Steps
    step = p.source.name
    j = steps.split(raw._j_data_stream, step, p.floating)
    return pf.DataStream(j), pf.DataStream(j.getSideOutput(steps.refusedTag(step)))


def aggregate_windows(decoded: Any, p: Plan) -> Any:
    """The aggregate per key and window: ``Row(key, start, end, result)``."""
    spec = p.window.spec
    slide = spec.slide_ms if isinstance(spec, Hopping) else 0
    steps = pf.shoal_steps().Steps
    j = steps.aggregateWindows(
        decoded._j_data_stream,
        p.window.name,
        spec.size_ms,  # type: ignore[union-attr]
        slide,
        spec.allowed_lateness_ms,  # type: ignore[union-attr]
        p.aggregate,
        p.floating,
    )
    return pf.DataStream(j)


class RefusedStep(DecodeStep):
    """The JVM decoder's refused records through the source's Python decoder: its dead
    letters are the Python path's; a record it reads after all is dead-lettered with
    the JVM decoder's reason."""

    def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
        raw, why = row[0], row[1]
        for out in super().process_element(raw, ctx):
            if isinstance(out, tuple) and out and out[0] is DEAD_LETTERS:
                yield out
                continue
            data = bytes(raw) if raw is not None else None
            exc = JvmRefusedError(f"the JVM decoder refused the record: {why}")
            yield from self.failures.reject(exc, data, DEAD_LETTERS)


#: Window results per call of the Python batch step, at most.
BATCH = 1000


def batched_records(results: Any, p: Plan, step: Any) -> Any:
    """Window results -> batches -> ``step`` (Python) -> one ``Row(k, v, t)`` per record."""
    steps = pf.shoal_steps().Steps
    name = p.window.name
    batches = pf.DataStream(steps.batches(results._j_data_stream, name, BATCH, p.floating_result))
    encoded_type = pf.Types.ROW_NAMED(
        ["keys", "values", "times"],
        [
            pf.Types.LIST(pf.Types.PRIMITIVE_ARRAY(pf.Types.BYTE())),
            pf.Types.LIST(pf.Types.PRIMITIVE_ARRAY(pf.Types.BYTE())),
            pf.Types.LIST(pf.Types.LONG()),
        ],
    )
    encoded = batches.process(step, output_type=encoded_type)
    encoded = encoded.name(f"{name}.output").uid(f"{name}.output")
    return encoded, pf.DataStream(steps.unbatch(encoded._j_data_stream, name))


class BatchOutputStep(pf.ProcessFunction):  # type: ignore[misc]
    """A batch of window results -> the sink's encoded records, as columns: the job's
    output function and the sink's encoding per result, in one Python call per batch.
    Failures go to the dead letters as on the Python path (the output function's named
    after the window step, the encoding's after the sink)."""

    def __init__(
        self,
        output: Callable[[Any, Window, Any], Any],
        failures: Failures,
        schema: str,
        sink_failures: Failures,
        codecs: Callable[[], CodecFactory],
        key: Callable[[Any], Any] | None = None,
    ) -> None:
        self.output = output
        self.failures = failures
        self.schema = schema
        self.sink_failures = sink_failures
        self.codecs = codecs
        self.key = key
        self.encode: Any = None

    def open(self, runtime_context: Any) -> None:
        self.encode = self.codecs()(self.schema).encode

    def process_element(self, batch: Any, ctx: Any) -> Iterator[Any]:
        output, encode, key_of = self.output, self.encode, self.key
        keys: list[bytes | None] = []
        values: list[bytes] = []
        times: list[int] = []
        failed: list[Any] = []
        for key, start, end, result in zip(batch[0], batch[1], batch[2], batch[3], strict=True):
            [*pairs] = output_pair(output, self.failures, key, start, end, result)
            if not pairs or pairs[0][0] is DEAD_LETTERS:
                failed.extend(pairs)
                continue
            value = pairs[0][1]
            try:
                data = encode(value)
                key_data = key_bytes(key if key_of is None else key_of(value))
            except Exception as exc:
                failed.extend(self.sink_failures.reject(exc, value, DEAD_LETTERS))
                continue
            keys.append(key_data)
            values.append(data)
            times.append(end - 1)
        yield from failed
        if values:
            yield pf.Row(keys, values, times)


class OutputStep(pf.ProcessFunction):  # type: ignore[misc]
    """``Row(key, start, end, result)`` -> the window step's ``(key, output(...))`` pair;
    a failing output function goes to the dead letters as on the Python path."""

    def __init__(self, output: Callable[[Any, Window, Any], Any], failures: Failures) -> None:
        self.output = output
        self.failures = failures

    def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
        yield from output_pair(self.output, self.failures, row[0], row[1], row[2], row[3])
