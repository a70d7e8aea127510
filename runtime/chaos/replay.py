"""The input range a job read, what it committed, and its own graph over that range.

A :class:`Span` is a consistent reading of a job's position: the committed offsets
of its input partitions (with the watermark each checkpoint recorded) and the
read_committed ends of its sink topics. A checkpoint commits a job's input offsets
and its outputs in one transaction, so a reading is consistent when the group's
offsets did not move while the sinks' ends were read (:func:`span`).

:func:`replay` runs the job's graph over the inputs between two spans in the test
driver, as the job's tasks saw them: one driver per input partition number when the
job keys without repartitioning (a task per partition, as the worker runs it), else
one driver for all; the driver's processing clock follows the records' timestamps
(the job's clock while it kept up), and each driver's watermark ends where the
task's last checkpoint put it. :func:`committed_outputs` reads what the job wrote
between the same spans.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.ranges import RangeRecord, read_range
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ConnectorError
from runtime.api.graph import KeyByNode
from runtime.api.job import Job
from runtime.chaos.verdict import Output, canonical
from runtime.cli.status_cmd import checkpoint_meta
from runtime.engine.topics import message_key
from runtime.testing import TestDriver

TP = tuple[str, int]
_T = TypeVar("_T")
_CHUNK = 500


@dataclass(frozen=True)
class Span:
    """Where a job stood: input offsets, their checkpoint watermarks, sink ends."""

    inputs: Mapping[TP, int]
    sinks: Mapping[TP, int]
    watermarks: Mapping[TP, int] = field(default_factory=dict)


def sink_topics(bindings: Bindings) -> dict[str, str]:
    """Sink name -> topic, for the sinks bound to Kafka topics (not to URLs)."""
    return {name: t for name, t in bindings.sinks.items() if "://" not in t}


def partitions_of(admin: KafkaAdmin, topics: Iterable[str], wait_s: float = 60.0) -> list[TP]:
    """Every partition of ``topics``, waiting up to ``wait_s`` for a job to create them.

    Raises:
        ConfigError: a topic does not exist after ``wait_s``.
    """
    wanted = list(topics)
    deadline = time.monotonic() + wait_s
    while True:
        counts = admin.topics()
        missing = [t for t in wanted if t not in counts]
        if not missing:
            return [(t, p) for t in wanted for p in range(counts[t])]
        if time.monotonic() > deadline:
            raise ConfigError(f"topic {missing[0]!r} does not exist (is the job running?)")
        time.sleep(0.5)


def _retrying(read: Callable[[], _T], timeout_s: float = 60.0) -> _T:
    """``read()``, asked again while the cluster answers with a passing error (a new
    topic without a leader yet, a coordinator moving after a broker pause)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return read()
        except ConnectorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def span(
    admin: KafkaAdmin,
    group: str,
    inputs: list[TP],
    sinks: list[TP],
    *,
    from_start: bool = False,
    timeout_s: float = 60.0,
) -> Span:
    """A consistent reading of the job's position (see the module docstring).

    ``from_start``: the start of every input and sink partition instead (the job began
    with no state). A partition the group has not committed counts from its start.

    Raises:
        ConnectorError: no consistent reading within ``timeout_s`` (offsets kept moving).
    """
    starts = _retrying(lambda: admin.end_offsets(inputs, earliest=True))
    if from_start:
        return Span(starts, _retrying(lambda: admin.end_offsets(sinks, earliest=True)))
    deadline = time.monotonic() + timeout_s
    while True:
        before = _committed(admin, group, inputs)
        ends = _retrying(lambda: admin.end_offsets(sinks))
        after = _committed(admin, group, inputs)
        if before == after:
            offsets = {tp: after[tp][0] if tp in after else starts[tp] for tp in inputs}
            marks = {}
            for tp, (_, text) in after.items():
                wm = (checkpoint_meta(text) or {}).get("wm")
                if isinstance(wm, int):
                    marks[tp] = wm
            return Span(offsets, ends, marks)
        if time.monotonic() > deadline:
            raise ConnectorError(
                f"the offsets of group {group!r} kept moving for {timeout_s:.0f}s: stop the "
                "input (or let the job catch up) to read where the job stands"
            )
        time.sleep(0.2)


def _committed(admin: KafkaAdmin, group: str, inputs: list[TP]) -> dict[TP, tuple[int, str]]:
    # stable: a transaction's offsets pending is an error, asked again
    found = _retrying(lambda: admin.group_offsets(group, stable=True))
    return {tp: v for tp, v in found.items() if tp in set(inputs)}


