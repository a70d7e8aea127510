"""Damage done to encoded records in transit, for exercising dead-letter handling."""

from __future__ import annotations

import random

#: Ways a record can be corrupted, as named in ``GeneratedRecord.corrupt``.
CORRUPTIONS: tuple[str, ...] = ("garbage", "truncated", "bad_magic")

# First bytes of the two wire formats: Avro single-object (C3 01) and Confluent (00).
_MAGIC_BYTES = frozenset({0xC3, 0x00})


def corrupt_bytes(data: bytes, how: str, rng: random.Random) -> bytes:
    """Return a damaged copy of an encoded record; ``data`` itself is not changed.

    Every result is undecodable by either wire format: it never starts with a
    valid magic byte, or it is shorter than the encoding it came from.

    Args:
        data: the encoded record.
        how: ``"garbage"`` (random bytes of the same length, at least one),
            ``"truncated"`` (a strict prefix) or ``"bad_magic"`` (first byte replaced).
        rng: random stream for the damage.

    Returns:
        The corrupted bytes.

    Raises:
        ValueError: if ``how`` is not one of :data:`CORRUPTIONS`.

    >>> corrupt_bytes(b"\\xc3\\x01abc", "truncated", random.Random(0)) != b"\\xc3\\x01abc"
    True
    """
    if how == "garbage":
        body = rng.randbytes(max(1, len(data)))
        return _bad_first_byte(body[0], rng) + body[1:]
    if how == "truncated":
        return data[: rng.randrange(len(data))] if data else b""
    if how == "bad_magic":
        return _bad_first_byte(data[0] if data else 0, rng) + data[1:]
    raise ValueError(f"unknown corruption {how!r}; expected one of {CORRUPTIONS}")


def _bad_first_byte(current: int, rng: random.Random) -> bytes:
    """A byte that is neither a wire-format magic byte nor ``current``."""
    while True:
        candidate = rng.randrange(256)
        if candidate not in _MAGIC_BYTES and candidate != current:
            return bytes((candidate,))
