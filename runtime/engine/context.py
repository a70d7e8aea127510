"""What an operator may ask of the task it runs in.

Operators (``operators``, ``windows``, ``process``, ``repartition``) are built by the
task (``task``) and call back into it for three things only: the processing clock,
the dead-letter policy and the live taps. They see the task through this protocol,
so that ``task`` imports the operators and no operator imports ``task``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["Tap", "TaskContext"]

# A live tap: called with the step name and a batch of the step's output records.
Tap = Callable[[str, list[Any]], None]


class TaskContext(Protocol):
    """The task as its operators see it (implemented by ``runtime.engine.task.Task``)."""

    @property
    def taps(self) -> Mapping[str, Tap]:
        """Step name -> live tap of that step's output (empty when nobody watches)."""
        ...

    def now_ms(self) -> int:
        """The processing clock in epoch ms."""
        ...

    def dead_letter(self, step: str, exc: BaseException, origin: Any, value: Any) -> None:
        """Handle a record that failed in ``step`` according to the job's error policy."""
        ...
