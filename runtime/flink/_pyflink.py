"""The one module that imports pyflink; the rest of ``runtime.flink`` imports from here.

Importing this module needs the ``flink`` extra (``pip install shoal[flink]``);
``runtime.flink.require_pyflink`` turns its absence into a clear error first.
"""

from __future__ import annotations

import warnings
from typing import Any

from pyflink.common import (
    ByteArraySchema,
    Configuration,
    DeserializationSchema,
    Duration,
    Row,
    Types,
    WatermarkStrategy,
)
from pyflink.common.job_client import JobClient
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    CheckpointingMode,
    DataStream,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    TimeDomain,
)
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSource,
)
from pyflink.datastream.functions import AggregateFunction, ProcessWindowFunction
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.datastream.window import (
    EventTimeTrigger,
    MergingWindowAssigner,
    SlidingEventTimeWindows,
    TimeWindow,
    TimeWindowSerializer,
    TumblingEventTimeWindows,
)
from pyflink.version import __version__ as PYFLINK_VERSION

# PyFlink's table package warns about its own deprecated classes while it is imported.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyflink.table import DataTypes, Schema, StreamTableEnvironment, TableDescriptor

__all__ = [
    "PYFLINK_VERSION",
    "AggregateFunction",
    "ByteArraySchema",
    "CheckpointingMode",
    "Configuration",
    "DataStream",
    "DataTypes",
    "DeserializationSchema",
    "Duration",
    "EventTimeTrigger",
    "JobClient",
    "KafkaOffsetResetStrategy",
    "KafkaOffsetsInitializer",
    "KafkaSource",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "MapStateDescriptor",
    "MergingWindowAssigner",
    "OutputTag",
    "ProcessFunction",
    "ProcessWindowFunction",
    "Row",
    "RuntimeContext",
    "Schema",
    "SlidingEventTimeWindows",
    "StreamExecutionEnvironment",
    "StreamTableEnvironment",
    "TableDescriptor",
    "TimeDomain",
    "TimeWindow",
    "TimeWindowSerializer",
    "TimestampAssigner",
    "TumblingEventTimeWindows",
    "Types",
    "ValueStateDescriptor",
    "WatermarkStrategy",
    "java_strings",
    "remote_environment",
    "shoal_steps",
    "shoal_steps_loaded",
    "shoal_steps_row",
    "stamp_with_event_time",
]


def stamp_with_event_time(stream: DataStream, strategy: WatermarkStrategy, value_type: Any) -> Any:
    """``stream`` of ``(value, event time)`` tuples -> ``value``s with that time and
    ``strategy``'s watermarks, in two JVM steps at ``stream``'s parallelism.

    What ``DataStream.assign_timestamps_and_watermarks`` does with a Python timestamp
    assigner, without its Python step, and with every step at the parallelism of its
    input: PyFlink's own runs its timestamp extraction and watermark generator at the
    environment's default parallelism, so with fewer subtasks than source readers
    they would see partitions interleaved and make watermarks no partition allows.
    """
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    functions = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    parallelism = stream._j_data_stream.getParallelism()
    stamped = stream._j_data_stream.assignTimestampsAndWatermarks(
        strategy._j_watermark_strategy.withTimestampAssigner(functions.CustomTimestampAssigner())
    ).setParallelism(parallelism)
    values = stamped.map(functions.RemoveTimestampMapFunction(), value_type.get_java_type_info())
    return DataStream(values.setParallelism(parallelism))


def remote_environment(conf: Configuration) -> StreamExecutionEnvironment:
    """An environment that submits to the cluster ``conf`` names (``execution.target:
    remote``, ``rest.address``, ``rest.port``).

    ``StreamExecutionEnvironment.get_execution_environment`` outside ``flink run``
    always runs a local mini cluster, whatever the target says.
    """
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    j_env = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment(
        conf._j_configuration
    )
    return StreamExecutionEnvironment(j_env)


def shoal_steps() -> Any:
    """The package of Shoal's JVM steps (``dev.shoal.flink``) in the gateway's JVM."""
    from pyflink.java_gateway import get_gateway

    return get_gateway().jvm.dev.shoal.flink


def shoal_steps_row(*fields: Any) -> Any:
    """A Java ``Row`` of ``fields`` (for calling the JVM steps' functions directly)."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    values = gateway.new_array(gateway.jvm.java.lang.Object, len(fields))
    for i, value in enumerate(fields):
        values[i] = value
    return gateway.jvm.org.apache.flink.types.Row.of(values)


def shoal_steps_loaded() -> bool:
    """Whether Shoal's JVM steps jar is on the gateway's class path."""
    from py4j.java_gateway import JavaClass

    return isinstance(shoal_steps().Steps, JavaClass)


def java_strings(items: list[str]) -> Any:
    """A Java ``String[]`` of ``items``."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    array = gateway.new_array(gateway.jvm.java.lang.String, len(items))
    for i, item in enumerate(items):
        array[i] = item
    return array