def read_inputs(
    client: Any, bindings: Bindings, start: Span, end: Span
) -> dict[TP, list[RangeRecord]]:
    """The records of every input partition between the two spans."""
    out: dict[TP, list[RangeRecord]] = {}
    for tp, stop in end.inputs.items():
        out[tp] = list(read_range(client, tp[0], tp[1], start.inputs.get(tp, 0), stop))
    return out


def replay(
    job: Job,
    bindings: Bindings,
    records: Mapping[TP, list[RangeRecord]],
    end: Span,
    progress: Callable[[str], None] | None = None,
) -> list[Output]:
    """The job's outputs over ``records`` (see the module docstring)."""
    by_topic = bindings.topic_sources()
    sinks = sink_topics(bindings)
    numbers = sorted({p for _, p in records})
    repartitions = any(isinstance(n, KeyByNode) and n.repartition for n in job.nodes)
    groups = [numbers] if repartitions else [[p] for p in numbers]
    outputs: list[Output] = []
    for group in groups:
        parts = {tp: recs for tp, recs in records.items() if tp[1] in group}
        first = min((r.timestamp_ms for recs in parts.values() for r in recs[:1]), default=0)
        # The processing clock follows the records' own timestamps (when they were
        # written): the job's clock when it kept up. It decides which event times are
        # too far in the future, and when a quiet partition counts as idle.
        driver = TestDriver(
            job, partitions=max(group) + 1 if repartitions else 1, start_ms=max(first, 1)
        )
        try:
            for source, partition, batch in _interleaved(parts, by_topic, repartitions):
                newest = max(r.timestamp_ms for r in batch)
                if newest > driver.processing_time_ms:
                    driver.advance_time(newest - driver.processing_time_ms)
                driver.send_raw_many(
                    source,
                    [(r.key, r.value, r.timestamp_ms) for r in batch],
                    partition=partition,
                )
            marks = [wm for tp, wm in end.watermarks.items() if tp[1] in group]
            if marks:
                driver.advance_watermark(min(marks))
            for name, topic in sinks.items():
                outputs += _driver_outputs(driver, name, topic)
        finally:
            driver.close()
        if progress is not None:
            progress(f"replayed partition(s) {group}: {len(outputs):,} outputs so far")
    return outputs


def _interleaved(
    parts: Mapping[TP, list[RangeRecord]], by_topic: Mapping[str, str], keep_partition: bool
) -> Iterable[tuple[str, int, list[RangeRecord]]]:
    """Batches of one source partition each, in record-time order across partitions."""
    tagged = [
        (r.timestamp_ms, i, n, tp, r)
        for i, (tp, recs) in enumerate(sorted(parts.items()))
        for n, r in enumerate(recs)
    ]
    tagged.sort(key=lambda x: (x[0], x[1], x[2]))
    batch: list[RangeRecord] = []
    current: TP | None = None
    for _, _, _, tp, rec in tagged:
        if tp != current or len(batch) >= _CHUNK:
            if batch and current is not None:
                yield by_topic[current[0]], current[1] if keep_partition else 0, batch
            batch, current = [], tp
        batch.append(rec)
    if batch and current is not None:
        yield by_topic[current[0]], current[1] if keep_partition else 0, batch


def _driver_outputs(driver: TestDriver, sink: str, topic: str) -> list[Output]:
    schema = next(s.schema for s in driver.job.sinks if s.name == sink)
    codec = driver.codecs.sink(sink, schema)
    out = []
    for key, value, _ in driver.records(sink):
        decoded, failures = codec.decode_batch([codec.encode(value)])
        shown = decoded[0] if not failures else value
        out.append((topic, _key_text(message_key(key)), canonical(shown)))
    return out


def committed_outputs(
    client: Any, job: Job, bindings: Bindings, codecs: Any, start: Span, end: Span
) -> list[Output]:
    """What the job committed to its Kafka sinks between the two spans (read_committed).

    Outputs are named by topic, as :func:`replay` names them: sinks bound to one topic
    are compared together.
    """
    topics = sink_topics(bindings)
    schema = {s.name: s.schema for s in job.sinks}
    out: list[Output] = []
    by_topic: dict[str, list[str]] = defaultdict(list)
    for name, topic in topics.items():
        by_topic[topic].append(name)
    for (topic, p), stop in end.sinks.items():
        for name in by_topic.get(topic, [])[:1]:
            codec = codecs.sink(name, schema[name])
            recs = list(read_range(client, topic, p, start.sinks.get((topic, p), 0), stop))
            values, failures = codec.decode_batch([r.value for r in recs])
            bad = {i for i, _ in failures}
            good = iter(values)
            for i, r in enumerate(recs):
                shown: Any = r.value if i in bad else next(good)
                out.append((topic, _key_text(r.key), canonical(shown)))
    return out


def _key_text(key: bytes | None) -> str:
    return "" if key is None else key.decode("utf-8", "backslashreplace")
