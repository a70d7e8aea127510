"""Where the schema registry is and how to reach it: one frozen config, one client.

The registry's client settings travel the same path as the Kafka client's
(``connectors.kafka.config``) and merge in this order, later wins:

1. Shoal's defaults (``timeout``: 10 seconds per request);
2. ``schema.registry.<name>`` lines of ``--kafka-config FILE``;
3. ``-X schema.registry.<name>=value`` options (in 2 and 3, the Java serializers'
   ``basic.auth.user.info``, ``basic.auth.credentials.source`` and
   ``auto.register.schemas`` count without the prefix too; the prefixed name wins);
4. ``SHOAL_SCHEMA_REGISTRY_<NAME>`` variables (``SHOAL_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO``
   is ``basic.auth.user.info``);
5. the URL: ``--schema-registry URL``, else ``SHOAL_SCHEMA_REGISTRY_URL``, else
   ``schema.registry.url``. Without a URL there is no registry.

Names are the registry client's (Confluent's): ``basic.auth.user.info`` (``user:password``),
``ssl.ca.location``, ``ssl.certificate.location``, ``ssl.key.location``,
``ssl.key.password``, ``timeout`` (seconds), ``max.retries``, ``retries.wait.ms``,
``retries.max.wait.ms``, ``cache.capacity``, ``cache.latest.ttl.sec``, ``proxy`` and the
``bearer.auth.*`` settings. Java spellings are taken too: ``basic.auth.credentials.source``
(``USER_INFO``, or ``URL`` for credentials in the URL) and a PEM
``ssl.truststore.location`` (with ``ssl.truststore.type=PEM``). One setting is Shoal's:
``auto.register.schemas`` (default ``true``); ``false`` makes sinks look their schema up
instead of registering it, for registries only administrators write to.

Example:
    >>> config = RegistryConfig("https://registry:8081", {"basic.auth.user.info": "u:pw"})
    >>> config
    RegistryConfig(url='https://registry:8081', properties={'basic.auth.user.info': '***'})
    >>> config.client_conf()["timeout"]
    10.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from connectors.kafka.client import registry_client
from connectors.kafka.config import REGISTRY_NAMES, REGISTRY_PREFIX, read_properties
from runtime.api.errors import ConfigError
from runtime.api.redact import redact_settings, redact_text, redact_url

__all__ = ["ENV_PREFIX", "RegistryConfig", "load_registry_config"]

#: Variables holding registry client settings (the URL has its own, see the docstring).
ENV_PREFIX: Final = "SHOAL_SCHEMA_REGISTRY_"
_DEFAULTS: Final[Mapping[str, str]] = {"timeout": "10"}
_NUMBERS: Final = {
    "timeout": float,
    "cache.latest.ttl.sec": float,
    "cache.capacity": int,
    "max.retries": int,
    "retries.wait.ms": int,
    "retries.max.wait.ms": int,
}
_CLIENT_NAMES: Final = frozenset(
    {
        "basic.auth.user.info",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "proxy",
        *_NUMBERS,
    }
)
_JAVA_NAMES: Final = frozenset(
    {"basic.auth.credentials.source", "ssl.truststore.location", "ssl.truststore.type"}
)
_SHOAL_NAMES: Final = frozenset({"auto.register.schemas"})
_BOOLEANS: Final = {"true": True, "false": False}


@dataclass(frozen=True)
class RegistryConfig:
    """A schema registry's URL and the client settings to reach it.

    Args:
        url: the registry's base URL (for Apicurio Registry, ``.../apis/ccompat/v7``);
            ``mock://NAME`` is the client library's in-process fake (unit tests only).
        properties: client settings without the ``schema.registry.`` prefix.

    Raises:
        ConfigError: the URL is not http(s) or mock, or a setting is unknown or
            malformed (the message lists the known settings).
    """

    url: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://", "mock://")):
            raise ConfigError(
                f"schema registry URL {redact_url(self.url)!r} must start with http://, "
                "https:// (or mock:// in unit tests)"
            )
        known = _CLIENT_NAMES | _JAVA_NAMES | _SHOAL_NAMES
        unknown = sorted(
            k for k in self.properties if k not in known and not k.startswith("bearer.auth.")
        )
        if unknown:
            raise ConfigError(
                f"unknown schema registry setting {', '.join(REGISTRY_PREFIX + k for k in unknown)}"
                f" (known: {', '.join(sorted(known))}, bearer.auth.*)"
            )
        register = self.properties.get("auto.register.schemas", "true").lower()
        if register not in _BOOLEANS:
            raise ConfigError(
                f"{REGISTRY_PREFIX}auto.register.schemas={register!r}: expected true or false"
            )
        source = self.properties.get("basic.auth.credentials.source", "USER_INFO").upper()
        if source not in ("USER_INFO", "URL"):
            raise ConfigError(
                f"{REGISTRY_PREFIX}basic.auth.credentials.source={source!r}: "
                "expected USER_INFO or URL"
            )

    def __repr__(self) -> str:
        return f"RegistryConfig(url={redact_url(self.url)!r}, properties={self.shown()!r})"

    def shown(self) -> dict[str, Any]:
        """The settings with secrets masked (for logs, errors and pages)."""
        return redact_settings(dict(self.properties))

    @property
    def auto_register(self) -> bool:
        """Whether sinks register their schema (else they only look it up)."""
        return _BOOLEANS[self.properties.get("auto.register.schemas", "true").lower()]

    def client_conf(self) -> dict[str, Any]:
        """The settings as the registry client takes them (Java names translated).

        Raises:
            ConfigError: a number is not a number, or a trust store is not PEM.
        """
        props = {**_DEFAULTS, **self.properties}
        conf: dict[str, Any] = {"url": self.url}
        for name, value in props.items():
            if name in _JAVA_NAMES or name in _SHOAL_NAMES:
                continue
            kind = _NUMBERS.get(name)
            if kind is None:
                conf[name] = value
                continue
            try:
                conf[name] = kind(value)
            except ValueError:
                raise ConfigError(
                    f"{REGISTRY_PREFIX}{name}={value!r} is not a {kind.__name__}"
                ) from None
        trust = props.get("ssl.truststore.location")
        if trust is not None and "ssl.ca.location" not in props:
            if props.get("ssl.truststore.type", "").upper() != "PEM":
                raise ConfigError(
                    f"{REGISTRY_PREFIX}ssl.truststore.location must be a PEM file "
                    f"({REGISTRY_PREFIX}ssl.truststore.type=PEM) or be given as "
                    f"{REGISTRY_PREFIX}ssl.ca.location: the client cannot read JKS trust stores"
                )
            conf["ssl.ca.location"] = trust
        return conf

    def connect(self) -> Any:
        """A registry client for these settings (no request is made yet).

        Returns:
            A client with the methods of ``connectors.avro.confluent.RegistryClient``.

        Raises:
            ConfigError: the client refuses the settings.
        """
        try:
            return registry_client(self.client_conf())
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(
                f"schema registry {redact_url(self.url)}: {redact_text(str(exc))}"
            ) from exc


def env_properties(env: Mapping[str, str]) -> dict[str, str]:
    """``SHOAL_SCHEMA_REGISTRY_<NAME>`` variables as settings (``BASIC_AUTH_USER_INFO`` ->
    ``basic.auth.user.info``); the URL variable is not among them."""
    return {
        name[len(ENV_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(ENV_PREFIX)
        and len(name) > len(ENV_PREFIX)
        and name != f"{ENV_PREFIX}URL"
    }


def load_registry_config(
    url: str | None,
    *,
    env_url: str | None = None,
    config_file: Path | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> RegistryConfig | None:
    """Merge the registry's settings in the documented order.

    Args:
        url: ``--schema-registry``.
        env_url: ``SHOAL_SCHEMA_REGISTRY_URL``.
        config_file: ``--kafka-config`` (its ``schema.registry.*`` lines).
        overrides: ``-X`` items (the ``schema.registry.*`` ones count).
        env: ``SHOAL_SCHEMA_REGISTRY_<NAME>`` variables.

    Returns:
        The config, or ``None`` when no URL is given anywhere.

    Raises:
        ConfigError: the file cannot be read, an override is malformed, or a setting is
            unknown or malformed.
    """
    given = read_properties(config_file=config_file, overrides=overrides)
    props = {k: v for k, v in given.items() if k in REGISTRY_NAMES}  # Java serializer names
    props.update(
        (k[len(REGISTRY_PREFIX) :], v) for k, v in given.items() if k.startswith(REGISTRY_PREFIX)
    )
    props.update(env_properties(env or {}))
    from_props = props.pop("url", None)
    chosen = url or env_url or from_props
    if not chosen:
        return None
    return RegistryConfig(chosen, props)
