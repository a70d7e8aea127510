"""The composition root: the one module that knows both the runtime and the connectors.

Everything below it sees its I/O through protocols: the worker through
``runtime.engine.ports``, the runner through ``runtime.runner.RunnerConnectors``, the
Flink engine through ``runtime.flink.options.FlinkConnectors``, topic administration
through ``runtime.api.admin``. Here those protocols get their Kafka implementations:

=====================  =================================================================
what                   wired with
=====================  =================================================================
:func:`kafka_runner`   a ``KafkaRunner`` with :class:`KafkaConnectors` (consumer,
                       transactional transport, admin, changelog reader, wire codecs,
                       external sinks by URL)
:data:`ENGINES`        ``shoal run --engine``: ``native`` (the runner on Kafka
                       consumer groups) and ``flink`` (with :data:`FLINK_CONNECTORS`)
:func:`default_codecs`  Shoal's single-object Avro codecs (the test driver's default)
:func:`broker_settings` the local broker of a settings folder
:func:`client_settings` Kafka client settings merged from file and environment
=====================  =================================================================

The command line (``runtime.cli``) sits beside this module at the top; the Flink
application entry point (``runtime.flink.main``) starts from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from connectors.codecs import CodecFactory, codec_factory
from connectors.external import is_external, make_external_sink
from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.broker import BrokerSettings
from connectors.kafka.config import KafkaClientConfig, load_client_config
from connectors.kafka.source import KafkaSource
from connectors.kafka.tables import TableReader
from connectors.kafka.transport import ChangelogReader, KafkaTransport
from connectors.wire import EndpointCodecs, WireConfig
from runtime.api.admin import ClientSettings, TopicAdmin
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError
from runtime.api.io import ExternalSink
from runtime.api.job import Job
from runtime.engine.control import ControlAgent
from runtime.engine.ports import ChangelogRead, TableFeed
from runtime.engine.worker import Worker
from runtime.engines import Engine, EngineRegistry
from runtime.flink.options import FlinkConnectors
from runtime.runner import (
    AssignListener,
    Bootstrap,
    ConsumerSource,
    JobCodecs,
    KafkaRunner,
    RevokeListener,
    RunConfig,
)
from runtime.settings import Settings

__all__ = [
    "ENGINES",
    "FLINK_CONNECTORS",
    "KafkaConnectors",
    "broker_settings",
    "client_config",
    "client_settings",
    "default_codecs",
    "kafka_runner",
]


def client_config(bootstrap: Bootstrap) -> KafkaClientConfig:
    """Kafka client settings from an address or from settings of any kind."""
    if isinstance(bootstrap, KafkaClientConfig):
        return bootstrap
    if isinstance(bootstrap, str):
        return KafkaClientConfig(bootstrap)
    return KafkaClientConfig(bootstrap.bootstrap, dict(bootstrap.properties))


def client_settings(
    bootstrap: str, *, config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> ClientSettings:
    """Kafka client settings merged in the documented order (``connectors.kafka.config``).

    Raises:
        ConfigError: no address, or an unreadable or malformed settings file.
    """
    return load_client_config(bootstrap, config_file=config_file, env=env)


def default_codecs(schema_dirs: Iterable[str | PathLike[str]] = ()) -> CodecFactory:
    """Single-object Avro codecs over ``schemas/`` and ``schema_dirs`` (``""``: JSON)."""
    return codec_factory(schema_dirs)


def broker_settings(settings: Settings, home: Path | None = None) -> BrokerSettings:
    """The local broker's settings derived from ``settings``."""
    return BrokerSettings(
        home=home or settings.broker_home,
        jar_cache=settings.cache / "kafka",
        pom=settings.kafka_pom,
    )


