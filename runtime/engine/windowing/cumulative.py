"""Cumulative windows: ``[s, s + step)``, ``[s, s + 2 * step)`` ... ``[s, s + size)``."""

from __future__ import annotations

from itertools import repeat

from runtime.api.windows import Cumulative
from runtime.engine.windowing.assigner import WindowAssigner, register


@register
class CumulativeAssigner(WindowAssigner):
    """A record at ``ts`` is in the windows of its period (``s`` a multiple of
    ``size``) that end after ``ts``: one result per ``step``, each over the period so
    far (``step`` divides ``size``, checked by ``windows.cumulative``)."""

    spec_type = Cumulative
    __slots__ = ("size", "step")

    def __init__(self, spec: Cumulative) -> None:
        super().__init__(spec)
        self.size = spec.size_ms
        self.step = spec.step_ms

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The period's windows that contain ``ts``, shortest first."""
        start = ts - ts % self.size
        first_end = ts - ts % self.step + self.step
        return list(zip(repeat(start), range(first_end, start + self.size + 1, self.step)))
