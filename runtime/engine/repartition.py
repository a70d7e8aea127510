"""Repartitioning: ``key_by`` on a key that is not the input's partitioning.

The records of such a step leave the task through an internal topic
(``<job>.<step>.repartition``), partitioned by a stable hash of their key, so that each
key's state lives in exactly one task; the task that owns partition *p* of the
internal topic reads them back and runs the steps after the ``key_by``.

Event time crosses the topic as watermark markers: each upstream task writes its
watermark to every partition of the internal topic when it advances; a downstream
partition's watermark is the minimum over the markers of all upstream tasks.
Records and markers are pickled ``("r", key, value, ts)`` and ``("w", task, wm)``.
"""

from __future__ import annotations

import pickle
import zlib
from typing import TYPE_CHECKING, Any

from runtime.engine.operators import Batch, Operator

if TYPE_CHECKING:
    from runtime.engine.task import Task

RECORD, MARK = "r", "w"


def internal_source(step: str) -> str:
    """The name of the internal source that reads a repartition step's topic."""
    return f"{step}.repartition"


def partition_for(key_bytes: bytes | None, partitions: int) -> int:
    """The internal-topic partition of a key (stable across processes and runs)."""
    return zlib.crc32(key_bytes or b"") % partitions


def encode_record(key: Any, value: Any, ts: int) -> bytes:
    """An internal-topic record."""
    return pickle.dumps((RECORD, key, value, ts), protocol=5)


def encode_marker(task_id: int, watermark: int) -> bytes:
    """An internal-topic watermark marker."""
    return pickle.dumps((MARK, task_id, watermark), protocol=5)


def decode(data: bytes) -> tuple[Any, ...]:
    """A record or marker tuple."""
    value: tuple[Any, ...] = pickle.loads(data)
    return value


class RepartitionWriter(Operator):
    """Collects a keyed step's output for the internal topic."""

    def __init__(self, name: str, task: Task, step: str) -> None:
        super().__init__(name, task)
        self.step = step
        self.pending: list[tuple[Any, Any, int]] = []

    def process(self, batch: Batch) -> None:
        """Queue records for the internal topic."""
        self.counters.records_in += len(batch)
        self.counters.records_out += len(batch)
        self.pending.extend([(k, v, t) for k, v, t, _ in batch])

    def drain(self) -> list[tuple[Any, Any, int]]:
        """Take the queued records."""
        out, self.pending = self.pending, []
        return out
