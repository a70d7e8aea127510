"""The job author's API: pure, no I/O, no threads. Imports nothing else of Shoal."""

from runtime.api import aggregates, windows
from runtime.api.errors import (
    ConfigError,
    JobDefinitionError,
    RecordError,
    ShoalError,
    StateError,
    UserFunctionError,
)
from runtime.api.evolution import StateSchema
from runtime.api.expressions import Expr, field
from runtime.api.functions import (
    AggregateFunction,
    KeyedProcessFunction,
    ListState,
    MapState,
    ProcessContext,
    StateDescriptor,
    ValueState,
    Window,
)
from runtime.api.graph import ErrorPolicy
from runtime.api.io import Avro, Json
from runtime.api.job import (
    AggregatedStream,
    Job,
    JoinedStream,
    KeyedStream,
    Stream,
    Table,
    WindowedStream,
)
from runtime.api.watermarks import WatermarkStrategy

__all__ = [
    "AggregateFunction",
    "AggregatedStream",
    "Avro",
    "ConfigError",
    "ErrorPolicy",
    "Expr",
    "Job",
    "JobDefinitionError",
    "JoinedStream",
    "Json",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListState",
    "MapState",
    "ProcessContext",
    "RecordError",
    "ShoalError",
    "StateDescriptor",
    "StateError",
    "StateSchema",
    "Stream",
    "Table",
    "UserFunctionError",
    "ValueState",
    "Window",
    "WatermarkStrategy",
    "WindowedStream",
    "aggregates",
    "field",
    "windows",
]
