"""Translate a Shoal job graph into a PyFlink DataStream job.

==================  ================================================================
Shoal step          Flink
==================  ================================================================
source              ``KafkaSource`` of raw values (group = the job's group, earliest
                    offsets when the group has none), one reader per partition (the
                    steps jar's ``RawValues``, so a record without a value is
                    dead-lettered too; without the jar Flink skips it); a
                    ``DecodeStep`` (Shoal's codec, event-time checks, dead letters);
                    the source's bounded-disorder watermarks with idleness, assigned
                    per reader, so per partition as on the native engine
map/filter/flat_map ``ProcessFunction`` around the user function (dead letters)
merge               ``union``
key_by              a ``ProcessFunction`` that sets the pair's key; stateful steps
                    ``key_by`` on it (Flink hashes the key)
window              ``WindowStep``, a ``KeyedProcessFunction`` that runs the window
                    operator both engines share with the kind's registered assigner
                    (``runtime.engine.windowing``) on keyed state and event-time
                    timers: every kind, merges, retractions, allowed lateness; late
                    side output
late                the window's late side output, or the join's of one input
process             ``KeyedProcessFunction`` on Flink state and timers (``process``)
join                ``JoinStep``, a ``KeyedCoProcessFunction`` over both inputs
                    connected and keyed by the pairs' keys: Shoal's interval join
                    rules on keyed state and event-time timers (``joins``): inner and
                    left joins, allowed lateness; a late side output per input
sink                ``EncodeStep`` (message key and value bytes) + Flink's Kafka table
                    sink with raw key and value formats (the DataStream API of PyFlink
                    cannot write keys), exactly-once: transactions that commit with
                    checkpoints
table               nothing of its own: the steps that join it read its topic
join_table          ``TableJoinStep``, a ``ProcessFunction`` that reads the table's topic
                    when it opens and follows it (``tables``), and looks each record up
                    in the table as it stands then (a join of processing time)
dead letters        every step's dead-letter side output, unioned into one sink
source, key_by and  on the JVM steps (``jvm``) when the event time and the key are
built-in window     plain fields and the window a tumbling or hopping built-in
                    aggregate (``Count``, or ``Sum``, ``Mean``, ``Min``, ``Max`` of a
                    numeric field): Avro decoded in the Kafka source, Flink's window
                    operator, Python once per window result (in batches when a sink
                    takes them)
==================  ================================================================

Where Flink differs from the native engine (the same results otherwise):

* Sink records carry the same message keys, but Flink's Kafka producer partitions
  them with Kafka's Java default (murmur2 of the key), the native engine with
  librdkafka's (CRC32), so a key may land in another partition of the sink topic.
* Dead letters of records that failed decoding name the source topic but not the
  partition and offset (the raw-bytes deserializer sees only the value).
* A window that a record changes after it was complete (within allowed lateness)
  emits its new result with the next watermark, once per record that changed it (the
  native engine: at the end of the batch, once per batch). A retraction carries the
  event time of the record that merged the sessions (native: the retracted
  session's ``end - 1``).
* Windows with ``early_updates`` are refused (no Flink trigger is wired for them).
* A join judges each record at the watermark it arrives at (native: the watermark
  before its batch), so whether a record near the lateness bound is late can differ
  as it does for windows. An unmatched left record of a left join goes out at the
  first watermark past its bound (native: the batch's). A value the native state
  codec cannot store is dead-lettered there; Flink's state stores any value, so it
  joins.
* A table is read by each subtask of the step that joins it, whole (co-partitioned
  tables too), and is not in Flink's checkpoints: its topic is its changelog, as on the
  native engine (``runtime.flink.tables`` says why not broadcast state).
* The ``skip`` and ``dead_letter`` policies behave alike; ``fail`` fails the task and
  Flink restarts it from the last checkpoint until its restart attempts run out.
* The skew bound (``WatermarkStrategy.max_future_ms``) is checked against each
  subtask's wall clock when the record is decoded, and a clamped time is computed
  again when Flink assigns timestamps; sink timestamps are Flink's Kafka producer's
  (not clamped into the broker's limits as the native transport does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, JobDefinitionError
from runtime.api.graph import (
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
    TableNode,
    WindowNode,
    default_join_output,
    default_table_join_output,
)
from runtime.api.io import CodecFactory
from runtime.api.job import Job
from runtime.engine.ports import TableFeed
from runtime.flink import _pyflink as pf
from runtime.flink import jvm
from runtime.flink.failures import Failures
from runtime.flink.functions import (
    DEAD_LETTERS,
    DecodeStep,
    EncodeStep,
    FilterStep,
    FlatMapStep,
    KeyStep,
    MapStep,
    encode_dead_letter,
    late_tag,
    pair_key,
)
from runtime.flink.joins import SIDES, JoinBounds, JoinStep
from runtime.flink.jvm import Plan as JvmPlan
from runtime.flink.process import ProcessStep
from runtime.flink.tables import TableJoinStep, TableSpec
from runtime.flink.windows import WindowStep

BYTES = pf.Types.PRIMITIVE_ARRAY(pf.Types.BYTE())
# What the sinks receive: the message key (or None), the value and the timestamp (ms).
KEYED_BYTES = pf.Types.ROW_NAMED(["k", "v", "t"], [BYTES, BYTES, pf.Types.LONG()])
STEPS = {MapNode: MapStep, FilterNode: FilterStep, FlatMapNode: FlatMapStep, KeyByNode: KeyStep}


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """What the translation needs to know about Kafka.

    Attributes:
        bootstrap: Kafka address.
        group: consumer group; also the sinks' transactional-id prefix.
        partitions: partitions of every source topic (one reader each).
        bounded: stop at the offsets that are the latest when the job starts.
        transaction_timeout_ms: the sinks' Kafka transaction timeout.
        properties: the Java clients' settings from ``connectors.kafka.config`` (the one
            place that builds client settings): the address, TLS, SASL ...
        codecs: gives the codec factory of the records' schemas (decode, encode, dead
            letters); Flink's Python workers call it, so it is a module-level function.
        tables: makes a table reader (for jobs with tables; Flink's Python workers call
            it, so a module-level function or a ``partial`` of one).
    """

    bootstrap: str
    group: str
    partitions: Mapping[str, int] = field(default_factory=dict)
    bounded: bool = False
    transaction_timeout_ms: int = 600_000
    properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    codecs: Callable[[], CodecFactory] = field(kw_only=True)
    tables: Callable[[], TableFeed] | None = field(default=None, kw_only=True)
    steps_jar: bool = field(default=False, kw_only=True)
    jvm_steps: bool = field(default=False, kw_only=True)


@dataclass
class Translation:
    """The translated job: Flink streams per step, and what went where; ``jvm``: the
    chains that run on the JVM steps (by window step), and the steps in them."""

    streams: dict[str, Any] = field(default_factory=dict)
    jvm: dict[str, JvmPlan] = field(default_factory=dict)
    jvm_steps: dict[str, JvmPlan] = field(default_factory=dict)
    late: dict[str, Any] = field(default_factory=dict)
    dead: list[Any] = field(default_factory=list)
    sinks: dict[str, str] = field(default_factory=dict)
    outputs: list[tuple[str, str, Any]] = field(default_factory=list)


def translate(env: Any, job: Job, bindings: Bindings, kafka: KafkaSettings) -> Translation:
    """Add ``job`` to the Flink environment ``env``: sources, steps, sinks, dead letters.

    Raises:
        ConfigError: a source topic's partition count is unknown, or the job has a
            table and ``kafka`` no table reader.
        JobDefinitionError: the job uses something the Flink engine does not run.
    """
    if job.tables and kafka.tables is None:
        raise ConfigError(f"job {job.name!r} has tables and the Flink engine no table reader")
    out = Translation()
    if kafka.steps_jar and kafka.jvm_steps:
        out.jvm = jvm.plans(job, kafka.codecs())
        for p in out.jvm.values():
            out.jvm_steps.update({p.source.name: p, p.key.name: p, p.window.name: p})
            if p.sink is not None:
                out.jvm_steps[p.sink.name] = p
    for node in job.nodes:
        out.streams[node.name] = _translate(env, job, bindings, kafka, node, out)
    if out.dead:
        dead = out.dead[0].union(*out.dead[1:]) if len(out.dead) > 1 else out.dead[0]
        encoded = dead.map(partial(encode_dead_letter, kafka.codecs), output_type=KEYED_BYTES)
        encoded = encoded.name("dead-letters.encode").uid("dead-letters.encode")
        out.outputs.append(("dead-letters", bindings.dead_letters, encoded))
    _write_sinks(env, kafka, out.outputs)
    return out


def _failures(job: Job, node: Node, topic: str | None = None) -> Failures:
    return Failures(job.name, node.name, job.on_error, topic)


def _parent(out: Translation, node: Node) -> Any:
    return out.streams[node.parents[0].name]


def _translate(
    env: Any, job: Job, bindings: Bindings, kafka: KafkaSettings, node: Node, out: Translation
) -> Any:
    on_jvm = out.jvm_steps.get(node.name)
    if on_jvm is not None:
        return _on_jvm(env, job, bindings, kafka, node, out, on_jvm)
    if isinstance(node, SourceNode):
        return _source(env, job, bindings, kafka, node, out)
    if isinstance(node, MergeNode):
        first, *rest = (out.streams[p.name] for p in node.parents)
        return first.union(*rest)
    if isinstance(node, MapNode | FilterNode | FlatMapNode | KeyByNode):
        step = STEPS[type(node)](node.fn, _failures(job, node))
        return _with_dead(_parent(out, node).process(step).name(node.name).uid(node.name), out)
    if isinstance(node, WindowNode):
        return _window(job, node, out)
    if isinstance(node, JoinNode):
        return _join(job, node, out)
    if isinstance(node, LateNode):
        return out.late[_late_key(node.parents[0].name, node.side)]
    if isinstance(node, TableNode):
        return None  # read by the steps that join it
    if isinstance(node, TableJoinNode):
        return _table_join(job, bindings, kafka, node, out)
    if isinstance(node, ProcessNode):
        if node.fn is None:
            raise JobDefinitionError(f"process step {node.name!r} has no function")
        keyed = _parent(out, node).key_by(pair_key)
        result = keyed.process(ProcessStep(node.fn, _failures(job, node)))
        return _with_dead(result.name(node.name).uid(node.name), out)
    if isinstance(node, SinkNode):
        topic = _sink_topic(bindings, node)
        encoded = _parent(out, node).process(
            EncodeStep(node.schema, _failures(job, node), kafka.codecs, node.key),
            output_type=KEYED_BYTES,
        )
        encoded = _with_dead(encoded.name(f"{node.name}.encode").uid(f"{node.name}.encode"), out)
        out.outputs.append((node.name, topic, encoded))
        out.sinks[node.name] = topic
        return encoded
    raise JobDefinitionError(f"step {node.name!r}: the Flink engine cannot run {node.kind} steps")


def _with_dead(stream: Any, out: Translation) -> Any:
    out.dead.append(stream.get_side_output(DEAD_LETTERS))
    return stream


def _on_jvm(
    env: Any,
    job: Job,
    bindings: Bindings,
    kafka: KafkaSettings,
    node: Node,
    out: Translation,
    plan: JvmPlan,
) -> Any:
    """A step of a chain on the JVM steps: the source decodes and splits off what it
    refused, the key step is the window's key selector, the window aggregates."""
    if node is plan.source:
        return _jvm_source(env, job, bindings, kafka, plan.source, plan, out)
    if node is plan.key:
        return _parent(out, node)
    if node is plan.sink:
        return out.streams[node.name]  # set with the window's batched output
    window = plan.window
    results = jvm.aggregate_windows(_parent(out, window), plan)
    if plan.sink is not None:
        return _batched_sink(job, bindings, kafka, window, plan.sink, results, out)
    step = jvm.OutputStep(window.output, _failures(job, window))  # type: ignore[arg-type]
    result = results.process(step).name(f"{window.name}.output").uid(f"{window.name}.output")
    return _with_dead(result, out)


