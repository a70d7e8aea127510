"""Checks that state a task is about to use decodes, with errors that say where.

Restoring replays a changelog partition into a store; a record this version
cannot decode (corrupt, or written in the old format) fails the restore with one
:class:`~runtime.api.errors.StateFormatError` naming the topic, partition and
offset. A reused local store is checked the same way before the task relies on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.api.errors import StateError, StateFormatError
from runtime.state.base import Change, StateStore
from runtime.state.serde import decode_key, decode_value


def apply_changes(
    store: StateStore, changes: list[Change], offsets: Sequence[int], topic: str, partition: int
) -> None:
    """Restore one batch of changelog records into ``store``.

    Args:
        store: the store being restored.
        changes: ``(key, value)`` records, oldest first.
        offsets: the offset of each record in ``topic``.
        topic: the changelog topic; ``partition`` its partition.

    Raises:
        StateFormatError: a record does not decode; the message names where it is.
        StateError: the store could not take the changes for another reason.
    """
    try:
        store.restore(changes)
    except StateError as exc:
        where = locate_bad_change(changes, offsets)
        if where is None:
            raise
        offset, problem = where
        raise StateFormatError(
            f"changelog {topic}[{partition}] at offset {offset} (step {store.name!r}): {problem}"
        ) from exc


def locate_bad_change(changes: list[Change], offsets: Sequence[int]) -> tuple[int, str] | None:
    """The offset of the first record that does not decode, and why; ``None`` if all do."""
    for (raw_key, raw_value), offset in zip(changes, offsets, strict=True):
        try:
            decode_key(raw_key)
            if raw_value is not None:
                decode_value(raw_value)
        except StateError as exc:
            return offset, str(exc)
    return None


def check_local_state(store: StateStore) -> None:
    """Read a reused local store's first entry, so that an old format fails now.

    A store is written by one version at a time (this one refuses to reuse any
    other), so its first entry tells its format.

    Raises:
        StateFormatError: the entry does not decode; the message names the store.
    """
    next(iter(store.items()), None)
