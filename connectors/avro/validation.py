"""Find where a value breaks its schema, with the field path.

fastavro's own validator is fast but reports a violation by the type's name
(``ns.Session.x``), not by where it sits in the value (``sessions[3].x``).
Serdes therefore ask fastavro first and call :func:`find_violation` only for a
value fastavro rejected, to say exactly what is wrong. The rules mirror
fastavro's so the two agree: missing fields with a default are fine, extra keys
are ignored, ints are accepted for floats and doubles.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from connectors.avro.schema_tree import SchemaTree, describe, kind

__all__ = ["IntegerField", "find_violation", "integer_fields", "misfit_integer"]

_INT_RANGE: Final = (-(2**31), 2**31 - 1)
_LONG_RANGE: Final = (-(2**63), 2**63 - 1)

#: Python values fastavro's writer converts for each logical type.
_LOGICAL_VALUES: Final[dict[str, tuple[type, ...]]] = {
    "timestamp-millis": (datetime.datetime,),
    "timestamp-micros": (datetime.datetime,),
    "local-timestamp-millis": (datetime.datetime,),
    "local-timestamp-micros": (datetime.datetime,),
    "date": (datetime.date,),
    "time-millis": (datetime.time,),
    "time-micros": (datetime.time,),
    "decimal": (decimal.Decimal,),
    "uuid": (uuid.UUID,),
}


def find_violation(value: Any, tree: SchemaTree) -> str | None:
    """Describe the first place where ``value`` does not fit ``tree``.

    Args:
        value: the datum to check.
        tree: the normalized schema.

    Returns:
        ``"<path>: <problem>"`` (e.g. ``"sessions[3].watch_ms: expected long,
        got str 'x'"``), or ``None`` when the value fits.
    """
    return _check(value, tree.root, "", tree)


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"got {type(value).__name__} {text}"


#: ``(field name, lowest, highest, None allowed)`` of a top-level int or long field.
IntegerField = tuple[str, int, int, bool]


def integer_fields(tree: SchemaTree) -> tuple[IntegerField, ...]:
    """The record's top-level ``int``/``long`` fields (also ``["null", "long"]``).

    fastavro's writer truncates a float written to them (``1.7`` becomes ``1``) and
    writes a bool as ``0``/``1``, without a word: encoders check these fields with
    :func:`misfit_integer` (a type test per field) and refuse such a value.
    """
    root = tree.deref(tree.root)
    if kind(root) != "record":
        return ()
    found = []
    for field in root["fields"]:
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        kinds = [kind(tree.deref(b)) for b in branches]
        plain = [
            k
            for b, k in zip(branches, kinds, strict=True)
            if k in ("int", "long") and not (isinstance(b, dict) and "logicalType" in b)
        ]
        if len(plain) == 1 and set(kinds) <= {plain[0], "null"}:
            low, high = _INT_RANGE if plain[0] == "int" else _LONG_RANGE
            found.append((field["name"], low, high, "null" in kinds))
    return tuple(found)


def misfit_integer(value: Any, fields: tuple[IntegerField, ...]) -> bool:
    """Whether a value given for one of ``fields`` is not an integer in its range."""
    if not isinstance(value, Mapping):
        return False  # the writer refuses it anyway
    for name, low, high, nullable in fields:
        if name not in value:
            continue
        x = value[name]
        if type(x) is int:
            if not low <= x <= high:
                return True
        elif not (x is None and nullable):
            return True
    return False


def _at(path: str) -> str:
    return path or "<value>"


def _check(value: Any, schema: Any, path: str, tree: SchemaTree) -> str | None:
    schema = tree.deref(schema)
    type_ = kind(schema)
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        if logical in _LOGICAL_VALUES and isinstance(value, _LOGICAL_VALUES[logical]):
            return None
    if type_ == "union":
        return _check_union(value, schema, path, tree)
    if type_ == "record":
        return _check_record(value, schema, path, tree)
    if type_ == "array":
        if not isinstance(value, Sequence) or isinstance(value, str | bytes | bytearray):
            return f"{_at(path)}: expected {describe(schema)}, {_got(value)}"
        for index, item in enumerate(value):
            problem = _check(item, schema["items"], f"{path}[{index}]", tree)
            if problem:
                return problem
        return None
    if type_ == "map":
        if not isinstance(value, Mapping):
            return f"{_at(path)}: expected {describe(schema)}, {_got(value)}"
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{_at(path)}: map keys must be strings, {_got(key)}"
            problem = _check(item, schema["values"], f"{path}[{key!r}]", tree)
            if problem:
                return problem
        return None
    if _fits_simple(value, schema, type_):
        return None
    return f"{_at(path)}: expected {describe(schema)}, {_got(value)}"


def _fits_simple(value: Any, schema: Any, type_: str) -> bool:
    if type_ == "null":
        return value is None
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ in ("int", "long"):
        low, high = _INT_RANGE if type_ == "int" else _LONG_RANGE
        return type(value) is not bool and isinstance(value, int) and low <= value <= high
    if type_ in ("float", "double"):
        return isinstance(value, int | float)
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "bytes":
        return isinstance(value, bytes | bytearray)
    if type_ == "fixed":
        return isinstance(value, bytes | bytearray) and len(value) == schema["size"]
    if type_ == "enum":
        return isinstance(value, str) and value in schema["symbols"]
    return False


def _check_record(value: Any, schema: dict[str, Any], path: str, tree: SchemaTree) -> str | None:
    if not isinstance(value, Mapping):
        return f"{_at(path)}: expected {describe(schema)}, {_got(value)}"
    for field in schema["fields"]:
        name = field["name"]
        where = f"{path}.{name}" if path else name
        if name not in value:
            if "default" in field:
                continue
            if _check(None, field["type"], where, tree) is not None:
                return f"{where}: missing (required, {describe(field['type'])}, no default)"
            continue
        problem = _check(value[name], field["type"], where, tree)
        if problem:
            return problem
    return None


def _check_union(value: Any, branches: list[Any], path: str, tree: SchemaTree) -> str | None:
    problems = []
    for branch in branches:
        problem = _check(value, branch, path, tree)
        if problem is None:
            return None
        problems.append((branch, problem))
    # A mapping aimed at the union's one record branch: report inside that record.
    records = [problem for branch, problem in problems if kind(tree.deref(branch)) == "record"]
    if isinstance(value, Mapping) and len(records) == 1:
        return records[0]
    return f"{_at(path)}: expected {describe(branches)}, {_got(value)}"
