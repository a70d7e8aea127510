"""Wires a job to Kafka: topics, consumer, transport, state, and the worker loop.

The CLI, the demo, tests and benchmarks run jobs through ``KafkaRunner`` so there is
one way to do it. The runner knows the engine and the protocols of its I/O
(:class:`RunnerConnectors`), not the connectors themselves: the composition root
(``runtime.composition.kafka_runner``) hands it Kafka's.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.api.admin import ClientSettings, TopicAdmin, TopicSpec
from runtime.api.bindings import Bindings
from runtime.api.choices import (
    Guarantee,
    StateBackendName,
    check_guarantee,
    check_state_backend,
)
from runtime.api.errors import ConfigError
from runtime.api.graph import KeyByNode, TableKind
from runtime.api.io import CodecFactory, ExternalSink, SourceReader
from runtime.api.job import Job
from runtime.engine.ports import ChangelogRead, Offsets, TableFeed, Transport
from runtime.engine.topics import changelog_topic, internal_topics, repartition_topic
from runtime.engine.worker import Worker, WorkerOptions
from runtime.state.base import StateBackend

#: A Kafka address, or client settings (address plus TLS, SASL ...).
Bootstrap = str | ClientSettings
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How to run a job on Kafka.

    Attributes:
        bootstrap: Kafka address, or a client configuration (address and the user's
            client settings: TLS, SASL ...; see ``connectors.kafka.config``).
        guarantee: ``"exactly_once"`` (transactions) or ``"at_least_once"``
            (``runtime.api.choices``).
        state: ``"rocksdb"`` or ``"memory"``.
        state_dir: folder of RocksDB state (``shoal run`` passes ``state/`` of
            ``SHOAL_HOME``).
        group: consumer group (default: the job's name).
        worker_id: stable name of this worker slot: names its transactional id, so a
            restarted worker fences and aborts its predecessor's transaction at once.
        output_partitions: partitions of sink topics created here.
        schema_dirs: folders of the job author's own schemas (beside the built-in ones
            and the job's ``Job(..., schemas=)``).
        wire: framing of each source and sink, subject naming and the schema registry,
            read by the connectors only (``connectors.wire.WireConfig``; ``None``:
            single-object Avro, no registry).
        replication_factor: replication of the topics created here (-1: the broker's
            ``default.replication.factor``).
        options: worker loop tuning.
    """

    bootstrap: Bootstrap
    guarantee: Guarantee = "exactly_once"
    state: StateBackendName = "rocksdb"
    state_dir: Path = field(default_factory=lambda: Path(".shoal") / "state")
    group: str | None = None
    worker_id: str | None = None
    output_partitions: int = 4
    replication_factor: int = -1
    options: WorkerOptions = field(default_factory=WorkerOptions)
    schema_dirs: tuple[Path, ...] = ()
    source_overrides: Mapping[str, Any] = field(default_factory=dict)
    wire: object | None = None

    def __post_init__(self) -> None:
        check_guarantee(self.guarantee)
        check_state_backend(self.state)


def worker_state_dir(state_dir: Path, worker_id: str, job: str, group: str | None) -> Path:
    """The RocksDB folder of one worker of ``job`` in ``group``.

    ``STATE/WORKER`` for a job in its default group (its name), where stores live at
    ``JOB/STEP/PARTITION``; ``STATE/WORKER/group=GROUP`` for any other group: two groups
    of one job on one host (a second instance, a canary's shadow) never share a store.
    """
    base = state_dir / worker_id
    return base if group in (None, job) else base / f"group={group}"


def make_backend(config: RunConfig, worker_id: str, job: str) -> StateBackend:
    """The state backend of one worker (RocksDB folders per worker slot and group)."""
    if config.state == "memory":
        from runtime.state.memory import MemoryBackend

        return MemoryBackend()
    from runtime.state.rocksdb import RocksDBBackend

    return RocksDBBackend(worker_state_dir(config.state_dir, worker_id, job, config.group))