def _jvm_source(
    env: Any,
    job: Job,
    bindings: Bindings,
    kafka: KafkaSettings,
    node: SourceNode,
    plan: JvmPlan,
    out: Translation,
) -> Any:
    """A source on the JVM steps: ``Row(key, event time, value)`` of the records decoded in
    the JVM; the rest through the source's Python decoder to the dead letters."""
    topic = bindings.sources[node.name]
    partitions = _partitions(kafka, node, topic)
    builder = _kafka_source(kafka, node, topic).set_value_only_deserializer(jvm.decoder(plan))
    raw = env.from_source(builder.build(), jvm.watermarks(plan), node.name)
    raw = raw.uid(f"{node.name}.kafka").set_parallelism(partitions)
    decoded, refused = jvm.split(raw, plan)
    failures = _failures(job, node, topic)
    python = jvm.RefusedStep(node.schema, node.timestamp, node.watermarks, failures, kafka.codecs)
    rejected = refused.process(python).name(f"{node.name}.refused").uid(f"{node.name}.refused")
    _with_dead(rejected.set_parallelism(partitions), out)
    return decoded


def _batched_sink(
    job: Job,
    bindings: Bindings,
    kafka: KafkaSettings,
    window: WindowNode,
    sink: SinkNode,
    results: Any,
    out: Translation,
) -> Any:
    """A window on the JVM steps whose one consumer is a sink: results output and
    encoded in batches, one Python call each."""
    topic = _sink_topic(bindings, sink)
    step = jvm.BatchOutputStep(
        window.output,  # type: ignore[arg-type]
        _failures(job, window),
        sink.schema,
        _failures(job, sink),
        kafka.codecs,
        sink.key,
    )
    encoded, records = jvm.batched_records(results, out.jvm[window.name], step)
    _with_dead(encoded, out)
    out.streams[sink.name] = records
    out.outputs.append((sink.name, topic, records))
    out.sinks[sink.name] = topic
    return encoded


