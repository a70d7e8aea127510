"""Helpers shared by the CLI commands: settings, the bootstrap address, codecs."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from connectors.kafka.broker import LocalBroker
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


@lru_cache(maxsize=1)
def codecs() -> Any:
    """The codec factory over ``schemas/`` (single-object Avro; ``""`` means JSON)."""
    from connectors.codecs import codec_factory

    return codec_factory()
