"""Tumbling windows: ``[s, s + size)`` with ``s`` a multiple of ``size``."""

from __future__ import annotations

from runtime.api.windows import Tumbling
from runtime.engine.windowing.assigner import WindowAssigner, register


@register
class TumblingAssigner(WindowAssigner):
    """A record is in exactly one window, aligned to the epoch."""

    spec_type = Tumbling
    __slots__ = ("size",)

    def __init__(self, spec: Tumbling) -> None:
        super().__init__(spec)
        self.size = spec.size_ms

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The one window that contains ``ts``."""
        start = ts - ts % self.size
        return [(start, start + self.size)]
