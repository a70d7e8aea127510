"""The window-assigner interface, and the registry that maps window specs to assigners.

An assigner is everything a window kind decides; the window operator
(:mod:`runtime.engine.windowing.logic`) does the rest for every kind alike: state,
lateness checks, firing, purging, merging accumulators, retractions, early updates.

=================  ==================================================================
an assigner says   meaning
=================  ==================================================================
``assign(ts)``     the windows a record at ``ts`` belongs to, ``(start, end)`` sorted
                   by end (for a merging kind: the one window the record opens on its
                   own); the record is late once the last of them ended ``lateness``
                   or more before the watermark
``lateness_ms``    the allowed lateness of the spec
``retain_ms``      how long after its end a window's state is kept: it is forgotten
                   (cleaned up) when the watermark reaches ``end + retain_ms``
                   (default: the allowed lateness)
``merging``        whether windows of a key merge (sessions); then ``joins`` says which
                   (default: windows that overlap; touching is not enough)
=================  ==================================================================

Every window fires when the watermark reaches its end (its result carries event
time ``end - 1``); a kind that reports at several instants, like cumulative windows,
has one window per instant.

Registering: an assigner class names the spec type it runs (``spec_type``) and is
decorated with :func:`register`; :mod:`runtime.engine.windowing` imports every
assigner module once, so both engines find an assigner with :func:`assigner_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from runtime.api.errors import JobDefinitionError
from runtime.api.windows import WindowSpec

__all__ = ["ASSIGNERS", "WindowAssigner", "assigner_for", "register"]


class WindowAssigner:
    """How one window kind cuts a key's event time into windows.

    Args:
        spec: the window spec (a job's ``windows.<kind>(...)``) this assigner runs.
    """

    #: The spec type this assigner runs (set by each kind).
    spec_type: ClassVar[type]
    #: Whether windows of a key merge (see :meth:`joins`).
    merging: ClassVar[bool] = False

    __slots__ = ("early_every_ms", "lateness_ms", "retain_ms")

    def __init__(self, spec: WindowSpec) -> None:
        self.lateness_ms = spec.allowed_lateness_ms
        self.early_every_ms = spec.early_every_ms
        #: How long after its end a window's state is kept (its cleanup time, relative).
        self.retain_ms = spec.allowed_lateness_ms

    def assign(self, ts: int) -> list[tuple[int, int]]:
        """The windows ``(start, end)`` a record at event time ``ts`` belongs to, by end."""
        raise NotImplementedError

    def joins(self, start: int, end: int, other_start: int, other_end: int) -> bool:
        """Whether windows ``[start, end)`` and ``[other_start, other_end)`` of one key
        merge (merging kinds): by default when they overlap."""
        return start < other_end and end > other_start


A = TypeVar("A", bound=type[WindowAssigner])

ASSIGNERS: dict[type, Callable[[Any], WindowAssigner]] = {}
"""Spec type -> assigner class: the registry both engines look kinds up in."""


def register(cls: A) -> A:
    """Class decorator: run specs of ``cls.spec_type`` with ``cls``.

    Raises:
        JobDefinitionError: the spec type has an assigner already.
    """
    if cls.spec_type in ASSIGNERS:
        raise JobDefinitionError(f"{cls.spec_type.__name__} windows have an assigner already")
    ASSIGNERS[cls.spec_type] = cls
    return cls


def assigner_for(spec: WindowSpec, step: str = "") -> WindowAssigner:
    """The assigner of a window spec.

    Raises:
        JobDefinitionError: no assigner is registered for the spec's type.
    """
    make = ASSIGNERS.get(type(spec))
    if make is None:
        known = ", ".join(sorted(t.__name__ for t in ASSIGNERS))
        where = f"window step {step!r}: " if step else ""
        raise JobDefinitionError(
            f"{where}no window assigner for {type(spec).__name__} (known: {known})"
        )
    return make(spec)
