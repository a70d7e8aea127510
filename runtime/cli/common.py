"""Helpers shared by the CLI commands: settings, the Kafka client settings, codecs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from connectors.kafka.broker import LocalBroker
from connectors.kafka.config import KafkaClientConfig, load_client_config
from runtime.api.errors import ConfigError
from runtime.settings import Settings, broker_settings, load_settings


def settings() -> Settings:
    """Settings from the environment."""
    return load_settings()


def local_broker() -> LocalBroker:
    """The local broker of this folder."""
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


def resolve_client(bootstrap: str | None) -> KafkaClientConfig:
    """The Kafka address (see ``resolve_bootstrap``) with the user's client settings.

    Raises:
        ConfigError: no address, an unreadable settings file or a malformed setting.
    """
    ctx = click.get_current_context(silent=True)
    given: dict[str, Any] = {}
    while ctx is not None:  # options of a group reach its subcommands
        given = {**ctx.meta.get(_KAFKA_META, {}), **given}
        ctx = ctx.parent
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
