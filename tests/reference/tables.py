"""Table joins by brute force: the table as of each record, replayed from its history.

The definition (the job API's ``KeyedStream.join_table``): a record is joined with the
table's value under its lookup key as the table stands when the record is processed,
that is after every table update that came before it and none after. A table update
sets a key's value; a tombstone (``None``) deletes it. An inner join drops a record
whose key the table lacks; a left join emits it with ``None``.

Nothing here keeps a running table: each record's table is rebuilt from the whole
history of updates before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Record", "Update", "table_join"]


@dataclass(frozen=True)
class Update:
    """A table record: ``value`` ``None`` is a tombstone."""

    key: Any
    value: Any


@dataclass(frozen=True)
class Record:
    """A stream record and the table key it is looked up under."""

    key: Any
    value: Any


def _table_before(events: Sequence[Update | Record], index: int) -> dict[Any, Any]:
    table: dict[Any, Any] = {}
    for event in events[:index]:
        if isinstance(event, Update):
            if event.value is None:
                table.pop(event.key, None)
            else:
                table[event.key] = event.value
    return table


def table_join(
    events: Sequence[Update | Record],
    how: str,
    output: Callable[[Any, Any, Any], Any],
) -> list[Any]:
    """What a table join emits for ``events`` in processing order.

    Args:
        events: table updates and stream records, in the order they are processed.
        how: ``"inner"`` or ``"left"``.
        output: builds an emitted record from ``(key, record, table value or None)``.
    """
    out = []
    for i, event in enumerate(events):
        if not isinstance(event, Record):
            continue
        table = _table_before(events, i)
        if event.key in table:
            out.append(output(event.key, event.value, table[event.key]))
        elif how == "left":
            out.append(output(event.key, event.value, None))
    return out
