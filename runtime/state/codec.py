"""The byte encoding of state values and internal records: msgpack, never code.

Everything Shoal writes to a changelog, a local RocksDB store or an internal
(repartition) topic is plain data in `msgpack <https://msgpack.org>`_ form, read
back by a decoder that builds nothing but plain Python values and the few
registered state types below. Decoding hostile bytes gives a one-line
:class:`~runtime.api.errors.StateFormatError`, never a call of anything named by
the data (the old format imported and called whatever its bytes named).

A state value is one format byte, then the msgpack body:

=========  ======================================================================
byte       format
=========  ======================================================================
``0x01``   format 1: the msgpack body described here
``0x80``   the old format (before format 1): refused with how to migrate, never loaded
=========  ======================================================================

Plain types map to msgpack's own: ``None``, ``bool``, ``int`` (64-bit), ``float``
(IEEE double, so NaN and infinities round-trip), ``str``, ``bytes``, ``list`` and
``dict`` with keys of any supported hashable type. What msgpack lacks is an array
whose first element is a marker (an empty ext value of the code below), or an ext
value of its own:

========  =========================================  ============================
ext code  Python                                     body
========  =========================================  ============================
``1``     ``tuple``                                  marker, then the elements
``2``     ``set``                                    marker, then the elements
``3``     ``frozenset``                              marker, then the elements
``4``     a registered state type (:data:`REGISTRY`)  marker, name, then its fields
          (``ddsketch``; ``window`` of
          :mod:`runtime.state.records`)
``5``     ``int`` beyond 64 bits                     ext bytes: signed big-endian
========  =========================================  ============================

A marker array rather than an ext value holding a nested encoding keeps the
elements in the one msgpack stream: encoding a tuple costs one Python call
instead of a nested encoder run, which matters for accumulators made of many
small tuples. Tuples stay tuples everywhere, dict keys and nesting included.

Only exact types are accepted: subclasses (``OrderedDict``, ``IntEnum``,
``defaultdict``...) and anything else raise :class:`~runtime.api.errors.StateError`
naming the type and what is supported, when the value is encoded (at the
checkpoint that would have written it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from runtime.api.aggregates import Sketch, sketch_fields, sketch_from_fields
from runtime.api.errors import StateError, StateFormatError
from runtime.state.records import WindowState, window_fields, window_from_fields

__all__ = [
    "FORMAT",
    "REGISTRY",
    "StateType",
    "decode_value",
    "encode_value",
    "pack",
    "register",
    "unpack",
]

FORMAT = 0x01
"""The format byte that starts every state value this version writes."""

_FORMAT_BYTE = bytes((FORMAT,))
_OLD_FORMAT_BYTE = 0x80

MIGRATE_HINT = (
    "this version never loads that format, which could run code; migrate by starting the job "
    "with a new --group, or by deleting the <group>.*.changelog topics and the local state "
    "folder"
)

_TUPLE, _SET, _FROZENSET, _OBJECT, _BIGINT = 1, 2, 3, 4, 5
_MARK_TUPLE = msgpack.ExtType(_TUPLE, b"")
_MARK_SET = msgpack.ExtType(_SET, b"")
_MARK_FROZENSET = msgpack.ExtType(_FROZENSET, b"")
_MARK_OBJECT = msgpack.ExtType(_OBJECT, b"")
_INT64_MIN = -(1 << 63)
_BIGINT_MAX_BYTES = 1024

SUPPORTED = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, "
    "or a registered state type"
)


class _Marker:
    """What a marker decodes to before its array turns it into a tuple, set or object.

    Only crafted or corrupt bytes put a marker anywhere else. Finding those would cost
    every decode a walk or a counter; instead such a stray marker stays in the value
    as an inert object that encodes back to the same marker, so it can neither run
    anything nor make a later checkpoint fail (a stray marker at the top level fails
    the decode). A job function that meets one treats it as any unexpected value.
    """

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code

    def __repr__(self) -> str:
        return f"<marker {self.code}>"


_TUPLE_SEEN = _Marker(_TUPLE)
_SET_SEEN = _Marker(_SET)
_FROZENSET_SEEN = _Marker(_FROZENSET)
_OBJECT_SEEN = _Marker(_OBJECT)


@dataclass(frozen=True, slots=True)
class StateType:
    """How a class that is not plain data is stored: a name and plain fields.

    Args:
        name: the stable name written with the value (renaming it is a migration).
        cls: the exact class; subclasses are not covered.
        to_fields: the object's state as a list of plain values.
        from_fields: rebuilds an equal object; raises ``ValueError``/``TypeError``
            on fields it does not accept.
    """

    name: str
    cls: type
    to_fields: Callable[[Any], list[Any]]
    from_fields: Callable[[list[Any]], Any]


REGISTRY: dict[str, StateType] = {}
"""Registered state types by name: the only classes a decode ever instantiates."""

_BY_CLASS: dict[type, StateType] = {}


def register(state_type: StateType) -> None:
    """Add a state type to :data:`REGISTRY`.

    Raises:
        StateError: the name or the class is registered already.
    """
    if state_type.name in REGISTRY or state_type.cls in _BY_CLASS:
        raise StateError(f"state type {state_type.name!r} is registered already")
    REGISTRY[state_type.name] = state_type
    _BY_CLASS[state_type.cls] = state_type


register(StateType("ddsketch", Sketch, sketch_fields, sketch_from_fields))
register(StateType("window", WindowState, window_fields, window_from_fields))


def _default(obj: Any) -> Any:
    """Encode what msgpack does not know natively (see the module docstring)."""
    kind = type(obj)
    if kind is tuple:
        return [_MARK_TUPLE, *obj]
    if kind is set:
        return [_MARK_SET, *obj]
    if kind is frozenset:
        return [_MARK_FROZENSET, *obj]
    if kind is _Marker:  # a stray one, from crafted bytes (see _Marker)
        return msgpack.ExtType(obj.code, b"")
    if kind is int:  # only ints beyond 64 bits reach here
        size = (obj.bit_length() + 8) // 8
        if size > _BIGINT_MAX_BYTES:
            raise StateError(f"integer of {obj.bit_length()} bits is too large for state")
        return msgpack.ExtType(_BIGINT, obj.to_bytes(size, "big", signed=True))
    state_type = _BY_CLASS.get(kind)
    if state_type is not None:
        return [_MARK_OBJECT, state_type.name, state_type.to_fields(obj)]
    raise StateError(
        f"unsupported state value type {kind.__module__}.{kind.__qualname__}: use {SUPPORTED} "
        f"({', '.join(sorted(REGISTRY))})"
    )


def _ext_hook(code: int, data: bytes) -> Any:
    """Decode an ext value: a marker, or a big integer; anything else is refused."""
    if code == _TUPLE:
        return _TUPLE_SEEN
    if code == _SET:
        return _SET_SEEN
    if code == _FROZENSET:
        return _FROZENSET_SEEN
    if code == _OBJECT:
        return _OBJECT_SEEN
    if code == _BIGINT and 8 <= len(data) <= _BIGINT_MAX_BYTES:
        return int.from_bytes(data, "big", signed=True)
    raise ValueError(f"unknown ext code {code} of {len(data)} bytes")


def _list_hook(items: list[Any]) -> Any:
    """Turn a marker array back into its tuple, set, frozenset or registered object."""
    if not items or type(items[0]) is not _Marker:
        return items
    mark = items[0]
    if mark is _TUPLE_SEEN:
        return tuple(items[1:])
    if mark is _SET_SEEN:
        return set(items[1:])
    if mark is _FROZENSET_SEEN:
        return frozenset(items[1:])
    if len(items) != 3 or type(items[1]) is not str or type(items[2]) is not list:
        raise ValueError("malformed registered state value")
    state_type = REGISTRY.get(items[1])
    if state_type is None:
        raise ValueError(f"unknown state type {items[1]!r} (registered: {sorted(REGISTRY)})")
    return state_type.from_fields(items[2])


_local = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's encoder (a packer is not safe to share between threads)."""
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(
            default=_default, strict_types=True, use_bin_type=True, datetime=False
        )
    return packer


