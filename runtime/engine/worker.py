"""Where offsets commit: the worker loop that drives a task from a source to sinks.

One loop iteration polls a batch from the source, groups it by partition, runs the
task over each group, advances event time, encodes what the sinks and the
dead-letter output collected and hands it to the sink writer. Every
``commit_interval_ms`` the writer is flushed and only then are the input offsets
committed, so a crash replays input but never loses it (at-least-once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.api.bindings import Bindings
from runtime.api.io import CodecFactory, SourceReader
from runtime.api.job import Job
from runtime.engine.task import DeadLetter, Task, wall_clock_ms
from runtime.state.base import StateBackend


class Writer(Protocol):
    """What the worker needs from a sink writer."""

    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def flush(self, timeout_s: float = 60.0) -> None: ...


Committer = Callable[[dict[tuple[str, int], int]], None]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Tuning of the worker loop."""

    batch_size: int = 10_000
    poll_timeout_s: float = 0.1
    commit_interval_ms: int = 1_000


def key_bytes(key: Any) -> bytes | None:
    """The message key for a record key."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, tuple):
        return "|".join(str(k) for k in key).encode()
    return str(key).encode()


class Worker:
    """Runs ``job`` in one task over every partition this worker is assigned."""

    def __init__(
        self,
        job: Job,
        bindings: Bindings,
        writer: Writer,
        codecs: CodecFactory,
        backend: StateBackend,
        *,
        options: WorkerOptions = WorkerOptions(),
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.job = job
        self.bindings = bindings
        self.writer = writer
        self.codecs = codecs
        self.options = options
        self.clock = clock
        self.task = Task(job, 0, codecs, backend, clock)
        self.topic_source = bindings.topic_sources()
        self.pending_offsets: dict[tuple[str, int], int] = {}
        self._last_commit = clock()
        self._sink_codecs = {
            name: (bindings.sinks[name], codecs(node.schema))
            for name, node in ((s.name, s) for s in job.sinks)
        }
        self._dead_codec = codecs("DeadLetter")
        self.records_read = 0

    # -- assignment -----------------------------------------------------------------
    def on_assign(self, pairs: list[tuple[str, int]]) -> None:
        """Partitions were assigned: start tracking their watermarks."""
        for topic, partition in pairs:
            self.task.add_partition(self.topic_source[topic], partition)

    def on_revoke(self, pairs: list[tuple[str, int]], commit: Committer) -> None:
        """Partitions are going: flush outputs and commit what was processed."""
        self.commit(commit)
        for topic, partition in pairs:
            self.task.tracker.remove_partition(self.topic_source[topic], partition)

    # -- loop -----------------------------------------------------------------------
    def step(self, source: SourceReader, commit: Committer) -> int:
        """One iteration: poll, process, write; commit when due. Returns records read."""
        msgs = source.poll(self.options.batch_size, self.options.poll_timeout_s)
        if msgs:
            groups: dict[tuple[str, int], list[Any]] = {}
            for m in msgs:
                tp = (m.topic(), m.partition())
                group = groups.get(tp)
                if group is None:
                    groups[tp] = [m]
                else:
                    group.append(m)
            ingest, offsets, names = self.task.ingest, self.pending_offsets, self.topic_source
            for (topic, partition), group in groups.items():
                ingest(names[topic], partition, group)
                offsets[(topic, partition)] = group[-1].offset() + 1
            self.records_read += len(msgs)
        self.task.advance()
        self.write_outputs()
        if self.clock() - self._last_commit >= self.options.commit_interval_ms:
            self.commit(commit)
        return len(msgs)

    def write_outputs(self) -> None:
        """Encode and queue what the sinks and the dead-letter output collected."""
        write = self.writer.write
        for name, records in self.task.drain_sinks().items():
            if not records:
                continue
            topic, codec = self._sink_codecs[name]
            encode = codec.encode
            for k, v, t in records:
                write(topic, key_bytes(k), encode(v), t)
        for dl in self.task.drain_dead_letters():
            self._write_dead_letter(dl)

    def _write_dead_letter(self, dl: DeadLetter) -> None:
        value = dl.value
        if value is not None and not isinstance(value, bytes):
            value = json.dumps(value, default=repr, sort_keys=True).encode()
        record = {
            "job": dl.job,
            "step": dl.step,
            "error_class": dl.error_class,
            "error_message": dl.error_message,
            "source_topic": dl.topic,
            "source_partition": dl.partition,
            "source_offset": dl.offset,
            "original_key": dl.key,
            "original_value": value,
            "failed_ms": dl.failed_ms,
        }
        headers = [
            ("shoal.error.class", dl.error_class.encode()),
            ("shoal.error.message", dl.error_message.encode()[:1000]),
            ("shoal.job", dl.job.encode()),
            ("shoal.step", dl.step.encode()),
            ("shoal.source.topic", (dl.topic or "").encode()),
            ("shoal.source.partition", str(dl.partition).encode()),
            ("shoal.source.offset", str(dl.offset).encode()),
        ]
        self.writer.write(
            self.bindings.dead_letters,
            dl.key,
            self._dead_codec.encode(record),
            dl.failed_ms,
            headers,
        )

    def commit(self, commit: Committer) -> None:
        """Flush every queued output, then commit the input offsets (at-least-once)."""
        self.write_outputs()
        self.writer.flush()
        for store in self.task.stores:
            # Durable locally with the offsets that follow; the changelog topic that makes
            # state survive the loss of this folder comes with exactly-once checkpoints.
            store.checkpoint()
        if self.pending_offsets:
            commit(dict(self.pending_offsets))
            self.pending_offsets.clear()
        self._last_commit = self.clock()

    def run(
        self,
        source: SourceReader,
        commit: Committer,
        *,
        should_stop: Callable[[], bool],
        on_tick: Callable[[Worker], None] | None = None,
        tick_s: float = 1.0,
    ) -> None:
        """Loop until ``should_stop()``; then flush and commit (graceful shutdown)."""
        next_tick = time.monotonic() + tick_s
        try:
            while not should_stop():
                self.step(source, commit)
                if on_tick is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick_s
                    on_tick(self)
        finally:
            self.commit(commit)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters of the task."""
        return self.task.counters()
