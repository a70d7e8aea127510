"""Turn records and state values into JSON that browsers parse.

Records are mostly dicts of plain values, but state holds anything picklable:
tuples (keys), sets, bytes, dataclasses, accumulator objects, and floats that may
be NaN or infinite (which ``JSON.parse`` rejects). Everything becomes plain JSON;
big containers are cut to :data:`MAX_ITEMS` entries with a marker saying so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

__all__ = ["MAX_ITEMS", "dumps", "to_jsonable"]

#: Entries of one list or dict rendered at most.
MAX_ITEMS = 1000
_MAX_DEPTH = 12


def to_jsonable(obj: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``obj`` (non-finite floats become ``null``)."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if depth >= _MAX_DEPTH:
        return repr(obj)[:200]
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(obj.items()):
            if i >= MAX_ITEMS:
                out["..."] = f"{len(obj) - MAX_ITEMS} more entries"
                break
            out[k if isinstance(k, str) else _key_text(k)] = to_jsonable(v, depth + 1)
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        seq = [to_jsonable(v, depth + 1) for v in list(items)[:MAX_ITEMS]]
        if len(obj) > MAX_ITEMS:
            seq.append(f"... {len(obj) - MAX_ITEMS} more items")
        return seq
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).decode("utf-8", "replace")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name, None), depth + 1)
            for f in dataclasses.fields(obj)
        }
    slots = getattr(type(obj), "__slots__", None)
    if isinstance(slots, tuple | list) and slots:
        return {
            str(s): to_jsonable(getattr(obj, s, None), depth + 1)
            for s in slots
            if not str(s).startswith("__")
        }
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        return {k: to_jsonable(v, depth + 1) for k, v in attrs.items() if not k.startswith("_")}
    return repr(obj)[:200]


def _key_text(key: Any) -> str:
    if isinstance(key, tuple):
        return "|".join(str(k) for k in key)
    return str(key)


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj``; the fast path for plain records."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(
            to_jsonable(obj), separators=(",", ":"), allow_nan=False, ensure_ascii=False
        )
