"""Avro schemas as plain trees with every name made full.

Validation, sample generation and the compatibility check all walk schemas.
:func:`normalize` does the one fiddly part once: namespaces. In the tree it
returns every named type's ``name`` is its full name (no ``namespace`` key),
every reference is a full name, and :attr:`SchemaTree.names` maps each full name
to its definition, so walkers never track namespaces themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from runtime.api.errors import ConfigError

__all__ = [
    "NAMED",
    "PRIMITIVES",
    "SchemaTree",
    "describe",
    "kind",
    "normalize",
    "same_name",
    "short_name",
]

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED: Final = frozenset({"record", "error", "enum", "fixed"})


@dataclass(frozen=True, slots=True)
class SchemaTree:
    """A schema with full names, and its named types by full name.

    Attributes:
        root: the normalized schema.
        names: each named type's definition, by full name.
    """

    root: Any
    names: Mapping[str, dict[str, Any]]

    def deref(self, schema: Any) -> Any:
        """Follow a reference to a named type; other schemas come back unchanged.

        Args:
            schema: a normalized schema or a full-name reference.

        Returns:
            The definition the reference names, or ``schema`` itself.
        """
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self.names[schema]
        return schema


def short_name(full_name: str) -> str:
    """The unqualified part of a full name (``"shoal.PlaybackEvent"`` -> ``"PlaybackEvent"``).

    Args:
        full_name: a dotted or plain name.

    Returns:
        The text after the last dot.
    """
    return full_name.rsplit(".", 1)[-1]


def same_name(writer: Mapping[str, Any], reader: Mapping[str, Any]) -> bool:
    """Whether a named writer type resolves to a named reader type.

    Avro's rule: the same unqualified name, or the writer's full name is one of
    the reader's aliases.

    Args:
        writer: a normalized named type (full ``name``).
        reader: a normalized named type (full ``name`` and ``aliases``).

    Returns:
        True when the names match.
    """
    return short_name(writer["name"]) == short_name(reader["name"]) or writer["name"] in reader.get(
        "aliases", ()
    )


def kind(schema: Any) -> str:
    """The kind of a dereferenced schema: a primitive name, a complex type or ``union``.

    Args:
        schema: a normalized, dereferenced schema.

    Returns:
        ``"int"``, ``"record"``, ``"union"`` ... (``error`` counts as ``record``).
    """
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    type_ = schema["type"]
    return "record" if type_ == "error" else str(type_)


def describe(schema: Any) -> str:
    """A short human description of a normalized schema, for messages.

    Args:
        schema: a normalized schema or a full-name reference.

    Returns:
        E.g. ``"int"``, ``"record shoal.Session"``, ``"array<string>"``,
        ``"union[null, string]"``.
    """
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union[" + ", ".join(describe(branch) for branch in schema) + "]"
    type_ = kind(schema)
    if type_ in ("record", "enum", "fixed"):
        return f"{type_} {schema['name']}"
    if type_ == "array":
        return f"array<{describe(schema['items'])}>"
    if type_ == "map":
        return f"map<{describe(schema['values'])}>"
    logical = schema.get("logicalType")
    return f"{type_} ({logical})" if logical else type_


def normalize(schema: Any) -> SchemaTree:
    """Make every name in ``schema`` full and index the named types.

    Args:
        schema: an Avro schema as JSON.

    Returns:
        The normalized tree and its named types.

    Raises:
        ConfigError: a reference names no type defined before it, or the
            schema's shape is not Avro.
    """
    names: dict[str, dict[str, Any]] = {}
    try:
        return SchemaTree(_normalize(schema, "", names), names)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"not a valid Avro schema ({type(exc).__name__}: {exc})") from exc


def _full_name(name: str, namespace: str) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _reference(name: str, namespace: str, names: Mapping[str, Any]) -> str:
    for candidate in (_full_name(name, namespace), name):
        if candidate in names:
            return candidate
    raise ConfigError(f"unknown Avro type {name!r} (no earlier definition in the schema)")


def _normalize(schema: Any, namespace: str, names: dict[str, dict[str, Any]]) -> Any:
    if isinstance(schema, str):
        return schema if schema in PRIMITIVES else _reference(schema, namespace, names)
    if isinstance(schema, list):
        return [_normalize(branch, namespace, names) for branch in schema]
    if not isinstance(schema, Mapping) or "type" not in schema:
        raise ConfigError(f"not an Avro schema: {schema!r:.80}")
    type_ = schema["type"]
    if not isinstance(type_, str):
        return _normalize(type_, namespace, names)  # {"type": {...}} wraps a schema
    node = {key: value for key, value in schema.items() if key != "namespace"}
    if type_ in NAMED:
        name = str(schema["name"])
        inner = str(schema.get("namespace") or namespace)
        full = name if "." in name else _full_name(name, inner)
        inner = full.rsplit(".", 1)[0] if "." in full else ""
        node["name"] = full
        if "aliases" in schema:
            node["aliases"] = [_full_name(str(alias), inner) for alias in schema["aliases"]]
        # Register before the fields: a record may refer to itself.
        names[full] = node
        if type_ in ("record", "error"):
            node["fields"] = [
                {**field, "type": _normalize(field["type"], inner, names)}
                for field in schema["fields"]
            ]
        return node
    if type_ == "array":
        node["items"] = _normalize(schema["items"], namespace, names)
    elif type_ == "map":
        node["values"] = _normalize(schema["values"], namespace, names)
    elif type_ not in PRIMITIVES:
        return _reference(type_, namespace, names)  # {"type": "SomeRecord"}
    return node