def _sink_topic(bindings: Bindings, node: SinkNode) -> str:
    topic = bindings.sinks[node.name]
    if "://" in topic:
        raise JobDefinitionError(
            f"sink {node.name!r} is bound to {topic!r}: the Flink engine writes Kafka topics only"
        )
    return topic


def _partitions(kafka: KafkaSettings, node: SourceNode, topic: str) -> int:
    partitions = kafka.partitions.get(topic)
    if not partitions:
        raise ConfigError(f"source {node.name!r}: topic {topic!r} does not exist")
    return partitions


def _kafka_source(kafka: KafkaSettings, node: SourceNode, topic: str) -> Any:
    """The builder of a source's Kafka reader (its deserializer still to set)."""
    builder = (
        pf.KafkaSource.builder()
        .set_bootstrap_servers(kafka.bootstrap)
        .set_topics(topic)
        .set_group_id(kafka.group)
        .set_starting_offsets(
            pf.KafkaOffsetsInitializer.committed_offsets(pf.KafkaOffsetResetStrategy.EARLIEST)
        )
        .set_property("isolation.level", "read_committed")
        .set_property("client.id.prefix", f"{kafka.group}-{node.name}")
    )
    for key, value in kafka.properties.items():
        builder = builder.set_property(key, value)
    if kafka.bounded:
        builder = builder.set_bounded(pf.KafkaOffsetsInitializer.latest())
    return builder


