"""Backward compatibility of Avro schemas: can the new schema read the old data?

Two checks, both reported:

* **structural**, by the Avro resolution rules: a reader field missing in the
  writer needs a default, enum symbols the writer may send must exist in the
  reader (or the reader enum needs a default), a type change must be a
  promotion Avro allows (int to long, float or double; long to float or double;
  float to double; string and bytes either way), named types must keep their
  name or alias it;
* **by trying**: deterministic samples of the old schema (every union branch and
  enum symbol included, see :mod:`connectors.avro.datums`) are encoded with the
  old schema and decoded with the new one as reader.

Example:
    >>> old = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"}]}
    >>> new = {"type": "record", "name": "E", "fields": [
    ...     {"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": ""}]}
    >>> check_backward_compatible(old, new)
    []
"""

from __future__ import annotations

import io
from typing import Any, Final

from connectors.avro import _fastavro
from connectors.avro.datums import tagged_sample_datums
from connectors.avro.schema_tree import SchemaTree, describe, kind, normalize, same_name
from runtime.api.errors import ConfigError

__all__ = ["check_backward_compatible"]

#: Writer type -> reader types it may be read as.
_PROMOTIONS: Final[dict[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
#: Sample failures reported at most (the first ones usually say it all).
_MAX_SAMPLE_PROBLEMS: Final = 3


def check_backward_compatible(
    old_schema: Any, new_schema: Any, *, samples: int | None = None
) -> list[str]:
    """List the reasons why ``new_schema`` cannot read data written with ``old_schema``.

    Args:
        old_schema: the writer schema, as JSON.
        new_schema: the reader schema, as JSON.
        samples: how many sample values to try; by default enough to cover
            every union branch and enum symbol (at least 8).

    Returns:
        Human-readable problems, each naming a field path; empty when the new
        schema reads old data.
    """
    try:
        _fastavro.parse(old_schema)
        old_tree = normalize(old_schema)
    except ConfigError as exc:
        return [f"the old schema is invalid: {exc}"]
    try:
        _fastavro.parse(new_schema)
        new_tree = normalize(new_schema)
    except ConfigError as exc:
        return [f"the new schema is invalid: {exc}"]
    problems = _Structural(old_tree, new_tree).check(old_tree.root, new_tree.root, "")
    for problem in _by_trying(old_schema, new_schema, samples):
        if problem not in problems:
            problems.append(problem)
    return problems


def _by_trying(old_schema: Any, new_schema: Any, samples: int | None) -> list[str]:
    parsed_old = _fastavro.parse(old_schema)
    plan = _fastavro.read_plan(old_schema, new_schema)
    problems: dict[str, int] = {}  # what went wrong -> the first sample it happened to
    for index, datum in enumerate(tagged_sample_datums(old_schema, samples)):
        buffer = io.BytesIO()
        _fastavro.write_body(buffer, parsed_old, datum)
        body = buffer.getvalue()
        reader = io.BytesIO(body)
        try:
            _fastavro.read_body(reader, plan)
        except Exception as exc:
            problems.setdefault(f"fails to read: {exc}", index)
        else:
            if reader.tell() != len(body):
                problems.setdefault(
                    f"the new schema reads {reader.tell()} of {len(body)} bytes", index
                )
        if len(problems) >= _MAX_SAMPLE_PROBLEMS:
            break
    return [
        f"sample {index} written with the old schema {what}" for what, index in problems.items()
    ]


class _Structural:
    """Walks a writer (old) and a reader (new) schema side by side."""

    def __init__(self, old: SchemaTree, new: SchemaTree) -> None:
        self._old = old
        self._new = new
        self._seen: set[tuple[str, str]] = set()

    def check(self, writer: Any, reader: Any, path: str) -> list[str]:
        writer = self._old.deref(writer)
        reader = self._new.deref(reader)
        w_kind, r_kind = kind(writer), kind(reader)
        where = path or "<root>"
        if w_kind == "union":
            # Every branch the old schema may have written must be readable.
            return [p for branch in writer for p in self.check(branch, reader, path)]
        if r_kind == "union":
            for branch in reader:
                seen = set(self._seen)
                if not self.check(writer, branch, path):
                    return []
                self._seen = seen  # a failed trial must not count as checked
            return [
                f"{where}: old type {describe(writer)} matches no branch of new {describe(reader)}"
            ]
        if w_kind != r_kind:
            if r_kind in _PROMOTIONS.get(w_kind, frozenset()):
                return []
            return [
                f"{where}: type changed from {describe(writer)} to {describe(reader)}, "
                "which is not a promotion Avro allows"
            ]
        if w_kind in ("record", "enum", "fixed") and not same_name(writer, reader):
            return [
                f"{where}: {w_kind} {writer['name']} was renamed to {reader['name']} "
                "without an alias"
            ]
        if w_kind == "record":
            return self._record(writer, reader, path)
        if w_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [
                    f"{where}: enum {reader['name']} lost symbols {missing} "
                    "and has no default symbol"
                ]
            return []
        if w_kind == "fixed" and writer["size"] != reader["size"]:
            return [
                f"{where}: fixed {reader['name']} changed size "
                f"from {writer['size']} to {reader['size']}"
            ]
        if w_kind == "array":
            return self.check(writer["items"], reader["items"], f"{path}[]")
        if w_kind == "map":
            return self.check(writer["values"], reader["values"], f"{path}[*]")
        return []

    def _record(self, writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[str]:
        pair = (writer["name"], reader["name"])
        if pair in self._seen:
            return []  # a recursive type: already being checked further up
        self._seen.add(pair)
        old_fields = {field["name"]: field for field in writer["fields"]}
        problems: list[str] = []
        for field in reader["fields"]:
            where = f"{path}.{field['name']}" if path else field["name"]
            names = [field["name"], *field.get("aliases", [])]
            old = next((old_fields[name] for name in names if name in old_fields), None)
            if old is not None:
                problems.extend(self.check(old["type"], field["type"], where))
            elif "default" not in field:
                problems.append(
                    f"{where}: new field has no default, so data written without it cannot be read"
                )
        return problems
