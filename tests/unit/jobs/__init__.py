"""Tests of the reference jobs against brute-force references; shared driving helpers.

The helpers only deliver input and read state; the references live in
``tests/reference``, shared with the integration tests and the bench.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from runtime.state.base import StateBackend
from runtime.state.rocksdb import RocksDBBackend
from runtime.testing import TestDriver

BACKENDS = ["memory", "rocksdb"]
CHECKPOINT_EVERY = 10  # batches

Batches = list[tuple[str, list[dict[str, Any]]]]


class DiskDriver(TestDriver):
    """A test driver whose RocksDB state keeps nothing in its cache.

    After a checkpoint every read goes to disk and unpickles, so an aggregate or a
    process function that changes state without storing it back shows up, and so
    does state that does not pickle.
    """

    def _backend(self, state: str, state_dir: Path | None) -> StateBackend:
        if state != "rocksdb":
            return super()._backend(state, state_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="shoal-jobs-")
        return RocksDBBackend(Path(self._tmp.name), cache_entries=0)

    def checkpoint(self) -> None:
        """Write every store's changes: to disk (RocksDB) or as a changelog (memory)."""
        for store in self.task.stores:
            store.checkpoint()


def arrival_batches(records: list[Any], size: int, streams: tuple[str, ...]) -> Batches:
    """Cut generated records of ``streams``, in arrival order, into one-stream batches.

    Records with corrupted bytes are left out: the driver sends decoded values.
    """
    out: Batches = []
    for rec in records:
        if rec.corrupt is not None or rec.stream not in streams:
            continue
        if out and out[-1][0] == rec.stream and len(out[-1][1]) < size:
            out[-1][1].append(rec.value)
        else:
            out.append((rec.stream, [rec.value]))
    return out


def run_batches(job: Any, batches: Batches, state: str, now_ms: int) -> DiskDriver:
    """Send every batch (checkpointing now and then), then close every window."""
    driver = DiskDriver(job, state=state, start_ms=now_ms)
    for i, (stream, values) in enumerate(batches):
        driver.send_many(stream, values)
        if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            driver.checkpoint()
    driver.advance_watermark(now_ms + 10 * 24 * 3_600_000)
    driver.checkpoint()
    return driver
