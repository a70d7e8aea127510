"""Session windows: a record opens ``[ts, ts + gap)``; overlapping sessions of a key merge."""

from __future__ import annotations

from runtime.api.windows import Session
from runtime.engine.windowing.assigner import WindowAssigner, register


@register
class SessionAssigner(WindowAssigner):
    """Sessions merge when they overlap strictly: records exactly ``gap`` apart start a
    new session.

    A session is kept ``gap - 1`` longer than allowed lateness alone asks: the last
    record that can still overlap it (at ``end - 1``) stops being on time only at
    ``end - 1 + gap + lateness``.
    """

    spec_type = Session
    merging = True
    __slots__ = ("gap",)

    def __init__(self, spec: Session) -> None:
        super().__init__(spec)
        self.gap = spec.gap_ms
        self.retain_ms = self.gap - 1 + self.lateness_ms

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The session a record at ``ts`` opens on its own."""
        return [(ts, ts + self.gap)]
