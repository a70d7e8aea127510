"""The one module that imports pyflink; the rest of ``runtime.flink`` imports from here.

Importing this module needs the ``flink`` extra (``pip install shoal[flink]``);
``runtime.flink.require_pyflink`` turns its absence into a clear error first.
"""

from __future__ import annotations

from pyflink.common import (
    ByteArraySchema,
    Configuration,
    Duration,
    Types,
    WatermarkStrategy,
)
from pyflink.common.job_client import JobClient
from pyflink.common.time import Time
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    CheckpointingMode,
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    TimeDomain,
)
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
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

__all__ = [
    "PYFLINK_VERSION",
    "AggregateFunction",
    "ByteArraySchema",
    "CheckpointingMode",
    "Configuration",
    "DataStream",
    "DeliveryGuarantee",
    "Duration",
    "EventTimeTrigger",
    "JobClient",
    "KafkaOffsetResetStrategy",
    "KafkaOffsetsInitializer",
    "KafkaRecordSerializationSchema",
    "KafkaSink",
    "KafkaSource",
    "KeyedProcessFunction",
    "MapStateDescriptor",
    "MergingWindowAssigner",
    "OutputTag",
    "ProcessFunction",
    "ProcessWindowFunction",
    "RuntimeContext",
    "SlidingEventTimeWindows",
    "StreamExecutionEnvironment",
    "TimeDomain",
    "Time",
    "TimeWindow",
    "TimeWindowSerializer",
    "TimestampAssigner",
    "TumblingEventTimeWindows",
    "Types",
    "ValueStateDescriptor",
    "WatermarkStrategy",
]
