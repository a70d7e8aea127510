"""Shoal: real-time stream processing in Python with event time and exactly-once state.

The public root re-exports the job API (``runtime.api``); engines, state backends
and the CLI live in subpackages.
"""

from runtime.api import (
    AggregatedStream,
    AggregateFunction,
    ConfigError,
    ErrorPolicy,
    Job,
    JobDefinitionError,
    KeyedProcessFunction,
    KeyedStream,
    ListState,
    MapState,
    ProcessContext,
    RecordError,
    ShoalError,
    StateError,
    StateSchema,
    Stream,
    UserFunctionError,
    ValueState,
    WatermarkStrategy,
    Window,
    WindowedStream,
    aggregates,
    windows,
)

__all__ = [
    "AggregateFunction",
    "AggregatedStream",
    "ConfigError",
    "ErrorPolicy",
    "Job",
    "JobDefinitionError",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListState",
    "MapState",
    "ProcessContext",
    "RecordError",
    "ShoalError",
    "StateError",
    "StateSchema",
    "Stream",
    "UserFunctionError",
    "ValueState",
    "WatermarkStrategy",
    "Window",
    "WindowedStream",
    "aggregates",
    "windows",
]