def _source(
    env: Any,
    job: Job,
    bindings: Bindings,
    kafka: KafkaSettings,
    node: SourceNode,
    out: Translation,
) -> Any:
    topic = bindings.sources[node.name]
    partitions = _partitions(kafka, node, topic)
    values = jvm.raw_values() if kafka.steps_jar else pf.ByteArraySchema()
    builder = _kafka_source(kafka, node, topic).set_value_only_deserializer(values)
    raw = env.from_source(builder.build(), pf.WatermarkStrategy.no_watermarks(), node.name)
    raw = raw.uid(f"{node.name}.kafka").set_parallelism(partitions)
    failures = _failures(job, node, topic)
    decode = DecodeStep(node.schema, node.timestamp, node.watermarks, failures, kafka.codecs)
    stamped_type = pf.Types.TUPLE([pf.Types.PICKLED_BYTE_ARRAY(), pf.Types.LONG()])
    decoded = raw.process(decode, output_type=None if node.timestamp is None else stamped_type)
    decoded = decoded.name(f"{node.name}.decode").uid(f"{node.name}.decode")
    decoded = _with_dead(decoded.set_parallelism(partitions), out)
    strategy = node.watermarks
    watermarks = pf.WatermarkStrategy.for_bounded_out_of_orderness(
        pf.Duration.of_millis(strategy.max_out_of_order_ms)
    )
    if strategy.idle_timeout_ms is not None:
        watermarks = watermarks.with_idleness(pf.Duration.of_millis(strategy.idle_timeout_ms))
    if node.timestamp is not None:
        # The event times DecodeStep put beside the values, in JVM steps kept at the
        # readers' parallelism, so watermarks stay per partition whatever the job's is.
        stamped = pf.stamp_with_event_time(decoded, watermarks, pf.Types.PICKLED_BYTE_ARRAY())
    else:
        stamped = decoded.assign_timestamps_and_watermarks(watermarks)
    return (
        stamped.name(f"{node.name}.watermarks")
        .uid(f"{node.name}.watermarks")
        .set_parallelism(partitions)
    )


