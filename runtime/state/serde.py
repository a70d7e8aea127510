"""Byte encodings of state keys and values.

Keys get a deterministic, self-describing encoding: the same key gives the same
bytes in every process (Python's ``hash`` is salted per process and is never
used), and decoding gives back an equal key, tuples included. Values are
encoded by :mod:`runtime.state.codec` (msgpack behind a format byte; decoding
never runs code).

Key format, one tag byte per element:

==========  =======================================================
tag         element
==========  =======================================================
``0x01``    ``None``
``0x02``    ``bytes``: content with ``00`` escaped as ``00 FF``, then ``00``
``0x03``    ``str``: UTF-8 content, escaped and terminated like bytes
``0x05``    ``tuple``: the encoded elements, then ``00``
``0x20``    the integer zero
``0x21-28`` a positive integer of 1 to 8 big-endian bytes
``0x29``    a positive integer: one length byte (9 to 255), then the bytes
``0x18-1F`` a negative integer of 8 to 1 bytes, stored as the ones' complement
            of its magnitude
``0x17``    a negative integer: ``255 - length``, then the complemented bytes
==========  =======================================================

Every element is self-delimiting, so encodings are injective, tuples nest, and
the byte order of encoded keys follows Python's order within one type (ints
among ints, strs among strs, tuples element by element). Tag ``0x00`` never
starts a key: stores reserve that prefix for their own bookkeeping.

``bool`` keys encode as the integers 0 and 1, because Python dicts already treat
``True`` and ``1`` as the same key. Floats and other types are rejected: ``1.0``
equals ``1`` but NaN equals nothing, which would make keys ambiguous.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

from runtime.api.errors import StateError
from runtime.state.codec import FORMAT, decode_value, encode_value

__all__ = [
    "decode_key",
    "decode_key_python",
    "decode_value",
    "encode_key",
    "encode_key_python",
    "encode_value",
    "FORMAT",
    "unvouched",
    "unvouched_python",
]

_NONE = 0x01
_BYTES = 0x02
_STR = 0x03
_TUPLE = 0x05
_END = 0x00
_ZERO = 0x20
_POS_BIG = 0x29
_NEG_BIG = 0x17
_MAX_SMALL_INT_BYTES = 8
_MAX_INT_BYTES = 255
_MAX_SMALL_INT = (1 << (8 * _MAX_SMALL_INT_BYTES)) - 1
_SMALL_POSITIVE_TAGS = [bytes((_ZERO + size,)) for size in range(_MAX_SMALL_INT_BYTES + 1)]

_STR_TAG = b"\x03"
_TUPLE_TAG = b"\x05"
_TERMINATOR = b"\x00"
_ESCAPED_NUL = b"\x00\xff"


def encode_key_python(key: Hashable) -> bytes:
    """Encode a state key into deterministic bytes (what :func:`encode_key` gives; the
    native encoder, when built, calls this for what it does not encode itself).

    Args:
        key: a ``str``, ``int``, ``bytes``, ``None`` or a tuple of those (nested
            tuples allowed).

    Returns:
        The encoded key; equal keys give equal bytes in every process.

    Raises:
        StateError: the key, or an element of it, has an unsupported type or is
            an integer wider than 255 bytes.
    """
    # Fast paths for str, int and flat tuples of them: keys are encoded at every
    # checkpoint and cache miss, so this function is hot.
    kind = type(key)
    if kind is str:
        return _encode_str(key)  # type: ignore[arg-type]
    if kind is int:
        return _encode_int(key)  # type: ignore[arg-type]
    if kind is tuple:
        parts = [_TUPLE_TAG]
        for element in key:  # type: ignore[attr-defined]
            element_kind = type(element)
            if element_kind is str:
                parts.append(_encode_str(element))
            elif element_kind is int:
                parts.append(_encode_int(element))
            else:
                nested = bytearray()
                _encode_into(element, nested)
                parts.append(bytes(nested))
        parts.append(_TERMINATOR)
        return b"".join(parts)
    out = bytearray()
    _encode_into(key, out)
    return bytes(out)


def decode_key_python(data: bytes) -> Any:
    """Decode bytes made by :func:`encode_key` back into an equal key (what
    :func:`decode_key` gives; the native decoder, when built, calls this for what it
    does not decode itself, and for what is no key).

    Args:
        data: one encoded key.

    Returns:
        The key; tuples come back as tuples and ``bool`` keys as ``0``/``1``.

    Raises:
        StateError: the bytes are not a valid encoded key.
    """
    # Fast path for a plain str key (the tag, UTF-8 without NUL bytes, the terminator):
    # keys are decoded for every changelog record restored.
    if data[:1] == _STR_TAG and data.find(_TERMINATOR) == len(data) - 1:
        try:
            return data[1:-1].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise StateError(f"malformed state key {data!r}") from exc
    try:
        key, pos = _decode_at(data, 0)
    except (IndexError, ValueError) as exc:
        raise StateError(f"malformed state key {data!r}") from exc
    if pos != len(data):
        raise StateError(f"malformed state key {data!r}: trailing bytes")
    return key


def _encode_into(key: object, out: bytearray) -> None:
    """Append the encoding of one key element to ``out``."""
    if key is None:
        out.append(_NONE)
    elif isinstance(key, str):
        out += _encode_str(key)
    elif isinstance(key, int):  # bool included: True == 1 as a dict key
        out += _encode_int(int(key))
    elif isinstance(key, bytes):
        out.append(_BYTES)
        out += key.replace(_TERMINATOR, _ESCAPED_NUL)
        out.append(_END)
    elif isinstance(key, tuple):
        out.append(_TUPLE)
        for element in key:
            _encode_into(element, out)
        out.append(_END)
    else:
        raise StateError(
            f"unsupported state key type {type(key).__name__}: "
            "use str, int, bytes, None or tuples of them"
        )


def _encode_str(text: str) -> bytes:
    """Encode one string element."""
    return (
        _STR_TAG
        + str.encode(text, "utf-8", "surrogatepass").replace(_TERMINATOR, _ESCAPED_NUL)
        + _TERMINATOR
    )


def _encode_int(value: int) -> bytes:
    """Encode an integer so that byte order follows numeric order."""
    if 0 < value <= _MAX_SMALL_INT:
        size = (value.bit_length() + 7) >> 3
        return _SMALL_POSITIVE_TAGS[size] + value.to_bytes(size, "big")
    if value == 0:
        return b"\x20"
    magnitude = -value if value < 0 else value
    size = (magnitude.bit_length() + 7) // 8
    if size > _MAX_INT_BYTES:
        raise StateError(f"integer state key is wider than {_MAX_INT_BYTES} bytes")
    if value > 0:
        body = magnitude.to_bytes(size, "big")
        if size <= _MAX_SMALL_INT_BYTES:
            return bytes((_ZERO + size,)) + body
        return bytes((_POS_BIG, size)) + body
    # Ones' complement of the magnitude: larger magnitudes sort first.
    body = ((1 << (8 * size)) - 1 - magnitude).to_bytes(size, "big")
    if size <= _MAX_SMALL_INT_BYTES:
        return bytes((_ZERO - size,)) + body
    return bytes((_NEG_BIG, _MAX_INT_BYTES - size)) + body


def _decode_at(data: bytes, pos: int) -> tuple[Any, int]:
    """Decode the element starting at ``pos``; return it and the next position."""
    tag = data[pos]
    pos += 1
    if tag == _STR:
        raw, pos = _read_escaped(data, pos)
        return raw.decode("utf-8", "surrogatepass"), pos
    if _NEG_BIG <= tag <= _POS_BIG:
        return _decode_int(data, tag, pos)
    if tag == _BYTES:
        return _read_escaped(data, pos)
    if tag == _TUPLE:
        items: list[Any] = []
        while data[pos] != _END:
            item, pos = _decode_at(data, pos)
            items.append(item)
        return tuple(items), pos + 1
    if tag == _NONE:
        return None, pos
    raise ValueError(f"unknown key tag {tag:#04x}")


def _decode_int(data: bytes, tag: int, pos: int) -> tuple[int, int]:
    """Decode an integer whose tag byte has been read."""
    if tag == _ZERO:
        return 0, pos
    if tag == _POS_BIG:
        size = data[pos]
        pos += 1
    elif tag == _NEG_BIG:
        size = _MAX_INT_BYTES - data[pos]
        pos += 1
    else:
        size = abs(tag - _ZERO)
    body = data[pos : pos + size]
    if len(body) != size:
        raise ValueError("truncated integer")
    number = int.from_bytes(body, "big")
    if tag > _ZERO:
        return number, pos + size
    return -((1 << (8 * size)) - 1 - number), pos + size


def _read_escaped(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read escaped content up to its terminator; return it unescaped and the next position."""
    start = pos
    while True:
        end = data.index(_END, pos)
        if end + 1 < len(data) and data[end + 1] == 0xFF:
            pos = end + 2
            continue
        return data[start:end].replace(_ESCAPED_NUL, _TERMINATOR), end + 1


