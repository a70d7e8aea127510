"""The one place that reads the environment.

Every setting has a default that works in a checkout; environment variables
override them:

* ``SHOAL_HOME``: working folder for the local broker, state and logs (``.shoal``).
* ``SHOAL_CACHE``: where downloaded jars are kept (``~/.cache/shoal``).
* ``SHOAL_BOOTSTRAP``: Kafka bootstrap servers; default: the local broker's address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings (frozen)."""

    home: Path = field(default_factory=lambda: Path(".shoal"))
    cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "shoal")
    bootstrap: str | None = None

    @property
    def kafka_pom(self) -> Path:
        """The Maven file that lists the local broker's jars."""
        return REPO_ROOT / "deploy" / "kafka" / "pom.xml"

    @property
    def broker_home(self) -> Path:
        """The local broker's data, config and logs."""
        return self.home / "broker"

    @property
    def state_dir(self) -> Path:
        """Local state (RocksDB) of jobs run from this folder."""
        return self.home / "state"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment (``os.environ`` unless ``env`` is given)."""
    env = dict(os.environ) if env is None else env
    base = Settings()
    return Settings(
        home=Path(env["SHOAL_HOME"]) if env.get("SHOAL_HOME") else base.home,
        cache=Path(env["SHOAL_CACHE"]) if env.get("SHOAL_CACHE") else base.cache,
        bootstrap=env.get("SHOAL_BOOTSTRAP") or None,
    )


def broker_settings(settings: Settings, home: Path | None = None):  # type: ignore[no-untyped-def]
    """The local broker's settings derived from ``settings``."""
    from connectors.kafka.broker import BrokerSettings

    return BrokerSettings(
        home=home or settings.broker_home,
        jar_cache=settings.cache / "kafka",
        pom=settings.kafka_pom,
    )
