"""Typed records the engine keeps in state, with their stored form.

They are registered with the state codec (:mod:`runtime.state.codec`) under a stable
name, so a stored value names what it is and decodes to the record, never to a
positional list whose meaning lives in the code that reads it.

``window``: one window of a key whose windows merge (sessions), as
:class:`WindowState`; its fields are stored in this order:

==========  =====  ==================================================================
field       type   meaning
==========  =====  ==================================================================
start       int    first instant of the window (epoch ms)
end         int    first instant after it
acc         any    the aggregate's accumulator over the window's records
emitted     bool   a result went out under ``start``; a merge that moves the start
                   must retract it
pending     bool   the window changed since its last result; when it is complete
                   (the watermark reached ``end``) its result must go out
==========  =====  ==================================================================

Before these records, the same window was stored as the list
``[start, end, acc, status]`` with ``status`` 0 (never emitted), 1 (emitted, unchanged)
or 2 (emitted, then changed); :meth:`WindowState.from_legacy` reads that form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["WindowState", "window_fields", "window_from_fields"]


@dataclass(slots=True)
class WindowState:
    """One window of a key whose windows merge: its bounds, accumulator and emissions.

    Mutable: the window operator updates it in place, then writes it back.
    """

    start: int
    end: int
    acc: Any
    emitted: bool = False
    pending: bool = True

    @classmethod
    def from_legacy(cls, item: list[Any]) -> WindowState:
        """A window stored in the old ``[start, end, acc, status]`` form.

        Raises:
            ValueError: ``item`` is not of that form.
        """
        if len(item) != 4 or type(item[0]) is not int or type(item[1]) is not int:
            raise ValueError(f"not a stored window: {item!r}"[:200])
        status = item[3]
        if status not in (0, 1, 2):
            raise ValueError(f"unknown window status {status!r}")
        return cls(item[0], item[1], item[2], emitted=status != 0, pending=status != 1)


def window_fields(window: WindowState) -> list[Any]:
    """The stored fields of a window (see the module docstring)."""
    return [window.start, window.end, window.acc, window.emitted, window.pending]


def window_from_fields(fields: list[Any]) -> WindowState:
    """The window stored as ``fields``.

    Raises:
        ValueError: the fields are not a window's.
    """
    if len(fields) != 5:
        raise ValueError(f"a window has 5 fields, got {len(fields)}")
    start, end, acc, emitted, pending = fields
    if type(start) is not int or type(end) is not int:
        raise ValueError("window bounds must be integers")
    if type(emitted) is not bool or type(pending) is not bool:
        raise ValueError("window flags must be booleans")
    return WindowState(start, end, acc, emitted, pending)
