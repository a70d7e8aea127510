"""Queryable state: the entries of one key in a stateful step, found by key, never by a scan.

Stateful steps key their store entries by the record key first: window state is
``(key, window_start, window_end)``, process state ``(key, state_name)``, session
windows keep ``key`` itself. Encoded tuple keys start with their elements' encodings (see
:mod:`runtime.state.serde`), so the entries of one key are one key range on disk:
a lookup is a point read of ``key`` plus a prefix read of ``(key, ...)``
(:meth:`~runtime.state.base.StateStore.items_with_prefix`), stopped after ``limit``
entries. Its cost depends on the key's own entries, not on the size of the store.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from runtime.api.errors import ConfigError, StateError
from runtime.state.serde import encode_key

if TYPE_CHECKING:
    from runtime.engine.task import Task

__all__ = ["MAX_ENTRIES", "StateLookup", "lookup_state"]

#: Entries one answer holds at most (a key with more is answered truncated).
MAX_ENTRIES = 1000
_MISSING: Any = object()


@dataclass(slots=True)
class StateLookup:
    """The entries found: ``(task, state key, value)``, and whether more were left out."""

    entries: list[tuple[int, Any, Any]] = field(default_factory=list)
    truncated: bool = False


def lookup_state(
    tasks: Iterable[tuple[int, Task]], step: str, key: Hashable, limit: int = MAX_ENTRIES
) -> StateLookup:
    """Entries of ``step`` for ``key`` over ``tasks``, at most ``limit`` of them.

    Args:
        tasks: ``(task id, task)`` pairs of the worker.
        step: a stateful step's name.
        key: the record key (a state key type: str, int, bytes, None or a tuple).
        limit: entries returned at most; ``truncated`` says when there were more.

    Raises:
        ConfigError: ``key`` cannot be a state key (unsupported type, too wide an int).
    """
    try:
        encode_key(key)
    except StateError as exc:
        raise ConfigError(f"not a state key: {exc}") from None
    found = StateLookup()
    entries = found.entries
    answered = False  # a global table is answered by the first task that holds it
    for tid, task in tasks:
        for store, is_global in task.queryable_stores():
            if store.name != step or (is_global and answered):
                continue
            answered = answered or is_global
            value = store.get(key, _MISSING)
            if value is not _MISSING:
                if len(entries) >= limit:
                    found.truncated = True
                    return found
                entries.append((tid, key, value))
            # One more than there is room for tells whether the answer is cut short.
            room = limit - len(entries)
            for state_key, state_value in islice(store.items_with_prefix((key,)), room + 1):
                if len(entries) >= limit:
                    found.truncated = True
                    return found
                entries.append((tid, state_key, state_value))
    return found
