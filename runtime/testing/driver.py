"""The test driver (see the package docstring for an example)."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.api.errors import ConfigError
from runtime.api.job import Job
from runtime.engine.operators import Batch, Operator
from runtime.engine.task import DeadLetter, Task
from runtime.engine.windows import WindowOperator
from runtime.state.base import StateBackend

# The test driver's entry time: a fixed, valid epoch ms so runs are reproducible.
DEFAULT_START_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class TestRecord:
    """A record as the driver saw it: a stand-in for a Kafka message (same accessors)."""

    __test__ = False  # not a pytest test class

    topic_name: str
    partition_no: int
    offset_no: int
    key_bytes: bytes | None
    value_bytes: bytes | None
    ts: int

    def topic(self) -> str:
        """Source name."""
        return self.topic_name

    def partition(self) -> int:
        """Partition."""
        return self.partition_no

    def offset(self) -> int:
        """Offset."""
        return self.offset_no

    def key(self) -> bytes | None:
        """Key bytes."""
        return self.key_bytes

    def value(self) -> bytes | None:
        """Value bytes."""
        return self.value_bytes

    def timestamp(self) -> tuple[int, int]:
        """(create-time type, ms)."""
        return (1, self.ts)


class _Capture(Operator):
    """Collects a late side output for the driver."""

    def __init__(self, name: str, task: Task, into: list[Any]) -> None:
        super().__init__(name, task)
        self.into = into

    def process(self, batch: Batch) -> None:
        self.counters.records_in += len(batch)
        self.into.extend(batch)


class TestDriver:
    """Runs ``job`` in one task with a manual processing clock.

    Args:
        job: the job to drive.
        state: ``"memory"`` or ``"rocksdb"`` (in a temporary folder unless ``state_dir``).
        state_dir: folder for RocksDB state.
        start_ms: the processing clock's start (epoch ms).
        partitions: how many partitions each source has (records go to ``partition=``).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        job: Job,
        *,
        state: str = "memory",
        state_dir: Path | None = None,
        start_ms: int = DEFAULT_START_MS,
        partitions: int = 1,
    ) -> None:
        self.job = job
        self._now = start_ms
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.backend = self._backend(state, state_dir)
        self.codecs = _codecs(job)
        self.task = Task(job, 0, self.codecs, self.backend, clock=lambda: self._now)
        self._outputs: dict[str, list[tuple[Any, Any, int]]] = defaultdict(list)
        self._late: dict[str, list[Any]] = defaultdict(list)
        self._dead: list[DeadLetter] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        for name, op in self.task.ops.items():
            if isinstance(op, WindowOperator):
                op.late_children.append(_Capture(f"{name}.capture", self.task, self._late[name]))
        for source in self.task.sources:
            for p in range(partitions):
                self.task.add_partition(source, p)

    def _backend(self, state: str, state_dir: Path | None) -> StateBackend:
        if state == "memory":
            from runtime.state.memory import MemoryBackend

            return MemoryBackend()
        if state == "rocksdb":
            from runtime.state.rocksdb import RocksDBBackend

            if state_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="shoal-driver-")
                state_dir = Path(self._tmp.name)
            return RocksDBBackend(state_dir)
        raise ConfigError(f"unknown state backend {state!r}: use 'memory' or 'rocksdb'")

    # -- input ----------------------------------------------------------------------
    def send(
        self, source: str, value: Any, *, timestamp_ms: int | None = None, partition: int = 0
    ) -> None:
        """Send one record (its own batch); event time from ``timestamp_ms`` or the job."""
        self.send_many(source, [value], timestamps=[timestamp_ms], partition=partition)

    def send_many(
        self,
        source: str,
        values: Iterable[Any],
        *,
        timestamps: Iterable[int | None] | None = None,
        partition: int = 0,
    ) -> None:
        """Send records as one batch, then let event time advance.

        Each value goes through the source's real codec (encoded, then decoded as a
        worker would), so a record that does not match the source's schema fails here,
        in the test, and the job sees exactly what it would see in production.

        Raises:
            RecordError: a value does not match the source's schema.
        """
        self._check_source(source)
        vals = self._through_codec(source, list(values))
        stamps = list(timestamps) if timestamps is not None else None
        origins = [self._origin(source, partition, None, None) for _ in vals]
        self.task.ingest_values(source, partition, vals, stamps, origins)
        self._collect(self.task.advance())

    def _through_codec(self, source: str, values: list[Any]) -> list[Any]:
        schema = next(n.schema for n in self.job.sources if n.name == source)
        if not schema or not self.codecs.knows(schema):
            return values  # a schema-less source, or one named only for the test
        codec = self.codecs(schema)
        out, failures = codec.decode_batch([codec.encode(v) for v in values])
        if failures:
            raise failures[0][1]
        return list(out)

    def send_raw(
        self, source: str, value: bytes | None, *, key: bytes | None = None, partition: int = 0
    ) -> None:
        """Send encoded bytes, decoded with the source's codec (to exercise bad input)."""
        self._check_source(source)
        rec = self._origin(source, partition, key, value)
        self.task.ingest(source, partition, [rec])
        self._collect(self.task.advance())

    def _origin(
        self, source: str, partition: int, key: bytes | None, value: bytes | None
    ) -> TestRecord:
        off = self._offsets[(source, partition)]
        self._offsets[(source, partition)] = off + 1
        return TestRecord(source, partition, off, key, value, self._now)

    def _check_source(self, source: str) -> None:
        if source not in self.task.sources:
            raise ConfigError(
                f"job {self.job.name!r} has no source {source!r}; "
                f"sources: {', '.join(sorted(self.task.sources))}"
            )

    # -- time -----------------------------------------------------------------------
    def advance_watermark(self, watermark_ms: int) -> None:
        """Move event time to at least ``watermark_ms`` and fire what is due."""
        self._collect(self.task.advance(force_watermark_ms=watermark_ms))

    def advance_time(self, ms: int) -> None:
        """Move the processing clock forward by ``ms`` and fire what is due."""
        self._now += ms
        self._collect(self.task.advance())

    @property
    def processing_time_ms(self) -> int:
        """The manual processing clock."""
        return self._now

    @property
    def watermark_ms(self) -> int:
        """The task's watermark."""
        return self.task.watermark

    def _collect(self, _wm: int) -> None:
        for name, records in self.task.drain_sinks().items():
            self._outputs[name].extend(records)
        self._dead.extend(self.task.drain_dead_letters())

    # -- output ---------------------------------------------------------------------
    def output(self, sink: str) -> list[Any]:
        """Values written to ``sink`` so far."""
        return [v for _, v, _ in self.records(sink)]

    def records(self, sink: str) -> list[tuple[Any, Any, int]]:
        """``(key, value, event_time_ms)`` written to ``sink`` so far."""
        if sink not in self.task.sinks:
            raise ConfigError(
                f"job {self.job.name!r} has no sink {sink!r}; "
                f"sinks: {', '.join(sorted(self.task.sinks))}"
            )
        return list(self._outputs[sink])

    def late(self, window_step: str) -> list[Any]:
        """Values of records that were too late for ``window_step``."""
        if window_step not in self._late:
            raise ConfigError(f"job {self.job.name!r} has no window step {window_step!r}")
        return [v for _, v, _, _ in self._late[window_step]]

    def dead_letters(self) -> list[DeadLetter]:
        """Dead letters so far."""
        return list(self._dead)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters (``in = processed + late + dead_lettered``)."""
        return self.task.counters()

    def close(self) -> None:
        """Release state."""
        self.task.close()
        self.backend.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _codecs(job: Job) -> Any:
    from connectors.codecs import codec_factory

    return codec_factory(job.schema_dirs)
