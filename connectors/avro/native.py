"""The native Avro decoder (``native/``, Rust): whole batches of framed records into
dicts, as fastavro reads them with the same writer schema, about three times faster.

It is optional and strict. Optional: ``make`` builds it from source (cargo and
crates.io), and without it (or with ``SHOAL_NATIVE_DECODER=0``) every record goes
through fastavro, with the same results. Strict: a record it cannot read exactly (bad
bytes, another header, a boolean byte other than 0 or 1, an over-long varint) is
handed back by index, and fastavro decodes it or says why it cannot, so values and
error messages never depend on which decoder ran.

Schemas with logical types are read by fastavro only (it turns them into dates,
decimals and UUIDs); so are reads that resolve one schema into another: the decoder
reads as written, and a reshape (``connectors.avro.projection``) may follow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

try:  # built by `make` from native/ (pip install ./native)
    import shoal_native as _native
except ImportError:  # pragma: no cover - depends on the machine
    _native = None

__all__ = ["AVAILABLE", "Unsupported", "decoder_for", "enabled", "program"]

#: Whether the extension is installed.
AVAILABLE: bool = _native is not None

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class Unsupported(Exception):
    """The schema uses something only fastavro reads (a logical type)."""


def enabled() -> bool:
    """Whether records are decoded natively: installed and not turned off
    (``SHOAL_NATIVE_DECODER=0``)."""
    return AVAILABLE and os.environ.get("SHOAL_NATIVE_DECODER", "1") != "0"


def program(parsed: Any, named: Mapping[str, Any]) -> Any:
    """The decoder's program for a schema parsed by fastavro (names in full).

    Nodes: a primitive's name; ``("record", [(field, node), ...])``, ``("enum",
    symbols)`` and ``("fixed", size)``, each wrapped once in ``("define", (index,
    node))`` where the named type first appears and ``("ref", index)`` after;
    ``("array", node)``, ``("map", node)``, ``("union", [node, ...])``.

    Raises:
        Unsupported: a logical type, or a name the schema does not define.
    """
    index: dict[str, int] = {}

    def define(node: dict[str, Any], body: Any) -> Any:
        at = index[node["name"]] = len(index)
        return ("define", (at, body(node)))

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            if node in index:
                return ("ref", index[node])
            if node in named:
                return walk(named[node])
            raise Unsupported(f"unknown type {node!r}")
        if isinstance(node, list):
            return ("union", [walk(branch) for branch in node])
        if not isinstance(node, dict):
            raise Unsupported(f"unexpected schema node {node!r}")
        if "logicalType" in node:
            raise Unsupported(f"logical type {node['logicalType']!r}")
        kind = node.get("type")
        if kind in ("record", "error"):
            if node.get("name") in index:
                return ("ref", index[node["name"]])
            return define(
                node, lambda n: ("record", [(f["name"], walk(f["type"])) for f in n["fields"]])
            )
        if kind == "enum":
            return define(node, lambda n: ("enum", list(n["symbols"])))
        if kind == "fixed":
            return define(node, lambda n: ("fixed", int(n["size"])))
        if kind == "array":
            return ("array", walk(node["items"]))
        if kind == "map":
            return ("map", walk(node["values"]))
        return walk(kind)

    return walk(parsed)


def decoder_for(parsed: Any, named: Mapping[str, Any]) -> Any | None:
    """A native decoder of records written with ``parsed``; ``None`` when decoding
    natively is off or the schema needs fastavro."""
    if not enabled() or _native is None:
        return None
    try:
        return _native.Decoder(program(parsed, named))
    except (Unsupported, ValueError, TypeError):
        return None