class JobCodecs(CodecFactory, Protocol):
    """The codecs of one job's endpoints (``connectors.wire.EndpointCodecs``)."""

    def prepare(self, sinks: Iterable[tuple[str, str]]) -> list[str]:
        """Register the sinks' schemas where a registry is used; returns those registered."""
        ...

    def describe(self) -> str:
        """The wire formats, for the start-up line."""
        ...

    def close(self) -> None:
        """Release the registry client."""
        ...


class ConsumerSource(SourceReader, Offsets, Protocol):
    """The worker's consumer: reads batches, knows committed offsets, rewinds."""


class RunnerTransport(Transport, Protocol):
    """The worker's transport, and what the runner sets up and releases."""

    def load_limits(self, topics: list[str]) -> None:
        """Read what each written topic accepts (timestamps, sizes) once at the start."""
        ...

    def close(self) -> None:
        """Abort what is open and release the producer."""
        ...


AssignListener = Callable[[list[TopicPartition]], dict[TopicPartition, int]]
RevokeListener = Callable[[list[TopicPartition]], None]


class ControlChannel(Protocol):
    """Control commands between iterations of the loop (``runtime.engine.control``)."""

    def should_stop(self) -> bool:
        """A stop command has been carried out: end the loop."""
        ...

    def close(self) -> None:
        """Close the control topic's clients."""
        ...


class RunnerConnectors(Protocol):
    """The I/O a ``KafkaRunner`` is wired with (``runtime.composition.KafkaConnectors``)."""

    def codecs(self, job: Job, bindings: Bindings, config: RunConfig) -> JobCodecs:
        """The job's codecs, per source and sink endpoint.

        Raises:
            ConfigError: the wire settings are invalid or a registry refuses a schema.
        """
        ...

    def admin(self, bootstrap: Bootstrap) -> TopicAdmin:
        """A topic admin of the cluster."""
        ...

    def source(
        self,
        bootstrap: Bootstrap,
        group: str,
        topics: list[str],
        *,
        on_assign: AssignListener,
        on_revoke: RevokeListener,
        extra: Mapping[str, Any],
    ) -> ConsumerSource:
        """The group's consumer of ``topics`` (read_committed)."""
        ...

    def transport(
        self,
        bootstrap: Bootstrap,
        source: ConsumerSource,
        *,
        exactly_once: bool,
        transactional_id: str,
    ) -> RunnerTransport:
        """The transport that writes outputs and commits with ``source``'s group."""
        ...

    def changelog(self, bootstrap: Bootstrap) -> ChangelogRead:
        """Reads a changelog partition from the start (read_committed)."""
        ...

    def tables(self, bootstrap: Bootstrap) -> TableFeed:
        """Reads table topics (read_committed; see ``runtime.engine.tables``)."""
        ...

    def control(
        self,
        bootstrap: Bootstrap,
        admin: TopicAdmin,
        group: str,
        job: Job,
        bindings: Bindings,
        worker: Worker,
        source: ConsumerSource,
        *,
        worker_id: str,
        partitions: int,
        replication: int,
    ) -> ControlChannel:
        """The worker's end of the job's control topic (savepoints, stops)."""
        ...

    def is_external(self, target: str) -> bool:
        """Whether a binding target is an external sink's URL (not a topic)."""
        ...

    def external_sink(
        self, target: str, sink: str, schema: str, codecs: JobCodecs | None = None
    ) -> ExternalSink:
        """The external sink a URL names (``codecs``: the job's, to find its own
        record schemas)."""
        ...


