"""How each kind of stateful step keeps its state, as savepoint rows and back.

A state store holds engine-shaped entries; a savepoint holds one row per logical
piece of state, so that a dump reads naturally and a declared accumulator schema
applies to one field:

==========  =============================================  ============================
layout      store entry (see runtime/engine)               savepoint row
==========  =============================================  ============================
session     ``key -> [WindowState, ...]``                  one row per session:
                                                           ``key start end emitted
                                                           pending acc``
fixed       ``(key, window_start, window_end) -> acc``     ``key start end acc``
process     ``(key, state) -> (value, written_ms)``        ``key kind="state" name value
                                                           time_ms=written_ms``
            ``(timer kind, ts, key) -> 1``                 ``key kind="event_timer"|
                                                           "processing_timer" time_ms=ts``
join        ``(key, "L"|"R") -> [[ts, value, matched],     one row per kept record:
            ...]``                                         ``key kind="left"|"right"
                                                           time_ms=ts value matched``
            ``(JOIN_TIMER, at, key) -> 1``                 ``key kind="timer" time_ms=at``
==========  =============================================  ============================

(Join steps are described in :mod:`runtime.engine.joins`; they declare no state type.)
Tables (:mod:`runtime.engine.tables`) have no layout and are not in savepoints: their
state is their topic, read again from its start when a restored job's tasks open.
``key`` is always a :mod:`~runtime.savepoint.datum` ``Datum``; ``acc`` is the step's
declared value schema, or a ``Datum`` when it declares none; ``value`` of process
state is a ``Datum``. Session ``emitted``/``pending`` are those of
:class:`runtime.state.records.WindowState` (a session stored in the older
``[start, end, acc, status]`` form is read as that record).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from runtime.api.errors import StateError
from runtime.savepoint.datum import DATUM, DATUM_NAME, from_datum, to_datum
from runtime.state.records import WindowState

__all__ = ["entries_from_rows", "row_key", "row_schema", "rows_from_entries"]

# Timer keys of process steps (runtime/engine/process.py keeps timers under these).
EVENT_TIMER, PROCESSING_TIMER = "\x00timer:event", "\x00timer:proc"
_TIMER_KINDS = {EVENT_TIMER: "event_timer", PROCESSING_TIMER: "processing_timer"}
# Cleanup timers of join steps (runtime/engine/joins.py keeps them under this), and the
# tags of its two sides' record lists.
JOIN_TIMER = "\x00timer:join"
_JOIN_SIDES = {"L": "left", "R": "right"}
_JOIN_TAGS = {v: k for k, v in _JOIN_SIDES.items()}
_TIMER_KEYS = {v: k for k, v in _TIMER_KINDS.items()}


def row_schema(layout: str, step: str, value_schema: Any | None) -> dict[str, Any]:
    """The Avro schema of a step's savepoint rows.

    Args:
        layout: ``session``, ``fixed``, ``process`` or ``join``.
        step: the step's name (for errors).
        value_schema: the declared accumulator schema, or ``None`` (a ``Datum``).

    Raises:
        StateError: an unknown layout.
    """
    acc: Any = value_schema if value_schema is not None else DATUM_NAME
    key = {"name": "key", "type": DATUM}
    if layout == "session":
        fields = [
            key,
            {"name": "start", "type": "long"},
            {"name": "end", "type": "long"},
            {"name": "emitted", "type": "boolean"},
            {"name": "pending", "type": "boolean"},
            {"name": "acc", "type": acc},
        ]
    elif layout == "fixed":
        fields = [
            key,
            {"name": "start", "type": "long"},
            {"name": "end", "type": "long"},
            {"name": "acc", "type": acc},
        ]
    elif layout == "process":
        fields = [
            key,
            {"name": "kind", "type": "string"},
            {"name": "name", "type": "string"},
            {"name": "value", "type": DATUM_NAME},
            {"name": "time_ms", "type": "long"},
        ]
    elif layout == "join":
        fields = [
            key,
            {"name": "kind", "type": "string"},
            {"name": "time_ms", "type": "long"},
            {"name": "value", "type": DATUM_NAME},
            {"name": "matched", "type": "boolean"},
        ]
    else:
        raise StateError(f"step {step!r}: unknown state layout {layout!r}")
    # One record name for every step: a renamed step's rows still resolve by Avro's rules.
    return {"type": "record", "name": "Row", "namespace": "shoal.savepoint", "fields": fields}


def _acc_out(acc: Any, typed: bool) -> Any:
    return acc if typed else to_datum(acc)


def _acc_in(acc: Any, typed: bool) -> Any:
    return acc if typed else from_datum(acc)


def rows_from_entries(
    layout: str, entries: Iterable[tuple[Any, Any]], typed: bool
) -> Iterator[dict[str, Any]]:
    """Savepoint rows of a store's ``(key, value)`` entries (decoded).

    Args:
        layout: the step's layout.
        entries: the store's entries.
        typed: the step declares an accumulator schema (rows hold it as is).

    Raises:
        StateError: an entry does not have its layout's shape.
    """
    for key, value in entries:
        try:
            if layout == "session":
                for item in value:
                    window = (
                        item if isinstance(item, WindowState) else WindowState.from_legacy(item)
                    )
                    yield {
                        "key": to_datum(key),
                        "start": window.start,
                        "end": window.end,
                        "emitted": window.emitted,
                        "pending": window.pending,
                        "acc": _acc_out(window.acc, typed),
                    }
            elif layout == "fixed":
                user_key, start, end = key
                yield {
                    "key": to_datum(user_key),
                    "start": start,
                    "end": end,
                    "acc": _acc_out(value, typed),
                }
            elif layout == "process":
                yield _process_row(key, value)
            elif layout == "join":
                yield from _join_rows(key, value)
            else:
                raise StateError(f"unknown state layout {layout!r}")
        except (TypeError, ValueError) as exc:
            raise StateError(
                f"a {layout} state entry under key {key!r:.80} does not have the {layout} "
                f"layout: {exc}"
            ) from exc


def _process_row(key: Any, value: Any) -> dict[str, Any]:
    if type(key) is tuple and len(key) == 3 and key[0] in _TIMER_KINDS:
        kind, ts, user_key = key
        return {
            "key": to_datum(user_key),
            "kind": _TIMER_KINDS[kind],
            "name": "",
            "value": to_datum(None),
            "time_ms": ts,
        }
    user_key, name = key
    state, written = value
    return {
        "key": to_datum(user_key),
        "kind": "state",
        "name": name,
        "value": to_datum(state),
        "time_ms": written,
    }


def _join_rows(key: Any, value: Any) -> Iterator[dict[str, Any]]:
    if len(key) == 3 and key[0] == JOIN_TIMER:
        yield {"key": to_datum(key[2]), "kind": "timer", "time_ms": key[1],
               "value": to_datum(None), "matched": False}  # fmt: skip
        return
    user_key, tag = key
    kind = _JOIN_SIDES[tag]
    for ts, record, matched in value:
        yield {"key": to_datum(user_key), "kind": kind, "time_ms": ts,
               "value": to_datum(record), "matched": bool(matched)}  # fmt: skip


def row_key(row: dict[str, Any]) -> Any:
    """The user key a row belongs to (decides which task owns it)."""
    return from_datum(row["key"])


def entries_from_rows(
    layout: str, rows: Iterable[dict[str, Any]], typed: bool
) -> Iterator[tuple[Any, Any]]:
    """Store entries ``(key, value)`` of savepoint rows (inverse of ``rows_from_entries``).

    Session rows of one key are gathered into one entry, sessions ordered by start.

    Raises:
        StateError: a row does not have its layout's fields.
    """
    try:
        if layout == "session":
            sessions: dict[Any, list[WindowState]] = {}
            for row in rows:
                acc = _acc_in(row["acc"], typed)
                sessions.setdefault(row_key(row), []).append(
                    WindowState(
                        row["start"],
                        row["end"],
                        acc,
                        emitted=row["emitted"],
                        pending=row["pending"],
                    )
                )
            for key, items in sessions.items():
                items.sort(key=lambda s: s.start)
                yield key, items
        elif layout == "fixed":
            for row in rows:
                yield (row_key(row), row["start"], row["end"]), _acc_in(row["acc"], typed)
        elif layout == "process":
            for row in rows:
                key = row_key(row)
                if row["kind"] == "state":
                    yield (key, row["name"]), (from_datum(row["value"]), row["time_ms"])
                elif row["kind"] in _TIMER_KEYS:
                    yield (_TIMER_KEYS[row["kind"]], row["time_ms"], key), 1
                else:
                    raise StateError(f"unknown process row kind {row['kind']!r}")
        elif layout == "join":
            sides: dict[tuple[Any, str], list[list[Any]]] = {}
            for row in rows:
                key = row_key(row)
                if row["kind"] == "timer":
                    yield (JOIN_TIMER, row["time_ms"], key), 1
                elif row["kind"] in _JOIN_TAGS:
                    record = [row["time_ms"], from_datum(row["value"]), row["matched"]]
                    sides.setdefault((key, _JOIN_TAGS[row["kind"]]), []).append(record)
                else:
                    raise StateError(f"unknown join row kind {row['kind']!r}")
            for state_key, records in sides.items():
                records.sort(key=lambda r: r[0])  # stable: equal times keep their order
                yield state_key, records
        else:
            raise StateError(f"unknown state layout {layout!r}")
    except KeyError as exc:
        raise StateError(f"a {layout} savepoint row lacks the field {exc}") from exc
