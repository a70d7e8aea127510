"""Numbers the emissions of each session and turns engine retractions into records.

A session is identified by ``(user_id, device_id, session_start_ms)``. The window
step emits a session when it closes and again when a late event changes it; when a
late event bridges two sessions, the one whose start is absorbed is retracted (the
engine calls the output function with result ``None``).

This step, keyed like the window step, keeps per session start the last emitted
summary and its revision:

* a summary gets ``revision`` 0 the first time its start is seen, then one more
  than the previous emission under that start; a re-emission equal to the previous
  one (a duplicate delivery that came late) is dropped, since it tells nothing new;
* a retraction gets the next revision under its start and forgets the start.

A start is forgotten ``gap + allowed_lateness + retention`` after the session's
window end (event time). The window step keeps a session up to ``gap +
allowed_lateness`` after its end, but a late event can bridge an emitted session
with one still open, and the merged session is emitted only when that one closes:
``retention`` is how long such a chain may run on before its emission restarts at
revision 0 (the step cannot see the window step's state).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime import MapState, ProcessContext, StateDescriptor

#: Session start -> (session end, revision, last emitted summary).
EMITTED = MapState[int, tuple[int, int, dict[str, Any]]]("emitted")
#: Keyed like the window step: ``(user_id, device_id)``.
SessionContext = ProcessContext[tuple[str, str]]


class SessionRevisions:
    """``KeyedProcessFunction`` over the window step's summaries and retractions.

    Args:
        forget_after_ms: event time after a session's last event at which its start
            is forgotten.
    """

    states: tuple[StateDescriptor, ...] = (EMITTED,)

    def __init__(self, forget_after_ms: int) -> None:
        self.forget_after_ms = forget_after_ms

    def process(self, value: dict[str, Any], ctx: SessionContext) -> Iterable[dict[str, Any]]:
        """Stamp a revision on a summary or a retraction."""
        handle = ctx.state(EMITTED)
        emitted = handle.get()
        start = value["session_start_ms"]
        previous = emitted.get(start)
        revision = 0 if previous is None else previous[1] + 1
        if value.get("retracted"):
            if previous is not None:
                del emitted[start]
                handle.set(emitted)
            return [{**value, "revision": revision}]
        if previous is not None and previous[2] == value:
            return []
        emitted[start] = (value["session_end_ms"], revision, value)
        handle.set(emitted)
        ctx.timers.register_event_time(value["session_end_ms"] + self.forget_after_ms)
        return [{**value, "revision": revision}]

    def on_timer(self, ts_ms: int, ctx: SessionContext) -> Iterable[dict[str, Any]]:
        """Forget sessions that can no longer be emitted again."""
        handle = ctx.state(EMITTED)
        emitted = handle.get()
        keep = {s: e for s, e in emitted.items() if e[0] + self.forget_after_ms > ts_ms}
        if not keep:
            handle.clear()
        elif len(keep) != len(emitted):
            handle.set(keep)
        return []
