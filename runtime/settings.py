"""The one place that reads the environment.

Every setting has a default that works in a checkout; environment variables
override them:

* ``SHOAL_HOME``: the folder of the local broker, local state and logs. Default: per
  user, ``$XDG_DATA_HOME/shoal``, else ``~/.local/share/shoal`` (so ``shoal broker
  status`` finds the broker from any folder).
* ``SHOAL_CACHE``: where downloaded jars are kept (``~/.cache/shoal``).
* ``SHOAL_FLINK_JARS``: a folder holding the Flink engine's Kafka connector jar, used
  instead of fetching it with Maven (the ``shoal-flink`` image sets ``/opt/flink/usrlib``).
* ``SHOAL_BOOTSTRAP``: Kafka bootstrap servers; default: the local broker's address.
* ``SHOAL_KAFKA_<NAME>``: a Kafka client setting (``SHOAL_KAFKA_SASL_PASSWORD`` is
  ``sasl.password``); see ``connectors.kafka.config`` for the order settings merge in.
* ``SHOAL_WORKER_ID``, ``POD_NAME``, ``KUBERNETES_SERVICE_HOST``: where a worker's id
  comes from (see ``runtime.cli.identity``).
* ``SHOAL_SCHEMA_REGISTRY_URL``: a Confluent-compatible schema registry (``--schema-registry``).
* ``SHOAL_SCHEMA_REGISTRY_<NAME>``: a schema registry client setting
  (``SHOAL_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`` is ``basic.auth.user.info``); see
  ``connectors.avro.registry`` for the order settings merge in.
* ``SHOAL_SCHEMA_PATH``: folders of the job author's own ``*.avsc`` schemas, separated
  like ``PATH`` (``:``), beside the built-in ``schemas/``.
* ``SHOAL_REPLICATION_FACTOR``: replication of the topics Shoal creates (-1: the
  broker's default).
* ``SHOAL_S3_ENDPOINT_URL``: the endpoint of ``s3://`` savepoint locations, for an
  S3-compatible store (``--storage-option endpoint_url=...`` wins); credentials come
  from the standard ``AWS_*`` variables (see ``runtime.savepoint.storage``).
* ``SHOAL_HTTP``, ``SHOAL_HTTP_TOKEN``: defaults of ``shoal run --http`` and
  ``--http-token`` (read by those options; the container image sets ``SHOAL_HTTP``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.api.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_home(env: Mapping[str, str]) -> Path:
    """The per-user home of the local broker and local state (XDG base directories).

    ``$XDG_DATA_HOME/shoal`` when that is an absolute path (the specification says to
    ignore a relative one), else ``$HOME/.local/share/shoal``.

    >>> default_home({"XDG_DATA_HOME": "/data", "HOME": "/home/user"}).as_posix()
    '/data/shoal'
    >>> default_home({"XDG_DATA_HOME": "rel", "HOME": "/home/user"}).as_posix()
    '/home/user/.local/share/shoal'
    """
    xdg = env.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "shoal"
    user = env.get("HOME")
    return (Path(user) if user else Path.home()) / ".local" / "share" / "shoal"


_REGISTRY = "SHOAL_SCHEMA_REGISTRY_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings (frozen)."""

    home: Path = field(default_factory=lambda: default_home(os.environ))
    cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "shoal")
    flink_jars: Path | None = None
    bootstrap: str | None = None
    kafka_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    schema_registry_url: str | None = field(default=None, repr=False)
    registry_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    replication_factor: int = -1
    schema_path: tuple[Path, ...] = ()
    worker_id: str | None = None
    pod_name: str | None = None
    kubernetes: bool = False
    s3_endpoint_url: str | None = None

    @property
    def kafka_pom(self) -> Path:
        """The Maven file that lists the local broker's jars."""
        return REPO_ROOT / "deploy" / "kafka" / "pom.xml"

    @property
    def registry_pom(self) -> Path:
        """The Maven file that assembles the local schema registry (tests)."""
        return REPO_ROOT / "deploy" / "registry" / "pom.xml"

    @property
    def broker_home(self) -> Path:
        """The local broker's data, config and logs."""
        return self.home / "broker"

    @property
    def state_dir(self) -> Path:
        """Local state (RocksDB) of the jobs this user runs, a folder per worker id."""
        return self.home / "state"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment (``os.environ`` unless ``env`` is given)."""
    env = dict(os.environ) if env is None else env
    base = Settings()
    return Settings(
        home=_home(env),
        cache=Path(env["SHOAL_CACHE"]) if env.get("SHOAL_CACHE") else base.cache,
        flink_jars=Path(env["SHOAL_FLINK_JARS"]) if env.get("SHOAL_FLINK_JARS") else None,
        bootstrap=env.get("SHOAL_BOOTSTRAP") or None,
        kafka_env={k: v for k, v in env.items() if k.startswith("SHOAL_KAFKA_")},
        schema_registry_url=env.get(f"{_REGISTRY}URL") or None,
        registry_env={
            k: v for k, v in env.items() if k.startswith(_REGISTRY) and k != f"{_REGISTRY}URL"
        },
        replication_factor=_int(env, "SHOAL_REPLICATION_FACTOR", base.replication_factor),
        worker_id=env.get("SHOAL_WORKER_ID") or None,
        pod_name=env.get("POD_NAME") or None,
        kubernetes=bool(env.get("KUBERNETES_SERVICE_HOST")),
        s3_endpoint_url=env.get("SHOAL_S3_ENDPOINT_URL") or None,
        schema_path=tuple(Path(p) for p in env.get("SHOAL_SCHEMA_PATH", "").split(os.pathsep) if p),
    )


def _home(env: Mapping[str, str]) -> Path:
    given = env.get("SHOAL_HOME")
    if given:
        # Absolute, so a broker started from one folder is found from any other.
        return Path(given).expanduser().absolute()
    return default_home(env)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
