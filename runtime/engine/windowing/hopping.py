"""Hopping windows: windows of ``size`` that start every ``slide``."""

from __future__ import annotations

from runtime.api.windows import Hopping
from runtime.engine.windowing.assigner import WindowAssigner, register


@register
class HoppingAssigner(WindowAssigner):
    """A record is in the ``size / slide`` windows that contain it (``slide`` divides
    ``size``, checked by ``windows.hopping``)."""

    spec_type = Hopping
    __slots__ = ("size", "slide")

    def __init__(self, spec: Hopping) -> None:
        super().__init__(spec)
        self.size = spec.size_ms
        self.slide = spec.slide_ms

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The windows that contain ``ts``, oldest first."""
        size, slide = self.size, self.slide
        first = ts - ts % slide - size + slide
        starts = range(first, ts + 1, slide)
        return list(zip(starts, range(first + size, ts + size + 1, slide), strict=True))
