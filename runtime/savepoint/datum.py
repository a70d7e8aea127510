"""Generic state values as Avro: the ``shoal.savepoint.Datum`` schema.

State a step does not type (see :mod:`runtime.api.evolution`) is stored in a
savepoint as a ``Datum``: a record with one field ``v``, a union of Avro's
primitives and small records for what Avro has no single type for. Any Avro
reader reads it; :func:`from_datum` gives back exactly the value the state held
(tuples stay tuples, sets stay sets, dict keys of any type survive):

================  ============================================  ===================
Python            ``v`` holds                                   example
================  ============================================  ===================
None, bool        ``null``, ``boolean``
int (64-bit)      ``long``
float             ``double``
str, bytes        ``string``, ``bytes``
list              ``{"list": [Datum, ...]}``                    ``{"list": [...]}``
tuple             ``{"tuple": [Datum, ...]}``
set, frozenset    ``{"set": [...]}``, ``{"frozenset": [...]}``
dict              ``{"map": [{"key": Datum, "value": Datum}]}``
int beyond 64     ``{"bigint": bytes}`` (signed, big-endian)
registered type   ``{"type": name, "fields": [Datum, ...]}``    a DDSketch
================  ============================================  ===================

Nothing here runs code named by the data: registered types are built only through
:data:`runtime.state.codec.REGISTRY`, as the state codec does.
"""

from __future__ import annotations

from typing import Any

from runtime.api.errors import StateError
from runtime.state.codec import REGISTRY

__all__ = ["DATUM", "DATUM_NAME", "from_datum", "json_ready", "to_datum"]

DATUM_NAME = "shoal.savepoint.Datum"


def _items(name: str, field: str) -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": field, "type": {"type": "array", "items": DATUM_NAME}}],
    }


DATUM: dict[str, Any] = {
    "type": "record",
    "name": "Datum",
    "namespace": "shoal.savepoint",
    "doc": "A generic state value (see runtime/savepoint/datum.py).",
    "fields": [
        {
            "name": "v",
            "type": [
                "null",
                "boolean",
                "long",
                "double",
                "string",
                "bytes",
                _items("List", "list"),
                _items("Tuple", "tuple"),
                _items("Set", "set"),
                _items("FrozenSet", "frozenset"),
                {
                    "type": "record",
                    "name": "Map",
                    "fields": [
                        {
                            "name": "map",
                            "type": {
                                "type": "array",
                                "items": {
                                    "type": "record",
                                    "name": "Entry",
                                    "fields": [
                                        {"name": "key", "type": DATUM_NAME},
                                        {"name": "value", "type": DATUM_NAME},
                                    ],
                                },
                            },
                        }
                    ],
                },
                {
                    "type": "record",
                    "name": "BigInt",
                    "fields": [{"name": "bigint", "type": "bytes"}],
                },
                {
                    "type": "record",
                    "name": "Object",
                    "fields": [
                        {"name": "type", "type": "string"},
                        {"name": "fields", "type": {"type": "array", "items": DATUM_NAME}},
                    ],
                },
            ],
        }
    ],
}
"""The Avro schema of a generic value."""

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_BY_CLASS = {t.cls: t for t in REGISTRY.values()}


def to_datum(value: Any) -> dict[str, Any]:
    """The ``Datum`` record of a state value.

    Raises:
        StateError: the value holds a type state cannot hold.
    """
    return {"v": _inner(value)}


def _inner(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, float, str, bytes):
        return value
    if kind is int:
        if _LONG_MIN <= value <= _LONG_MAX:
            return value
        size = (value.bit_length() + 8) // 8
        return {"bigint": value.to_bytes(size, "big", signed=True)}
    if kind is list:
        return {"list": [to_datum(v) for v in value]}
    if kind is tuple:
        return {"tuple": [to_datum(v) for v in value]}
    if kind is set:
        return {"set": [to_datum(v) for v in value]}
    if kind is frozenset:
        return {"frozenset": [to_datum(v) for v in value]}
    if kind is dict:
        return {"map": [{"key": to_datum(k), "value": to_datum(v)} for k, v in value.items()]}
    state_type = _BY_CLASS.get(kind)
    if state_type is not None:
        return {
            "type": state_type.name,
            "fields": [to_datum(f) for f in state_type.to_fields(value)],
        }
    raise StateError(f"a state value of type {kind.__name__} cannot be written to a savepoint")


def from_datum(datum: Any) -> Any:
    """The state value of a ``Datum`` record (as read by any Avro reader).

    Raises:
        StateError: the record is not a ``Datum`` this version writes.
    """
    if not isinstance(datum, dict) or "v" not in datum:
        raise StateError(f"not a savepoint Datum: {datum!r:.80}")
    return _outer(datum["v"])


def _outer(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "list" in v:
        return [from_datum(x) for x in v["list"]]
    if "tuple" in v:
        return tuple(from_datum(x) for x in v["tuple"])
    if "set" in v:
        return {from_datum(x) for x in v["set"]}
    if "frozenset" in v:
        return frozenset(from_datum(x) for x in v["frozenset"])
    if "map" in v:
        return {from_datum(e["key"]): from_datum(e["value"]) for e in v["map"]}
    if "bigint" in v:
        return int.from_bytes(v["bigint"], "big", signed=True)
    if "type" in v and "fields" in v:
        state_type = REGISTRY.get(v["type"])
        if state_type is None:
            raise StateError(f"unknown state type {v['type']!r} (registered: {sorted(REGISTRY)})")
        try:
            return state_type.from_fields([from_datum(f) for f in v["fields"]])
        except (TypeError, ValueError) as exc:
            raise StateError(f"malformed {v['type']} value: {exc}") from exc
    raise StateError(f"not a savepoint Datum: {v!r:.80}")


def json_ready(value: Any) -> Any:
    """A JSON-able form of a state value (for ``shoal state dump``).

    Tuples and sets become lists (sets sorted where possible), bytes become
    ``{"base64": ...}``, dicts with keys that are not strings become lists of
    ``[key, value]`` pairs; registered types become ``{"type": ..., "fields": ...}``.
    """
    import base64

    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is bytes:
        return {"base64": base64.b64encode(value).decode()}
    if kind in (list, tuple):
        return [json_ready(v) for v in value]
    if kind in (set, frozenset):
        items = [json_ready(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if kind is dict:
        if all(type(k) is str for k in value):
            return {k: json_ready(v) for k, v in value.items()}
        return [[json_ready(k), json_ready(v)] for k, v in value.items()]
    state_type = _BY_CLASS.get(kind)
    if state_type is not None:
        return {"type": state_type.name, "fields": json_ready(state_type.to_fields(value))}
    return repr(value)
