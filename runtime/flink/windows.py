"""Window steps on Flink: the window operator both engines share, on keyed state and timers.

Flink's own window operators are not used: every window kind runs the rules of
:mod:`runtime.engine.windowing.logic` with the assigner registered for its spec, in
one ``KeyedProcessFunction`` (:class:`WindowStep`), so results, lateness, session
merges and retractions are the native engine's, and a new window kind needs nothing
here.

State: one Flink ``ValueState`` per key holds the key's window state as the logic
lays it out (``{(key, start, end): accumulator}``; merging kinds ``{key: [WindowState,
...]}``), read and written back per element and per timer. Firing times are Flink
event-time timers of the key: the logic's ``schedule(at)`` is a timer at ``at - 1``,
which fires when Shoal's watermark reaches ``at`` (Flink's is one lower; see
``functions``). What a timer emits Flink stamps ``at - 1``: a window's result
carries ``end - 1``, as on the native engine. A window that a record changes after it
was complete (within allowed lateness) is scheduled at its end again, which has
passed, so its new result goes out with the next watermark, stamped ``end - 1``.
Retractions go out at once, with the event time of the record that caused them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runtime.api.functions import AggregateFunction, Window
from runtime.api.windows import WindowSpec
from runtime.engine.windowing import MISSING, Emission, WindowLogic, assigner_for
from runtime.flink import _pyflink as pf
from runtime.flink.failures import Failures
from runtime.flink.functions import DEAD_LETTERS, Pair, event_time, late_tag, shoal_watermark


class KeyWindows:
    """The window state of the current key, as the logic's key-value store."""

    __slots__ = ("changed", "entries")

    def __init__(self) -> None:
        self.entries: dict[Any, Any] = {}
        self.changed = False

    def load(self, entries: dict[Any, Any] | None) -> None:
        """Start on a key whose state is ``entries``."""
        self.entries = entries if entries is not None else {}
        self.changed = False

    def get(self, key: Any, default: Any = None) -> Any:
        """A state value of the key."""
        return self.entries.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        """Set a state value of the key."""
        self.entries[key] = value
        self.changed = True

    def delete(self, key: Any) -> None:
        """Remove a state value of the key."""
        if self.entries.pop(key, MISSING) is not MISSING:
            self.changed = True

    def pop(self, key: Any, default: Any = None) -> Any:
        """Remove a state value of the key and return it, else ``default``."""
        value = self.entries.pop(key, MISSING)
        if value is MISSING:
            return default
        self.changed = True
        return value

    def items(self) -> list[tuple[Any, Any]]:
        """The key's state values."""
        return list(self.entries.items())


class WindowStep(pf.KeyedProcessFunction):  # type: ignore[misc]
    """A window step: the shared window operator on the current key's state and timers.

    Late records go to the step's late side output (``late_tag``); failing aggregate
    and output functions to the dead letters.
    """

    logic: WindowLogic  # built in ``open``, where the task runs

    def __init__(
        self,
        step: str,
        spec: WindowSpec,
        aggregate: AggregateFunction[Any, Any, Any],
        output: Callable[[Any, Window, Any], Any],
        failures: Failures,
    ) -> None:
        self.spec = spec
        self.aggregate = aggregate
        self.output = output
        self.failures = failures
        self.late = late_tag(step)
        assigner_for(spec, step)  # an unknown kind fails the translation, not the task
        self.step = step
        self.view = KeyWindows()
        self.state: Any = None
        self.timers: Any = None

    def open(self, runtime_context: Any) -> None:
        self.state = runtime_context.get_state(
            pf.ValueStateDescriptor("shoal.windows", pf.Types.PICKLED_BYTE_ARRAY())
        )
        assigner = assigner_for(self.spec, self.step)
        self.logic = WindowLogic(
            assigner, self.aggregate, self.view, self._schedule, defer_complete=True
        )

    def _schedule(self, at_ms: int, item: Any) -> None:
        # A Flink timer at t fires when Shoal's watermark reaches t + 1.
        self.timers.register_event_time_timer(at_ms - 1)

    def _save(self) -> None:
        if self.view.changed:
            if self.view.entries:
                self.state.update(self.view.entries)
            else:
                self.state.clear()

    def process_element(self, pair: Pair, ctx: Any) -> Iterator[Any]:
        key, value = pair
        self.timers = ctx.timer_service()
        watermark = shoal_watermark(self.timers.current_watermark())
        self.view.load(self.state.value())
        changes = self.logic.add([(key, value, event_time(pair, ctx.timestamp()), None)], watermark)
        self._save()
        for exc, _ in changes.failed:
            yield from self.failures.reject(exc, value, DEAD_LETTERS)
        if changes.late:
            yield self.late, pair
        yield from self._records(changes.retracted)
        yield from self._records(changes.results)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        at = timestamp + 1
        self.timers = ctx.timer_service()
        self.view.load(self.state.value())
        # Judged at the timer's own time: a later window of the key has its own timer,
        # whose outputs Flink stamps with that window's end.
        fired = self.logic.fire([(at, list(self.view.entries))], at)
        self._save()
        yield from self._records(fired)

    def _records(self, emissions: Iterable[Emission]) -> Iterator[Any]:
        result, output, failures = self.aggregate.result, self.output, self.failures
        for key, start, end, acc in emissions:
            value = None if acc is MISSING else result(acc)
            yield from output_pair(output, failures, key, start, end, value)


def output_pair(
    output: Callable[[Any, Window, Any], Any],
    failures: Failures,
    key: Any,
    start: int,
    end: int,
    result: Any,
) -> Iterator[Any]:
    """A window result as the window step's ``(key, output(key, window, result))`` pair,
    or, when the output function fails, what the error policy makes of it."""
    try:
        value = output(key, Window(start, end), result)
    except Exception as exc:
        yield from failures.reject(exc, {"key": key, "window": (start, end)}, DEAD_LETTERS)
        return
    yield (key, value)