def unvouched_python(chunk: dict[bytes, bytes | None], reserved: int, fmt: int) -> list[Any]:
    """Every key of ``chunk``: without the native walk, each entry is checked in Python."""
    return list(chunk)


encode_key: Callable[[Hashable], bytes] = encode_key_python
decode_key: Callable[[bytes], Any] = decode_key_python
#: The keys of a restore chunk whose entry must be checked by decoding it in Python
#: (the native walk vouches for plain keys and values without decoding them).
unvouched: Callable[[dict[bytes, bytes | None], int, int], list[Any]] = unvouched_python

try:  # the native encoder and decoder (native/, built by `make`): the same bytes, faster
    from shoal_native import KeyDecoder as _KeyDecoder
    from shoal_native import KeyEncoder as _KeyEncoder
    from shoal_native import unvouched as _unvouched
except ImportError:  # pragma: no cover - depends on the machine
    _KeyEncoder = _KeyDecoder = _unvouched = None

if _KeyEncoder is not None and os.environ.get("SHOAL_NATIVE_KEYS", "1") != "0":
    # What they do not handle themselves (ints beyond 64 bits, unsupported types, bytes
    # that are no key) goes to the Python functions above, which also raise the errors.
    encode_key = _KeyEncoder(encode_key_python)
    decode_key = _KeyDecoder(decode_key_python)
    unvouched = _unvouched