def pack(value: Any) -> bytes:
    """Encode a value as a msgpack body (no format byte).

    Raises:
        StateError: the value holds an unsupported type, an integer too large, or
            nesting deeper than the encoder's limit.
    """
    try:
        data: bytes = _packer().pack(value)
    except StateError:
        _reset()
        raise
    except Exception as exc:  # msgpack raises TypeError, ValueError, OverflowError...
        _reset()
        raise StateError(
            f"state value of type {type(value).__name__} cannot be encoded: {exc}"
        ) from exc
    return data


def _reset() -> None:
    """Drop this thread's encoder after a failed encode (its buffer may hold a part)."""
    _local.__dict__.pop("packer", None)


def unpack(data: bytes | memoryview) -> Any:
    """Decode a msgpack body made by :func:`pack`.

    Raises:
        StateFormatError: the bytes are not a complete, valid body.
    """
    try:
        value = msgpack.unpackb(
            data,
            ext_hook=_ext_hook,
            list_hook=_list_hook,
            strict_map_key=False,
            raw=False,
            timestamp=1,  # a msgpack timestamp decodes to a plain float
        )
    except Exception as exc:  # msgpack raises ValueError, TypeError, ExtraData...
        detail = str(exc) or "invalid bytes"
        raise StateFormatError(f"malformed encoded value: {type(exc).__name__}: {detail}") from exc
    if type(value) is _Marker:
        raise StateFormatError("malformed encoded value: a stray marker")
    return value


def encode_value(value: Any) -> bytes:
    """Encode a state value: the format byte, then its msgpack body.

    Raises:
        StateError: the value holds a type that is not supported (the message names
            it and what is), or cannot be encoded for another reason.
    """
    return _FORMAT_BYTE + pack(value)


def decode_value(data: bytes) -> Any:
    """Decode a state value made by :func:`encode_value`.

    Raises:
        StateFormatError: the bytes are in the old format (the message says
            how to migrate), in an unknown format, or corrupt.
    """
    if not data or data[0] != FORMAT:
        raise StateFormatError(_format_problem(data))
    return unpack(data[1:])  # a copy, but cheaper than a memoryview slice


def _format_problem(data: bytes) -> str:
    """Why bytes that do not start with the format byte are refused."""
    if not data:
        return "empty state value"
    if data[0] == _OLD_FORMAT_BYTE:
        return f"state value in the old format (first byte 0x80): {MIGRATE_HINT}"
    return f"state value in an unknown format (first byte {data[0]:#04x}, expected {FORMAT:#04x})"