def _window(job: Job, node: WindowNode, out: Translation) -> Any:
    spec, agg, output = node.spec, node.aggregate, node.output
    if spec is None or agg is None or output is None:
        raise JobDefinitionError(f"window {node.name!r} has no window spec or aggregate")
    if spec.early_every_ms is not None:
        raise JobDefinitionError(
            f"window {node.name!r} asks for early updates, which the Flink engine does not run"
        )
    step = WindowStep(node.name, spec, agg, output, _failures(job, node))
    result = _parent(out, node).key_by(pair_key).process(step).name(node.name).uid(node.name)
    out.late[node.name] = result.get_side_output(late_tag(node.name))
    return _with_dead(result, out)


def _late_key(step: str, side: str = "") -> str:
    return f"{step}.late_{side}" if side else step


def _join(job: Job, node: JoinNode, out: Translation) -> Any:
    left, right = (out.streams[p.name] for p in node.parents)
    bounds = JoinBounds(node.lower_ms, node.upper_ms, node.allowed_lateness_ms)
    output = node.output or default_join_output
    step = JoinStep(node.name, bounds, node.how == JoinKind.LEFT, output, _failures(job, node))
    connected = left.connect(right).key_by(pair_key, pair_key)
    result = connected.process(step).name(node.name).uid(node.name)
    for side in SIDES:
        out.late[_late_key(node.name, side)] = result.get_side_output(late_tag(node.name, side))
    return _with_dead(result, out)


def _table_join(
    job: Job, bindings: Bindings, kafka: KafkaSettings, node: TableJoinNode, out: Translation
) -> Any:
    table = node.parents[1]
    if not isinstance(table, TableNode) or kafka.tables is None:
        raise JobDefinitionError(f"step {node.name!r} joins no table, or there is no reader")
    topic = bindings.tables[table.name]
    spec = TableSpec(topic, table.key, table.schema, _failures(job, table, topic))
    step = TableJoinStep(
        spec,
        node.key,
        node.how == JoinKind.LEFT,
        node.output or default_table_join_output,
        _failures(job, node),
        kafka.tables,
        kafka.codecs,
    )
    return _with_dead(_parent(out, node).process(step).name(node.name).uid(node.name), out)


def _write_sinks(env: Any, kafka: KafkaSettings, outputs: list[tuple[str, str, Any]]) -> None:
    """Write ``(name, topic, rows of key, value and timestamp)`` outputs with Flink's Kafka
    table sink (records without a timestamp get the producer's clock)."""
    if not outputs:
        return
    tables = pf.StreamTableEnvironment.create(env)
    statements = tables.create_statement_set()
    schema = (
        pf.Schema.new_builder()
        .column("k", pf.DataTypes.BYTES())
        .column("v", pf.DataTypes.BYTES())
        .column("t", pf.DataTypes.BIGINT())
        .build()
    )
    for i, (name, topic, rows) in enumerate(outputs):
        sink, view = f"shoal_sink_{i}", f"shoal_output_{i}"
        tables.create_temporary_table(sink, _kafka_table(kafka, topic, name))
        tables.create_temporary_view(view, tables.from_data_stream(rows, schema))
        statements.add_insert_sql(
            f"INSERT INTO {sink} SELECT k, v, TO_TIMESTAMP_LTZ(t, 3) FROM {view}"
        )
    statements.attach_as_datastream()


def _kafka_table(kafka: KafkaSettings, topic: str, name: str) -> Any:
    """A Kafka table of raw message keys and values, written in transactions."""
    schema = (
        pf.Schema.new_builder()
        .column("k", pf.DataTypes.BYTES())
        .column("v", pf.DataTypes.BYTES())
        .column_by_metadata("ts", pf.DataTypes.TIMESTAMP_LTZ(3), "timestamp")
        .build()
    )
    options = {
        "topic": topic,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": f"{kafka.group}-{name}",
        "properties.transaction.timeout.ms": str(kafka.transaction_timeout_ms),
        **{f"properties.{key}": value for key, value in kafka.properties.items()},
    }
    builder = pf.TableDescriptor.for_connector("kafka").schema(schema)
    for key, value in options.items():
        builder = builder.option(key, value)
    return builder.build()
