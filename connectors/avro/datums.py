"""Deterministic sample values for any Avro schema.

The compatibility check writes these with an old schema and reads them back
with a new one. Sample ``k`` picks branch ``k mod n`` of every union and symbol
``k mod n`` of every enum (shifted per array item), so with enough samples every
branch and every symbol is written at least once. Values come from a seeded
:class:`random.Random`, so the same schema always gives the same samples.
"""

from __future__ import annotations

import random
import string
import uuid
from typing import Any, Final

from connectors.avro.schema_tree import SchemaTree, kind, normalize
from runtime.api.errors import ConfigError

__all__ = ["default_sample_count", "sample_datums", "tagged_sample_datums"]

#: Past this depth unions prefer a non-recursive branch and collections are empty.
_SHALLOW_DEPTH: Final = 4
#: A record nested deeper than this has no finite value.
_MAX_DEPTH: Final = 64

_INTS: Final = (0, 1, -1, 2**31 - 1, -(2**31))
_LONGS: Final = (0, -1, 1_700_000_000_000, 2**63 - 1, -(2**63))
_TEXT: Final = string.ascii_letters + string.digits + "-_ éü日本"

#: Ranges that fastavro's readers can turn into Python dates and times.
_LOGICAL_RANGES: Final[dict[str, tuple[int, int]]] = {
    "timestamp-millis": (0, 4_102_444_800_000),
    "local-timestamp-millis": (0, 4_102_444_800_000),
    "timestamp-micros": (0, 4_102_444_800_000_000),
    "local-timestamp-micros": (0, 4_102_444_800_000_000),
    "date": (0, 47_482),
    "time-millis": (0, 86_399_999),
    "time-micros": (0, 86_399_999_999),
}


def default_sample_count(schema: Any) -> int:
    """How many samples cover every union branch and enum symbol of ``schema``.

    Args:
        schema: an Avro schema as JSON.

    Returns:
        At least 8, at most 64.

    Raises:
        ConfigError: the schema is not Avro.
    """
    tree = normalize(schema)
    widest = max(
        [len(node["symbols"]) for node in tree.names.values() if kind(node) == "enum"]
        + [_widest_union(tree.root, tree, set())]
    )
    return max(8, min(64, widest))


def sample_datums(schema: Any, count: int | None = None, seed: int = 0) -> list[Any]:
    """Generate ``count`` sample values that fit ``schema``.

    Args:
        schema: an Avro schema as JSON.
        count: how many; by default :func:`default_sample_count`.
        seed: varies the values; the same seed gives the same values.

    Returns:
        The samples, as fastavro writes them (dicts for records).

    Raises:
        ConfigError: the schema is not Avro, or it is a record that can only
            contain itself (it has no finite value).
    """
    return _samples(schema, count, seed, tag_branches=False)


def tagged_sample_datums(schema: Any, count: int | None = None, seed: int = 0) -> list[Any]:
    """Like :func:`sample_datums`, with union branches of named types made explicit.

    A plain value can fit several branches (an enum symbol is also a string),
    and fastavro writes the first that fits. Here a value for a record, enum or
    fixed branch is fastavro's ``(full name, value)`` pair, so every branch is
    really written. Use these to write, not to compare with decoded values.

    Args:
        schema: an Avro schema as JSON.
        count: how many; by default :func:`default_sample_count`.
        seed: varies the values; the same seed gives the same values.

    Returns:
        The samples.

    Raises:
        ConfigError: as for :func:`sample_datums`.
    """
    return _samples(schema, count, seed, tag_branches=True)


def _samples(schema: Any, count: int | None, seed: int, *, tag_branches: bool) -> list[Any]:
    tree = normalize(schema)
    total = default_sample_count(schema) if count is None else count
    return [
        _Generator(tree, random.Random(seed * 1_000_003 + k), k, tag_branches).value(tree.root, 0)
        for k in range(total)
    ]


def _widest_union(schema: Any, tree: SchemaTree, seen: set[str]) -> int:
    schema = tree.deref(schema)
    type_ = kind(schema)
    if type_ == "union":
        return max([len(schema)] + [_widest_union(branch, tree, seen) for branch in schema])
    if type_ == "array":
        return _widest_union(schema["items"], tree, seen)
    if type_ == "map":
        return _widest_union(schema["values"], tree, seen)
    if type_ == "record" and schema["name"] not in seen:
        seen.add(schema["name"])
        return max([1] + [_widest_union(field["type"], tree, seen) for field in schema["fields"]])
    return 1


class _Generator:
    """Builds one sample; ``variant`` picks union branches and enum symbols."""

    def __init__(
        self, tree: SchemaTree, rng: random.Random, variant: int, tag_branches: bool
    ) -> None:
        self._tree = tree
        self._rng = rng
        self._variant = variant
        self._tag_branches = tag_branches

    def value(self, schema: Any, depth: int, shift: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ConfigError("the schema has no finite value (a record that must contain itself)")
        schema = self._tree.deref(schema)
        type_ = kind(schema)
        pick = self._variant + shift
        if type_ == "union":
            branch = self._tree.deref(self._branch(schema, pick, depth))
            value = self.value(branch, depth + 1, shift)
            if self._tag_branches and kind(branch) in ("record", "enum", "fixed"):
                return (branch["name"], value)
            return value
        if type_ == "record":
            return {
                field["name"]: self.value(field["type"], depth + 1, shift)
                for field in schema["fields"]
            }
        if type_ == "enum":
            return schema["symbols"][pick % len(schema["symbols"])]
        if type_ in ("array", "map"):
            size = 0 if depth >= _SHALLOW_DEPTH else self._rng.randint(0, 3)
            inner = schema["items"] if type_ == "array" else schema["values"]
            items = [self.value(inner, depth + 1, shift + i) for i in range(size)]
            if type_ == "array":
                return items
            return {f"k{i}-{self._text(4)}": item for i, item in enumerate(items)}
        if type_ == "fixed":
            return self._rng.randbytes(schema["size"])
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        return self._primitive(type_, logical)

    def _branch(self, branches: list[Any], pick: int, depth: int) -> Any:
        if depth >= _SHALLOW_DEPTH:
            # Deep down, prefer branches that end the recursion.
            flat = [b for b in branches if kind(self._tree.deref(b)) not in ("record", "union")]
            if flat:
                branches = flat
        return branches[pick % len(branches)]

    def _text(self, size: int) -> str:
        return "".join(self._rng.choice(_TEXT) for _ in range(size))

    def _primitive(self, type_: str, logical: Any) -> Any:
        rng = self._rng
        if logical in _LOGICAL_RANGES:
            return rng.randint(*_LOGICAL_RANGES[logical])
        if logical == "uuid" and type_ == "string":
            return str(uuid.UUID(int=rng.getrandbits(128)))
        if type_ == "null":
            return None
        if type_ == "boolean":
            return rng.random() < 0.5
        if type_ == "int":
            return rng.choice((*_INTS, rng.randint(-(2**31), 2**31 - 1)))
        if type_ == "long":
            return rng.choice((*_LONGS, rng.randint(-(2**63), 2**63 - 1)))
        if type_ in ("float", "double"):
            return rng.choice((0.0, -1.5, rng.uniform(-1e6, 1e6)))
        if type_ == "string":
            return self._text(rng.randint(0, 12))
        if type_ == "bytes":
            return rng.randbytes(rng.randint(0, 12))
        raise ConfigError(f"not an Avro type: {type_!r}")
