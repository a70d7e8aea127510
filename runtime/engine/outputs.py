"""Where step outputs go: sink records, internal topics and dead letters.

After every batch (and as the first step of a checkpoint) the worker hands its tasks
to :meth:`OutputWriter.write`, which takes what each task collected and queues it on
the transport (into the open transaction, with exactly-once):

* **sink records**, encoded with the sink's codec and keyed with
  :func:`~runtime.engine.topics.message_key`, or handed to an external sink
  (webhook, PostgreSQL, Redis), which writes them when the checkpoint flushes it. A
  record that does not fit its sink's schema is not written: it becomes a dead letter
  of the sink (see :mod:`runtime.engine.encoding`), in the same transaction;
* **repartitioned records** and **watermark markers** of repartitioning ``key_by``
  steps, to their internal topics (see :mod:`runtime.engine.repartition`);
* **dead letters**, as ``DeadLetter`` records with headers naming the error, the
  step and where the record came from.

Records a topic would refuse (too large, a timestamp out of the broker's range) are
not written: they become dead letters of the step that wrote them. A dead letter its
own topic refuses is written again without the original key and value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from runtime.api.bindings import Bindings
from runtime.api.errors import OutputRefused
from runtime.api.io import CodecFactory, ExternalSink, RefusedWrite
from runtime.api.job import Job
from runtime.engine.encoding import encode_sink_records
from runtime.engine.operators import Operator
from runtime.engine.ports import Transport
from runtime.engine.repartition import encode_marker, partition_for
from runtime.engine.stats import LATENCY_BOUNDS_S, Histogram
from runtime.engine.task import DeadLetter, Task
from runtime.engine.topics import key_bytes, repartition_topic

__all__ = ["OutputWriter"]


class OutputWriter:
    """Encodes and routes a worker's outputs (see the module docstring).

    Args:
        job: the job (names dead letters).
        bindings: topics of sinks and dead letters.
        transport: what the records are written through.
        codecs: the job's codecs.
        external: sinks outside Kafka, by sink name.
        app: names internal topics (the consumer group).
        internal_partitions: partitions of the internal topics of repartitioning
            steps (``None``: the job has none, or repartitions in process).
        clock: processing clock in epoch ms.
    """

    def __init__(
        self,
        job: Job,
        bindings: Bindings,
        transport: Transport,
        codecs: CodecFactory,
        external: Mapping[str, ExternalSink],
        *,
        app: str,
        internal_partitions: int | None,
        clock: Callable[[], int],
    ) -> None:
        self.job = job
        self.bindings = bindings
        self.transport = transport
        self.external = dict(external)
        self.app = app
        self.internal_partitions = internal_partitions
        self.clock = clock
        #: Event-to-sink latency (wall clock at the write minus event time), for /metrics.
        self.sink_latency = Histogram(LATENCY_BOUNDS_S)
        self._sink_codecs = {
            s.name: (bindings.sinks[s.name], s.schema, codecs.sink(s.name, s.schema))
            for s in job.sinks
            if s.name not in self.external
        }
        self._dead_codec = codecs("DeadLetter")
        # Refusals taken while writing dead letters that belong to other outputs.
        self._refused_later: list[RefusedWrite] = []

    def write(self, tasks: Iterable[Task]) -> bool:
        """Encode and queue what the sinks and the dead-letter output collected.

        Returns:
            Whether anything was queued (then there is something to commit).
        """
        wrote = False
        write_many = self.transport.write_many
        now_s = self.clock() / 1000
        for task in tasks:
            for name, records in task.drain_sinks().items():
                if not records:
                    continue
                wrote = True
                self.sink_latency.observe_many(now_s - rec[2] / 1000 for rec in records)
                external = self.external.get(name)
                if external is not None:
                    external.write([(k, v, t) for k, v, t, _ in records])
                    continue
                topic, schema, codec = self._sink_codecs[name]
                encoded, _ = encode_sink_records(task, name, schema, codec, records)
                if encoded:
                    write_many(topic, encoded)
            if self.internal_partitions is not None:
                wrote = self._write_internal(task, self.internal_partitions) or wrote
            self._dead_letter_refused(task)
            for dl in task.drain_dead_letters():
                wrote = True
                self.write_dead_letter(dl)
        return wrote

    def flush_external(self) -> None:
        """Make external sinks' writes durable; what they gave up on is dead-lettered."""
        for name, sink in self.external.items():
            sink.flush()
            for rec in sink.drain_undelivered():
                dl = DeadLetter(
                    job=self.job.name,
                    step=name,
                    error_class=rec.error_class,
                    error_message=rec.error_message,
                    topic=None,
                    partition=None,
                    offset=None,
                    key=rec.key,
                    value=rec.value,
                    failed_ms=self.clock(),
                )
                self.write_dead_letter(dl)

    def _dead_letter_refused(self, task: Task) -> None:
        """Output records their topic would refuse become dead letters of the step that
        wrote them (a sink, or a repartitioning ``key_by``'s ``.out``), counted there."""
        refused = self._refused_later + self.transport.take_refused()
        self._refused_later = []
        if not refused:
            return
        steps = {topic: name for name, (topic, _, _) in self._sink_codecs.items()}
        writers = {repartition_topic(self.app, step): step for step in task.writers}
        now = self.clock()
        for r in refused:
            op: Operator
            if r.topic in steps:
                op = task.sinks[steps[r.topic]]
            elif r.topic in writers:
                op = task.writers[writers[r.topic]]
            else:
                # A state change the topic refuses cannot be dead-lettered; changelog
                # records are small, so this is a misconfigured topic. (Dead letters
                # are handled as they are written: see write_dead_letter.)
                raise OutputRefused(r.reason)
            op.counters.dead_lettered += 1
            op.counters.records_out -= 1
            task.dead_letters.append(
                DeadLetter(
                    job=self.job.name,
                    step=op.name,
                    error_class=OutputRefused.__name__,
                    error_message=r.reason[:1000],
                    topic=None,
                    partition=None,
                    offset=None,
                    key=r.key,
                    value=r.value,
                    failed_ms=now,
                )
            )

    def _write_internal(self, task: Task, partitions: int) -> bool:
        """Records of repartitioning steps, and watermark markers, to internal topics."""
        wrote = False
        write = self.transport.write
        for step, records in task.drain_internal().items():
            if not records:
                continue
            wrote = True
            topic = repartition_topic(self.app, step)
            for k, data, t in records:
                kb = key_bytes(k)
                write(topic, kb, data, t, None, partition_for(kb, partitions))
        for step, wm in task.markers_due().items():
            wrote = True
            marker = encode_marker(task.task_id, wm)
            topic = repartition_topic(self.app, step)
            for q in range(partitions):
                write(topic, None, marker, None, None, q)
        return wrote

    def write_dead_letter(self, dl: DeadLetter) -> None:
        """Write one dead letter.

        A dead letter holds the original key and value, so a record near the broker's
        size limit (or with a huge key, which the dead letter's own key repeats) makes
        one its topic refuses. Failing the worker would fail it again on every restart,
        at the same record. Such a dead letter is written again without the original
        key and value: it still names the source topic, partition and offset they can
        be read back from, and its message says what was left out and why.

        Raises:
            OutputRefused: the dead-letter topic refuses even that (it is misconfigured).
        """
        self._write_dead_record(dl)
        refused = self._take_dead_refused()
        if not refused:
            return
        if dl.key is None and dl.value is None:
            raise OutputRefused(refused[0].reason)
        note = f" [original key and value left out: {refused[0].reason}]"
        self._write_dead_record(
            replace(dl, key=None, value=None, error_message=dl.error_message + note)
        )
        refused = self._take_dead_refused()
        if refused:
            raise OutputRefused(refused[0].reason)

    def _take_dead_refused(self) -> list[RefusedWrite]:
        """Refusals of the dead-letter topic since the last call; others (a state change
        written by the checkpoint) wait for ``_dead_letter_refused``."""
        topic = self.bindings.dead_letters
        refused = self.transport.take_refused()
        self._refused_later.extend(r for r in refused if r.topic != topic)
        return [r for r in refused if r.topic == topic]

    def _write_dead_record(self, dl: DeadLetter) -> None:
        value: Any = dl.value
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
        self.transport.write(
            self.bindings.dead_letters,
            dl.key,
            self._dead_codec.encode(record),
            dl.failed_ms,
            headers,
        )