def ensure_topics(
    job: Job,
    bindings: Bindings,
    admin: TopicAdmin,
    partitions: int,
    app: str | None = None,
    replication: int = -1,
) -> int:
    """Create sink, dead-letter and changelog topics; returns the input partition count.

    Internal topics that exist already are checked: a changelog must be compacted and
    changelog and repartition topics need a partition per task.

    Raises:
        ConfigError: a source topic does not exist, or an internal topic is unfit.
    """
    existing = admin.topics()
    missing = [t for t in bindings.sources.values() if t not in existing]
    if missing:
        raise ConfigError(
            f"job {job.name!r} reads topics that do not exist: {', '.join(missing)} "
            "(produce to them first, e.g. shoal generate)"
        )
    inputs = max(existing[t] for t in bindings.sources.values())
    uneven = {t: existing[t] for t in bindings.sources.values() if existing[t] != inputs}
    if uneven and len(bindings.sources) > 1:
        raise ConfigError(
            f"job {job.name!r} reads topics with different partition counts "
            f"({', '.join(f'{t}: {n}' for t, n in sorted({**uneven}.items()))}, others "
            f"{inputs}); inputs must be co-partitioned: give them the same partition count"
        )
    check_table_topics(job, bindings, existing, inputs)
    plan = topic_plan(job, bindings, partitions, app, replication)
    specs = [t.spec(inputs) for t in plan]
    admin.ensure_topics(specs)
    changelogs = [t.spec(inputs) for t in plan if t.role == "changelog"]
    repartitions = [t.spec(inputs) for t in plan if t.role == "repartition"]
    check_internal_topics(admin, changelogs, repartitions)
    return inputs


def check_table_topics(
    job: Job, bindings: Bindings, existing: Mapping[str, int], inputs: int
) -> None:
    """A job's table topics must exist (a table is read, never created, by a job), and
    a co-partitioned table's must have the inputs' partition count.

    Raises:
        ConfigError: one line naming the table, its topic and what is wrong.
    """
    for node in job.tables:
        topic = bindings.tables.get(node.name, node.name)
        if topic not in existing:
            raise ConfigError(
                f"job {job.name!r}: table {node.name!r} reads topic {topic!r}, which does "
                "not exist (create it, compacted, and write the table to it)"
            )
        if node.table_kind is TableKind.CO_PARTITIONED and existing[topic] != inputs:
            raise ConfigError(
                f"job {job.name!r}: co-partitioned table {node.name!r} has {existing[topic]} "
                f"partitions in {topic!r}, the job's inputs {inputs}: give it {inputs} "
                "partitions keyed like the stream, or declare it kind='global'"
            )


@dataclass(frozen=True, slots=True)
class PlannedTopic:
    """A topic a job writes, and how it is created if missing.

    Attributes:
        role: ``"sink"``, ``"dead letters"``, ``"changelog"`` or ``"repartition"``.
        owner: the sink or step it belongs to (the job's name for dead letters).
        name: the topic.
        partitions: partitions it is created with; ``None``: one per input partition
            (changelogs and repartition topics: one per task).
        replication: replication factor (-1: the broker's default).
        config: topic settings it is created with.
    """

    role: str
    owner: str
    name: str
    partitions: int | None
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)

    def spec(self, inputs: int) -> TopicSpec:
        """The topic to create when the inputs have ``inputs`` partitions."""
        partitions = inputs if self.partitions is None else self.partitions
        return TopicSpec(self.name, partitions, self.replication, config=dict(self.config))


def topic_plan(
    job: Job, bindings: Bindings, partitions: int, app: str | None = None, replication: int = -1
) -> list[PlannedTopic]:
    """The topics ``job`` writes and creates when missing: Kafka sinks (``partitions``
    each), dead letters (one partition), a compacted changelog per stateful step and a
    topic per repartitioning ``key_by`` (one partition per input partition each)."""
    group = app or job.name
    plan = [
        PlannedTopic("sink", name, topic, partitions, replication)
        for name, topic in bindings.sinks.items()
        if "://" not in topic
    ]
    plan.append(PlannedTopic("dead letters", job.name, bindings.dead_letters, 1, replication))
    plan += [
        PlannedTopic(
            "changelog",
            n.name,
            changelog_topic(group, n.name),
            None,
            replication,
            {"cleanup.policy": "compact"},
        )
        for n in job.nodes
        if n.kind in ("window", "process", "join")
    ]
    plan += [
        PlannedTopic("repartition", n.name, repartition_topic(group, n.name), None, replication)
        for n in job.nodes
        if isinstance(n, KeyByNode) and n.repartition
    ]
    return plan


