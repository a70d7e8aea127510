"""Repartitioning: ``key_by`` on a key that is not the input's partitioning.

The records of such a step leave the task through an internal topic
(``<job>.<step>.repartition``), partitioned by a stable hash of their key, so that each
key's state lives in exactly one task; the task that owns partition *p* of the
internal topic reads them back and runs the steps after the ``key_by``.

Event time crosses the topic as watermark markers: each upstream task writes its
watermark to every partition of the internal topic when it advances; a downstream
partition's watermark is the minimum over the markers of all upstream tasks.

Wire format: one tag byte, then a body in the state codec's msgpack encoding
(:mod:`runtime.state.codec`, which never runs code while decoding):

=======  ==================================  ==========================================
tag      kind                                body
=======  ==================================  ==========================================
``R``    record                              ``[key, value, event time ms]``
``W``    watermark marker                    ``[upstream task id, watermark ms]``
=======  ==================================  ==========================================

Anyone who can write to the topic can write anything to it, so :func:`decode` checks
every field and raises :class:`~runtime.api.errors.DecodeError` for what does not
fit; the task dead-letters such a record and goes on.
"""

from __future__ import annotations

import zlib
from typing import Any

from runtime.api.errors import DecodeError, RecordError, StateError
from runtime.engine.context import TaskContext
from runtime.engine.operators import Batch, Operator
from runtime.state.codec import pack, unpack
from runtime.state.serde import encode_key

RECORD, MARK = "r", "w"
RECORD_TAG, MARK_TAG = b"R", b"W"
_RECORD_BYTE, _MARK_BYTE = RECORD_TAG[0], MARK_TAG[0]
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def internal_source(step: str) -> str:
    """The name of the internal source that reads a repartition step's topic."""
    return f"{step}.repartition"


def partition_for(key_bytes: bytes | None, partitions: int) -> int:
    """The internal-topic partition of a key (stable across processes and runs)."""
    return zlib.crc32(key_bytes or b"") % partitions


def encode_record(key: Any, value: Any, ts: int) -> bytes:
    """An internal-topic record.

    Raises:
        StateError: the key or value holds a type the codec does not support.
    """
    return RECORD_TAG + pack([key, value, ts])


def encode_marker(task_id: int, watermark: int) -> bytes:
    """An internal-topic watermark marker."""
    return MARK_TAG + pack([task_id, watermark])


def decode(data: bytes | None, upstream_tasks: int | None = None) -> tuple[Any, ...]:
    """A record ``("r", key, value, ts)`` or a marker ``("w", task id, watermark)``.

    Args:
        data: the internal record's value.
        upstream_tasks: how many upstream tasks write markers; a marker naming
            another task is refused. ``None``: any task id ``>= 0``.

    Raises:
        DecodeError: the bytes are not a record or marker this version writes (no
            value, an unknown tag, a malformed body, fields of the wrong type, a key
            that cannot be a state key).
    """
    if not data:
        raise DecodeError("internal record without a value")
    tag = data[0]
    if tag != _RECORD_BYTE and tag != _MARK_BYTE:
        raise DecodeError(f"internal record with an unknown tag byte {tag:#04x}")
    try:
        body = unpack(data[1:])
    except StateError as exc:
        raise DecodeError(f"internal record does not decode: {exc}") from exc
    if tag == _RECORD_BYTE:
        if type(body) is not list or len(body) != 3 or not _is_int64(body[2]):
            raise DecodeError("internal record is not [key, value, event time]")
        key = body[0]
        try:
            encode_key(key)
        except (StateError, TypeError) as exc:
            raise DecodeError(f"internal record key cannot be a state key: {exc}") from exc
        return RECORD, key, body[1], body[2]
    if type(body) is not list or len(body) != 2 or not _is_int64(body[1]):
        raise DecodeError("watermark marker is not [task id, watermark]")
    task = body[0]
    if type(task) is not int or task < 0 or (upstream_tasks is not None and task >= upstream_tasks):
        raise DecodeError(f"watermark marker names no upstream task: {task!r}")
    return MARK, task, body[1]


def _is_int64(value: Any) -> bool:
    """Whether ``value`` is an ``int`` (not a bool) in the signed 64-bit range."""
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


class RepartitionWriter(Operator):
    """Encodes a keyed step's output for the internal topic.

    A record whose value the codec cannot encode (a type that is not plain data) is
    dead-lettered here, with where it came from, instead of failing the write.
    """

    def __init__(self, name: str, task: TaskContext, step: str) -> None:
        super().__init__(name, task)
        self.step = step
        self.pending: list[tuple[Any, bytes, int]] = []

    def process(self, batch: Batch) -> None:
        """Encode and queue records for the internal topic."""
        self.counters.records_in += len(batch)
        append = self.pending.append
        written = 0
        for rec in batch:
            k, v, t, _ = rec
            try:
                append((k, encode_record(k, v, t), t))
            except StateError as exc:
                self.fail(RecordError(f"cannot go through the internal topic: {exc}"), rec)
                continue
            written += 1
        self.counters.records_out += written

    def drain(self) -> list[tuple[Any, bytes, int]]:
        """Take the queued ``(key, encoded record, event time)`` triples."""
        out, self.pending = self.pending, []
        return out
