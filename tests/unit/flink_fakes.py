"""A fake of Flink's keyed process operator, to run Flink functions without a JVM.

``FakeKeyedOperator`` drives a PyFlink ``KeyedProcessFunction`` (``element``) or
``KeyedCoProcessFunction`` (``element1``, ``element2``) the way Flink's operator does,
as far as Shoal's functions can tell: keyed ``ValueState`` that is copied on every write
and read (as a serializing state backend does), event-time timers deduplicated per key
and time, fired in time order when the watermark advances (a timer registered at or
below the watermark fires with the next advance), outputs stamped with the element's
timestamp or the timer's time, and side outputs yielded as ``(tag, value)``. It is a
stand-in for the unit tests; the real Flink runs in
``tests/integration/test_flink_*.py``.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runtime.flink import _pyflink as pf

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


@dataclass
class Output:
    """What the function emitted: main output with its Flink timestamp, or a side output."""

    value: Any
    timestamp: int | None
    tag: str | None = None


class _State:
    """``ValueState`` of the operator's current key."""

    def __init__(self, op: FakeKeyedOperator, name: str) -> None:
        self.op = op
        self.name = name

    def value(self) -> Any:
        found = self.op.state.get(self.op.key, {}).get(self.name)
        return copy.deepcopy(found)

    def update(self, value: Any) -> None:
        self.op.state.setdefault(self.op.key, {})[self.name] = copy.deepcopy(value)

    def clear(self) -> None:
        self.op.state.get(self.op.key, {}).pop(self.name, None)


class _RuntimeContext:
    def __init__(self, op: FakeKeyedOperator) -> None:
        self.op = op

    def get_state(self, descriptor: Any) -> _State:
        return _State(self.op, descriptor.name)


class _TimerService:
    def __init__(self, op: FakeKeyedOperator) -> None:
        self.op = op

    def register_event_time_timer(self, t: int) -> None:
        self.op.register(int(t))

    def delete_event_time_timer(self, t: int) -> None:
        self.op.timers.discard((int(t), self.op.key))

    def current_watermark(self) -> int:
        return self.op.watermark

    def current_processing_time(self) -> int:
        return 0


class _Context:
    def __init__(self, op: FakeKeyedOperator, timestamp: int) -> None:
        self.op = op
        self.ts = timestamp

    def timer_service(self) -> _TimerService:
        return _TimerService(self.op)

    def timestamp(self) -> int:
        return self.ts

    def get_current_key(self) -> Any:
        return self.op.key

    def time_domain(self) -> Any:
        return pf.TimeDomain.EVENT_TIME


@dataclass
class FakeKeyedOperator:
    """Runs ``function`` (a PyFlink ``KeyedProcessFunction``) on keyed elements."""

    function: Any
    watermark: int = LONG_MIN
    state: dict[Any, dict[str, Any]] = field(default_factory=dict)
    timers: set[tuple[int, Any]] = field(default_factory=set)
    outputs: list[Output] = field(default_factory=list)
    key: Any = None
    _heap: list[tuple[int, int, Any]] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.function.open(_RuntimeContext(self))

    def register(self, t: int) -> None:
        if (t, self.key) not in self.timers:
            self.timers.add((t, self.key))
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, self.key))

    def element(self, pair: Any, timestamp: int) -> list[Output]:
        """Process one element (a ``(key, value)`` pair) stamped ``timestamp``."""
        self.key = pair[0]
        return self._collect(
            self.function.process_element(pair, _Context(self, timestamp)), timestamp
        )

    def element1(self, pair: Any, timestamp: int) -> list[Output]:
        """Process one element of a co-process function's first input."""
        self.key = pair[0]
        return self._collect(
            self.function.process_element1(pair, _Context(self, timestamp)), timestamp
        )

    def element2(self, pair: Any, timestamp: int) -> list[Output]:
        """Process one element of a co-process function's second input."""
        self.key = pair[0]
        return self._collect(
            self.function.process_element2(pair, _Context(self, timestamp)), timestamp
        )

    def advance(self, watermark: int) -> list[Output]:
        """Move the watermark on (if it grows) and fire the timers it reached."""
        out: list[Output] = []
        if watermark <= self.watermark:
            return out
        self.watermark = watermark
        while self._heap and self._heap[0][0] <= watermark:
            t, _, key = heapq.heappop(self._heap)
            if (t, key) not in self.timers:
                continue  # deleted
            self.timers.discard((t, key))
            self.key = key
            out += self._collect(self.function.on_timer(t, _Context(self, t)), t)
        return out

    def _collect(self, produced: Iterable[Any], timestamp: int) -> list[Output]:
        out = []
        for item in produced:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], pf.OutputTag):
                out.append(Output(item[1], None, item[0].tag_id))
            else:
                out.append(Output(item, timestamp))
        self.outputs += out
        return out
