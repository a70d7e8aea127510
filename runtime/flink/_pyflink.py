"""The one module that imports pyflink; the rest of ``runtime.flink`` imports from here.

Importing this module needs the ``flink`` extra (``pip install shoal[flink]``);
``runtime.flink.require_pyflink`` turns its absence into a clear error first.
"""

from __future__ import annotations

import warnings

from pyflink.common import (
    ByteArraySchema,
    Configuration,
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
    "remote_environment",
]


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