def check_internal_topics(
    admin: TopicAdmin, changelogs: list[TopicSpec], repartitions: list[TopicSpec]
) -> None:
    """Existing changelog and repartition topics must fit the job (see ``ensure_topics``).

    Raises:
        ConfigError: one line per unfit topic, saying what is wrong and what to do.
    """
    specs = changelogs + repartitions
    if not specs:
        return
    counts = admin.topics()
    configs = admin.topic_configs([s.name for s in changelogs])
    problems = []
    for spec in specs:
        have = counts.get(spec.name, 0)
        if have < spec.partitions:
            problems.append(
                f"{spec.name} has {have} partitions, the job needs {spec.partitions} "
                "(one per input partition): add partitions or start with a new --group"
            )
    for spec in changelogs:
        policy = configs.get(spec.name, {}).get("cleanup.policy", "")
        if "compact" not in policy:
            problems.append(
                f"{spec.name} has cleanup.policy={policy or 'delete'}: a changelog must be "
                f"compacted (kafka-configs --alter --add-config cleanup.policy=compact)"
            )
    if problems:
        raise ConfigError("internal topics unfit: " + "; ".join(problems))


def check_identity(admin: TopicAdmin, group: str, instance: str, worker_id: str) -> None:
    """Refuse to start a worker whose id is already live in the group.

    Two workers with one id share a static membership and a transactional id: they
    would fence each other over and over. A member with our ``group.instance.id`` is
    live unless it is this host's predecessor in the slot whose process is gone (a
    restart after a crash takes its place at once, as static membership intends).

    Raises:
        ConfigError: one line naming the id, the group and where the other one runs.
    """
    here = socket.gethostname()
    for member in admin.group_members(group):
        if member.instance_id != instance:
            continue
        rest, _, pid = member.client_id.rpartition(":")
        host = rest.rpartition("@")[2] or "?"
        if host == here and (not pid.isdigit() or not _alive(int(pid))):
            continue  # our slot's earlier process, dead: taking over is what we want
        raise ConfigError(
            f"worker id {worker_id!r} is already live in group {group!r} (host {host}, "
            f"pid {pid or '?'}, address {member.host.strip('/')}): give this worker another "
            "--worker-id (or SHOAL_WORKER_ID)"
        )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class KafkaRunner:
    """One worker of ``job`` on Kafka: consumer, transport, state and loop.

    Args:
        job: the job.
        bindings: topics (see ``Bindings.for_job``).
        config: how to run it.
        connectors: the consumer, transport, admin, codecs and external sinks to use
            (``runtime.composition.kafka_runner`` passes Kafka's).
        external: sinks outside Kafka, by sink name.
    """

    def __init__(
        self,
        job: Job,
        bindings: Bindings,
        config: RunConfig,
        connectors: RunnerConnectors,
        external: Mapping[str, ExternalSink] | None = None,
    ) -> None:
        self.job = job
        self.config = config
        client = config.bootstrap
        is_external = connectors.is_external
        # Schemas the registry refuses stop the job here, before any topic is made.
        self.codecs = connectors.codecs(job, bindings, config)
        try:
            self.registered = self.codecs.prepare(
                (n.name, n.schema) for n in job.sinks if not is_external(bindings.sinks[n.name])
            )
        except BaseException:
            self.codecs.close()
            raise
        admin = connectors.admin(client)
        app = config.group or job.name
        self.input_partitions = ensure_topics(
            job, bindings, admin, config.output_partitions, app, config.replication_factor
        )
        worker_id = config.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.worker_id = worker_id
        instance = f"{app}-{worker_id}"
        if config.worker_id:
            check_identity(admin, app, instance, worker_id)
        self.backend = make_backend(config, worker_id, job.name)
        internal = list(internal_topics(job, app))
        topics = list(bindings.sources.values()) + internal
        source_conf = dict(config.source_overrides)
        if config.worker_id:
            # Static membership: a worker restarted in its slot takes its partitions
            # back at once instead of waiting for the session timeout and a rebalance.
            source_conf.setdefault("group.instance.id", instance)
            # Names this process, so a second worker with the same id can tell whether
            # the member holding it is alive (see check_identity).
            source_conf["client.id"] = f"shoal:{worker_id}@{socket.gethostname()}:{os.getpid()}"
        if len(topics) > 1:
            # Keyed state of co-partitioned inputs must see partition p of every input
            # in the same task: the range assignor co-locates equal partition numbers.
            source_conf.setdefault("partition.assignment.strategy", "range")
        self.source = connectors.source(
            client,
            config.group or job.name,
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            extra=source_conf,
        )
        self.transport = connectors.transport(
            client,
            self.source,
            exactly_once=config.guarantee == "exactly_once",
            transactional_id=f"{config.group or job.name}-{worker_id}",
        )
        # What each written topic accepts (timestamps, sizes), read once at the start.
        self.transport.load_limits(
            [t for t in bindings.sinks.values() if not is_external(t)]
            + [bindings.dead_letters]
            + internal
        )
        sinks = dict(external or {})
        for node in job.sinks:
            target = bindings.sinks[node.name]
            if node.name not in sinks and is_external(target):
                # With the job's codecs: its own record schemas, not only built-in ones.
                sinks[node.name] = connectors.external_sink(
                    target, node.name, node.schema, self.codecs
                )
        self.external = sinks
        self.table_feed = connectors.tables(client) if job.tables else None
        self.worker = Worker(
            job,
            bindings,
            self.transport,
            self.codecs,
            self.backend,
            offsets=self.source,
            changelog=connectors.changelog(client),
            external=sinks,
            options=config.options,
            repartition_partitions=self.input_partitions,
            app=app,
            tables=self.table_feed,
        )
        # Savepoints and stops arrive through <group>.control (runtime.engine.control).
        self.control = connectors.control(
            client, admin, app, job, bindings, self.worker, self.source,
            worker_id=worker_id, partitions=self.input_partitions,
            replication=config.replication_factor,
        )  # fmt: skip

    # The consumer calls these from inside ``poll``, so only once the worker exists.
    def _on_assign(self, pairs: list[TopicPartition]) -> dict[TopicPartition, int]:
        return self.worker.on_assign(pairs)

    def _on_revoke(self, pairs: list[TopicPartition]) -> None:
        self.worker.on_revoke(pairs)

    def step(self) -> int:
        """One loop iteration; returns the records read."""
        return self.worker.step(self.source)

    def run(
        self,
        should_stop: Callable[[], bool],
        on_tick: Callable[[Worker], None] | None = None,
        tick_s: float = 1.0,
    ) -> None:
        """Run until ``should_stop()``, then checkpoint and leave the group."""
        # On failure nothing is closed gracefully: closing would commit or flush
        # state of a half-done batch. The caller exits; the restart replays from the
        # last committed checkpoint.
        control = self.control  # hook: a stop command ends the loop like a signal
        self.worker.run(
            self.source,
            should_stop=lambda: should_stop() or control.should_stop(),
            on_tick=on_tick,
            tick_s=tick_s,
        )
        self.close()

    def close(self) -> None:
        """Leave the group (revocation checkpoints) and release everything."""
        try:
            self.source.close()
        finally:
            self.transport.close()
            self.worker.close()
            self.backend.close()
            for sink in self.external.values():
                sink.close()
            self.codecs.close()
            self.control.close()  # hook: the control topic's clients
            if self.table_feed is not None:
                self.table_feed.close()