class KafkaConnectors:
    """Kafka's implementations of :class:`runtime.runner.RunnerConnectors`."""

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
    ) -> ControlAgent:
        """The worker's end of ``<group>.control`` (``runtime.savepoint.wiring``)."""
        from runtime.savepoint.wiring import attach_control

        kafka_admin = admin if isinstance(admin, KafkaAdmin) else self.admin(bootstrap)
        return attach_control(
            client_config(bootstrap), kafka_admin, group, job, bindings, worker, source,
            worker_id=worker_id, partitions=partitions, replication=replication,
        )  # fmt: skip

    def codecs(self, job: Job, bindings: Bindings, config: RunConfig) -> EndpointCodecs:
        """The job's codecs: single-object Avro or a registry's framing per endpoint.

        Raises:
            ConfigError: ``config.wire`` is not a ``WireConfig``, or it is refused.
        """
        wire = WireConfig() if config.wire is None else config.wire
        if not isinstance(wire, WireConfig):
            raise ConfigError(f"wire settings must be a WireConfig, not {type(wire).__name__}")
        return EndpointCodecs(
            codec_factory((*config.schema_dirs, *job.schema_dirs)),
            wire,
            bindings.sources,
            {n: t for n, t in bindings.sinks.items() if not is_external(t)},
            owner=f"job {job.name!r}",
        )

    def admin(self, bootstrap: Bootstrap) -> KafkaAdmin:
        """A topic admin of the cluster."""
        return KafkaAdmin(client_config(bootstrap))

    def source(
        self,
        bootstrap: Bootstrap,
        group: str,
        topics: list[str],
        *,
        on_assign: AssignListener,
        on_revoke: RevokeListener,
        extra: Mapping[str, Any],
    ) -> KafkaSource:
        """The group's consumer, reading committed records only."""
        return KafkaSource(
            client_config(bootstrap),
            group,
            topics,
            on_assign=on_assign,
            on_revoke=on_revoke,
            read_committed=True,
            extra=extra,
        )

    def transport(
        self,
        bootstrap: Bootstrap,
        source: ConsumerSource,
        *,
        exactly_once: bool,
        transactional_id: str,
    ) -> KafkaTransport:
        """The transactional (or flush-then-commit) transport of ``source``'s group.

        Raises:
            ConfigError: ``source`` is not a Kafka consumer (transactions need its group).
        """
        if not isinstance(source, KafkaSource):
            raise ConfigError(
                f"the Kafka transport commits through a Kafka consumer, not {type(source).__name__}"
            )
        return KafkaTransport(
            client_config(bootstrap),
            source,
            exactly_once=exactly_once,
            transactional_id=transactional_id,
        )

    def changelog(self, bootstrap: Bootstrap) -> ChangelogRead:
        """Reads changelog partitions (read_committed)."""
        return ChangelogReader(client_config(bootstrap))

    def tables(self, bootstrap: Bootstrap) -> TableFeed:
        """Reads table topics (``connectors.kafka.tables``)."""
        return TableReader(client_config(bootstrap))

    def is_external(self, target: str) -> bool:
        """Whether a binding target is an external sink's URL."""
        return is_external(target)

    def external_sink(
        self, target: str, sink: str, schema: str, codecs: JobCodecs | None = None
    ) -> ExternalSink:
        """The webhook, PostgreSQL or Redis sink a URL names; with the job's ``codecs``
        its own record schemas (a PostgreSQL table's columns) are found too."""
        avro = None
        if isinstance(codecs, EndpointCodecs) and schema and codecs.knows(schema):
            avro = codecs.repository.current(schema).schema
        return make_external_sink(target, sink, schema, avro=avro)


def kafka_runner(
    job: Job,
    bindings: Bindings,
    config: RunConfig,
    external: Mapping[str, ExternalSink] | None = None,
) -> KafkaRunner:
    """One worker of ``job`` on Kafka (see ``runtime.runner.KafkaRunner``).

    Raises:
        ConfigError: a topic is missing or unfit, or a setting is refused.
    """
    return KafkaRunner(job, bindings, config, KafkaConnectors(), external)


def _flink_admin(bootstrap: str, properties: Mapping[str, str]) -> KafkaAdmin:
    return KafkaAdmin(KafkaClientConfig(bootstrap, properties))


def _java_properties(bootstrap: str, properties: Mapping[str, str]) -> dict[str, str]:
    return KafkaClientConfig(bootstrap, properties).java_properties()


def _table_reader(bootstrap: str, properties: Mapping[str, str]) -> TableReader:
    return TableReader(KafkaClientConfig(bootstrap, properties))


#: What the Flink engine uses of the connectors (its codecs and table readers run in
#: Flink's workers too).
FLINK_CONNECTORS = FlinkConnectors(
    admin=_flink_admin,
    java_properties=_java_properties,
    codecs=codec_factory,
    tables=_table_reader,
)


def _native() -> Engine:
    from runtime.cli.native import NativeEngine

    return NativeEngine(kafka_runner, KafkaConnectors().admin)


def _flink() -> Engine:
    from runtime.flink.engine import FlinkEngine

    return FlinkEngine(FLINK_CONNECTORS)


#: The engines of ``shoal run --engine``.
ENGINES = EngineRegistry()
ENGINES.register("native", _native, "Shoal's own workers")
ENGINES.register("flink", _flink, "Apache Flink (needs shoal[flink])")
