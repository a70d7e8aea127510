"""``shoal run --dry-run``: what a run would read, write and create, without starting it.

Nothing here connects to Kafka or a schema registry: the lines come from the job, the
bindings and the settings alone, through the same ``runtime.runner.topic_plan`` the
worker creates its topics from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError
from runtime.api.job import Job
from runtime.api.redact import redact_url
from runtime.api.watermarks import WatermarkStrategy
from runtime.runner import PlannedTopic, topic_plan, worker_state_dir


def _duration(ms: int | None) -> str:
    if ms is None:
        return "none"
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _watermarks(w: WatermarkStrategy) -> str:
    return (
        f"disorder {_duration(w.max_out_of_order_ms)}, idle after "
        f"{_duration(w.idle_timeout_ms)}, future bound {_duration(w.max_future_ms)} "
        f"({w.future.replace('_', '-')})"
    )


def _schema(name: str, codecs: Any) -> str:
    if not name:
        return "JSON"
    return name if codecs.knows(name) else f"{name} (NOT FOUND in the schema folders)"


def _partitions(t: PlannedTopic) -> str:
    count = "one per input partition" if t.partitions is None else f"{t.partitions}"
    replication = "broker default" if t.replication < 0 else str(t.replication)
    settings = "".join(f", {k}={v}" for k, v in sorted(t.config.items()))
    return f"partitions {count}, replication {replication}{settings}"


def describe_run(
    job: Job,
    bindings: Bindings,
    wire: Any,
    codecs: Any,
    *,
    group: str,
    worker_id: str,
    guarantee: str,
    state: str,
    state_dir: Path,
    partitions: int,
    replication: int,
    checkpoint_ms: int,
    workers: int = 1,
    engine: str = "native",
    http: str | None = None,
) -> list[str]:
    """The lines ``--dry-run`` prints: job and settings, sources, sinks, internal topics.

    Args:
        job: the job.
        bindings: its sources' and sinks' topics or URLs.
        wire: framings and the registry (``connectors.wire.WireConfig``).
        codecs: the codec factory over the job's schema folders (to check names).
        group: the consumer group.
        worker_id: this worker's id.
        guarantee: ``exactly_once`` or ``at_least_once``.
        state: ``rocksdb`` or ``memory``.
        state_dir: the local state folder.
        partitions: partitions of sink topics created by the job.
        replication: replication of created topics (-1: the broker's default).
        checkpoint_ms: the checkpoint interval.
        workers: worker processes.
        engine: ``native`` or ``flink``.
        http: the HTTP service's address, if any.
    """
    folder = worker_state_dir(state_dir, worker_id, job.name, group)
    where = f" in {folder}" if state == "rocksdb" else ""
    lines = [
        f"job {job.name}: group {group}, {workers} worker(s) (this one {worker_id}), "
        f"{guarantee}, {state} state{where}, checkpoint every {_duration(checkpoint_ms)}, "
        f"engine {engine}, live page {http or 'off (--http)'}",
        f"errors: {job.on_error.value.replace('_', '-')}",
    ]
    registry = getattr(wire, "registry", None)
    if registry is not None:
        lines.append(f"schema registry: {redact_url(registry.url)}")
    lines.append("sources:")
    for node in job.sources:
        timestamp = "the job's timestamp function" if node.timestamp else "the Kafka timestamp"
        lines.append(
            f"  {node.name} <- topic {bindings.sources[node.name]}: {_schema(node.schema, codecs)}"
            f", event time from {timestamp}, watermarks: {_watermarks(node.watermarks)}"
        )
    plan = topic_plan(job, bindings, partitions, group, replication)
    sink_topics = {t.owner: t for t in plan if t.role == "sink"}
    lines.append("sinks:")
    for sink in job.sinks:
        target = bindings.sinks[sink.name]
        schema = _schema(sink.schema, codecs)
        if "://" in target:
            lines.append(f"  {sink.name} -> {redact_url(target)}: {schema}")
            continue
        framing = f", {wire.format_of(sink.name)}" if sink.schema else ""
        subject = ""
        if registry is not None and sink.schema:
            subject = f", subjects by {wire.strategy_of(sink.name)}"
        lines.append(
            f"  {sink.name} -> topic {target}: {schema}{framing}{subject}; if missing: "
            f"{_partitions(sink_topics[sink.name])}"
        )
    dead = next(t for t in plan if t.role == "dead letters")
    lines.append(f"dead letters -> topic {dead.name}: DeadLetter; if missing: {_partitions(dead)}")
    internal = [t for t in plan if t.role in ("changelog", "repartition")]
    lines.append("internal topics:" if internal else "internal topics: none (a stateless job)")
    for t in internal:
        lines.append(f"  {t.name}: {t.role} of step {t.owner}; {_partitions(t)}")
    lines.append("dry run: nothing was connected to, created or started")
    return lines


def check_schemas(job: Job, codecs: Any) -> None:
    """Every schema the job's sources and sinks name must be found.

    Raises:
        ConfigError: naming the missing records and where schemas come from.
    """
    named = [n.schema for n in job.sources] + [n.schema for n in job.sinks]
    unknown = sorted({s for s in named if s and not codecs.knows(s)})
    if unknown:
        raise ConfigError(
            f"job {job.name!r} names schemas that are not found: {', '.join(unknown)} (add "
            "their folder with Job(schemas=...), --schemas DIR or SHOAL_SCHEMA_PATH)"
        )
