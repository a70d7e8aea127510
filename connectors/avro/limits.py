"""A limit on how many array and map items one Avro body may hold.

An item that takes bytes can appear at most once per byte of the body, so a body can
never hold more of them than it has bytes. Items of no bytes (``null``, a ``fixed`` of
size 0, a record of only such fields) are different: a block count of a few bytes can
ask for billions of them, and a decoder builds them until memory runs out. So a body
may hold at most its length in bytes plus :data:`ITEM_ALLOWANCE` items in all its
arrays and maps; a body asking for more is refused before anything is built (and
dead-lettered by the caller).

The native decoder (``native/``) applies the same rule as it decodes. fastavro has no
such limit, so for writer schemas where the rule can matter (an array of items of no
bytes somewhere) :func:`item_check` gives a walk over the bytes that the serde runs
before fastavro reads them. For every other schema the rule cannot refuse a body
fastavro would read, and no walk is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["ITEM_ALLOWANCE", "TooManyItems", "item_check"]

#: Items one body may hold beyond one per byte (the native decoder's ``ITEM_ALLOWANCE``).
ITEM_ALLOWANCE: Final = 65_536

_FIXED_SIZES: Final = {"boolean": 1, "float": 4, "double": 8}
_VARINTS: Final = frozenset({"int", "long"})


class TooManyItems(ValueError):
    """A body asks for more array and map items than the limit allows."""


class _Walk:
    """The read position and item allowance of one body."""

    __slots__ = ("data", "items_left", "limit", "pos")

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.pos = start
        self.limit = self.items_left = len(data) - start + ITEM_ALLOWANCE

    def long(self) -> int:
        data = self.data
        acc = shift = 0
        while True:
            byte = data[self.pos]  # IndexError past the end: not this module's verdict
            self.pos += 1
            acc |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (acc >> 1) ^ -(acc & 1)
            shift += 7
            if shift > 63:
                raise ValueError("varint longer than 64 bits")

    def skip(self, size: int) -> None:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("a length beyond the body")
        self.pos += size

    def block(self) -> int:
        count = self.long()
        if count < 0:
            self.long()  # the block's size in bytes
            count = -count
        self.items_left -= count
        if self.items_left < 0:
            raise TooManyItems(
                f"more than {self.limit:,} array and map items "
                f"(at most one per byte of the body plus {ITEM_ALLOWANCE:,})"
            )
        return count


_Step = Callable[[_Walk], None]


def _skip_long(w: _Walk) -> None:
    w.long()


def _takes_no_bytes(node: Any, named: Mapping[str, Any], seen: frozenset[str]) -> bool:
    """Whether every value of ``node`` is written as no bytes at all."""
    if isinstance(node, str):
        if node == "null":
            return True
        if node in named and node not in seen:
            return _takes_no_bytes(named[node], named, seen | {node})
        return False
    if not isinstance(node, dict):
        return False  # a union writes its branch index
    kind = node.get("type")
    if kind == "fixed":
        return int(node.get("size", 1)) == 0
    if kind in ("record", "error"):
        name = node.get("name", "")
        inner = seen | {name}
        return all(_takes_no_bytes(f["type"], named, inner) for f in node.get("fields", ()))
    if kind in ("array", "map", "enum"):
        return False  # a block count of 0 ends every array and map; an enum is an index
    return _takes_no_bytes(kind, named, seen)  # {"type": "null"}, logical types


def _has_empty_items(node: Any, named: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether an array somewhere in ``node`` holds items of no bytes."""
    if isinstance(node, str):
        if node in named and node not in seen:
            seen.add(node)
            return _has_empty_items(named[node], named, seen)
        return False
    if isinstance(node, list):
        return any(_has_empty_items(branch, named, seen) for branch in node)
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if kind == "array":
        items = node.get("items")
        return _takes_no_bytes(items, named, frozenset()) or _has_empty_items(items, named, seen)
    if kind == "map":
        return _has_empty_items(node.get("values"), named, seen)
    if kind in ("record", "error"):
        seen.add(node.get("name", ""))
        return any(_has_empty_items(f["type"], named, seen) for f in node.get("fields", ()))
    return isinstance(kind, dict | list) and _has_empty_items(kind, named, seen)


def _compile(node: Any, named: Mapping[str, Any], steps: dict[str, _Step]) -> _Step:
    """A function that walks one value of ``node``, charging every block's count."""
    if isinstance(node, str):
        if node == "null":
            return lambda w: None
        if node in _VARINTS:
            return _skip_long
        if node in _FIXED_SIZES:
            size = _FIXED_SIZES[node]
            return lambda w: w.skip(size)
        if node in ("bytes", "string"):
            return lambda w: w.skip(w.long())
        if node in steps:  # a named type being compiled or done: look it up when run
            return lambda w: steps[node](w)
        if node in named:
            return _compile(named[node], named, steps)
        raise ValueError(f"unknown type {node!r}")
    if isinstance(node, list):
        branches = [_compile(branch, named, steps) for branch in node]

        def union(w: _Walk) -> None:
            index = w.long()
            if not 0 <= index < len(branches):
                raise ValueError("union index out of range")
            branches[index](w)

        return union
    kind = node.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        name = node.get("name", "")
        steps[name] = lambda w: None  # placeholder for self-references
        if kind == "enum":
            step: _Step = _skip_long
        elif kind == "fixed":
            size = int(node.get("size", 0))
            step = lambda w: w.skip(size)  # noqa: E731
        else:
            fields = [_compile(f["type"], named, steps) for f in node.get("fields", ())]

            def step(w: _Walk) -> None:
                for field in fields:
                    field(w)

        steps[name] = step
        return step
    if kind == "array":
        item = _compile(node["items"], named, steps)

        def array(w: _Walk) -> None:
            while count := w.block():
                for _ in range(count):
                    item(w)

        return array
    if kind == "map":
        value = _compile(node["values"], named, steps)

        def mapping(w: _Walk) -> None:
            while count := w.block():
                for _ in range(count):
                    w.skip(w.long())
                    value(w)

        return mapping
    return _compile(kind, named, steps)  # {"type": "int"}, logical types


def item_check(parsed: Any, named: Mapping[str, Any]) -> Callable[[bytes, int], None] | None:
    """A check of bodies written with ``parsed`` (fastavro-parsed, names in full).

    Args:
        parsed: the writer schema as fastavro parses it.
        named: fastavro's named types of that schema.

    Returns:
        ``None`` when the limit cannot refuse a body fastavro would read (no array of
        items of no bytes); otherwise ``check(data, start)``, which raises
        :class:`TooManyItems` when the body from ``start`` asks for too many items.
        Other faults in the bytes are left for the decoder to name.
    """
    if not _has_empty_items(parsed, named, set()):
        return None
    walk = _compile(parsed, named, {})

    def check(data: bytes, start: int) -> None:
        try:
            walk(_Walk(data, start))
        except TooManyItems:
            raise
        except Exception:  # bad bytes: fastavro reads them and says why
            return

    return check
