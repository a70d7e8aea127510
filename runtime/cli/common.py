"""Helpers shared by the CLI commands: settings, the Kafka and schema registry client
settings, wire formats, codecs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from connectors.kafka.broker import LocalBroker
from connectors.kafka.config import KafkaClientConfig, load_client_config
from runtime.api.errors import ConfigError
from runtime.composition import broker_settings
from runtime.settings import Settings, load_settings

if TYPE_CHECKING:
    from connectors.avro.registry import RegistryConfig
    from runtime.savepoint.storage import Storage


def settings() -> Settings:
    """Settings from the environment."""
    return load_settings()


def local_broker() -> LocalBroker:
    """The local broker of this user (its home: ``Settings.broker_home``)."""
    return LocalBroker(broker_settings(settings()))


def resolve_bootstrap(bootstrap: str | None) -> str:
    """``--bootstrap``, else ``SHOAL_BOOTSTRAP``, else the running local broker.

    Raises:
        ConfigError: none of them is available.
    """
    if bootstrap:
        return bootstrap
    env = settings().bootstrap
    if env:
        return env
    broker = local_broker()
    if broker.running():
        return broker.bootstrap
    raise ConfigError(
        "no Kafka to talk to: start the local broker (shoal broker start), "
        "or pass --bootstrap HOST:PORT / set SHOAL_BOOTSTRAP"
    )


F = TypeVar("F", bound=Callable[..., Any])
_KAFKA_META = "shoal.kafka"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_KAFKA_META, {})[param.name] = value
    return value


def kafka_options(command: F) -> F:
    """Add ``--kafka-config FILE`` and ``-X key=value`` to a command (see ``resolve_client``)."""
    command = click.option(
        "-X",
        "kafka_set",
        multiple=True,
        metavar="KEY=VALUE",
        expose_value=False,
        callback=_remember,
        help="A Kafka client setting (repeatable), e.g. -X security.protocol=SASL_SSL.",
    )(command)
    command = click.option(
        "--kafka-config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        expose_value=False,
        callback=_remember,
        help="Kafka client settings, Java .properties format (as Kafka's own tools take). "
        "Merged: defaults < this file < -X < SHOAL_KAFKA_<NAME> variables.",
    )(command)
    return command


def registry_option(command: F) -> F:
    """Add ``--schema-registry URL`` to a command (see ``resolve_registry``)."""
    return click.option(
        "--schema-registry",
        "schema_registry",
        default=None,
        metavar="URL",
        expose_value=False,
        callback=_remember,
        help="A Confluent-compatible schema registry (also SHOAL_SCHEMA_REGISTRY_URL); its "
        "client settings as -X schema.registry.NAME=VALUE, in --kafka-config, or as "
        "SHOAL_SCHEMA_REGISTRY_<NAME> variables.",
    )(command)


def wire_options(command: F) -> F:
    """Add ``--schema-registry``, ``--wire-format`` and ``--subject-strategy`` (see
    ``resolve_wire``)."""
    command = click.option(
        "--subject-strategy",
        "subject_strategies",
        multiple=True,
        metavar="[NAME=]STRATEGY",
        expose_value=False,
        callback=_remember,
        help="Registry subject naming: topic (TOPIC-value, the default), record (the "
        "record's full name) or topic-record (TOPIC-RECORD); NAME= for one source or sink.",
    )(command)
    command = click.option(
        "--wire-format",
        "wire_formats",
        multiple=True,
        metavar="[NAME=]FORMAT",
        expose_value=False,
        callback=_remember,
        help="How sinks frame Avro: single-object or confluent (schema registry framing). "
        "Default: confluent with --schema-registry, else single-object; NAME= for one "
        "source or sink (repeatable). Sources read both.",
    )(command)
    return registry_option(command)


def _given() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    given: dict[str, Any] = {}
    while ctx is not None:  # options of a group reach its subcommands
        given = {**ctx.meta.get(_KAFKA_META, {}), **given}
        ctx = ctx.parent
    return given


def resolve_registry() -> RegistryConfig | None:
    """The schema registry: ``--schema-registry``, ``SHOAL_SCHEMA_REGISTRY_URL`` or
    ``schema.registry.url``, with its client settings (``connectors.avro.registry``).

    Raises:
        ConfigError: an unreadable settings file or a malformed or unknown setting.
    """
    from connectors.avro.registry import load_registry_config

    given = _given()
    env = settings()
    return load_registry_config(
        given.get("schema_registry"),
        env_url=env.schema_registry_url,
        config_file=given.get("kafka_config"),
        overrides=given.get("kafka_set") or (),
        env=env.registry_env,
    )


def resolve_wire() -> Any:
    """The wire formats of ``--wire-format`` and ``--subject-strategy``, and the registry.

    Returns:
        A ``connectors.wire.WireConfig``.

    Raises:
        ConfigError: see ``resolve_registry``; an unknown format or strategy.
    """
    from connectors.wire import WireConfig

    given = _given()
    return WireConfig.from_options(
        resolve_registry(),
        given.get("wire_formats") or (),
        given.get("subject_strategies") or (),
    )


def resolve_client(bootstrap: str | None) -> KafkaClientConfig:
    """The Kafka address (see ``resolve_bootstrap``) with the user's client settings.

    Raises:
        ConfigError: no address, an unreadable settings file or a malformed setting.
    """
    given = _given()
    return load_client_config(
        resolve_bootstrap(bootstrap),
        config_file=given.get("kafka_config"),
        overrides=given.get("kafka_set") or (),
        env=settings().kafka_env,
    )


def codecs(extra_dirs: tuple[Path, ...] = ()) -> Any:
    """The codec factory over ``schemas/``, ``SHOAL_SCHEMA_PATH`` and ``extra_dirs``
    (single-object Avro; ``""`` means JSON)."""
    from connectors.codecs import codec_factory

    return codec_factory((*settings().schema_path, *extra_dirs))


def storage_option(command: F) -> F:
    """Add ``--storage-option KEY=VALUE`` (repeatable) to a command that takes savepoint
    locations (see ``savepoint_storages``)."""
    return click.option(
        "--storage-option",
        "storage_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="An option of a savepoint URL's filesystem (fsspec; repeatable), e.g. "
        "endpoint_url=http://127.0.0.1:9000 for an S3-compatible store (also "
        "SHOAL_S3_ENDPOINT_URL). Credentials: the standard AWS_* variables.",
    )(command)


def parse_storage_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``--storage-option`` pairs as filesystem options.

    Raises:
        ConfigError: a malformed pair.
    """
    from runtime.savepoint.storage import parse_storage_options

    return parse_storage_options(pairs)


def savepoint_storages(locations: Sequence[str], options: Mapping[str, Any]) -> list[Storage]:
    """The storage of each savepoint location (a folder or a URL such as
    ``s3://bucket/prefix``), with ``--storage-option`` options and
    ``SHOAL_S3_ENDPOINT_URL``.

    Raises:
        ConfigError: options given for local folders only, a URL whose filesystem is
            not installed, or options that do not fit it.
    """
    from runtime.savepoint.storage import LocalStorage, open_storage

    endpoint = settings().s3_endpoint_url
    out = [open_storage(loc, options, s3_endpoint_url=endpoint) for loc in locations]
    if options and all(isinstance(s, LocalStorage) for s in out):
        raise ConfigError(
            "--storage-option applies to savepoint URLs (s3://bucket/prefix), not to "
            f"the folder {out[0].location}"
        )
    return out
