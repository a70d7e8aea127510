"""The one place that builds Kafka client configurations.

Every client Shoal creates - consumer, producer, transactional producer, admin, the
changelog reader, the CLI's tools and the Flink engine's Kafka properties - gets its
settings from a :class:`KafkaClientConfig`, merged in this order (later wins):

1. Shoal's defaults for that client (batching, fetch tuning, timeouts);
2. a Java-style ``.properties`` file (``--kafka-config FILE``, as Kafka's own tools take);
3. ``-X key=value`` options (repeatable);
4. ``SHOAL_KAFKA_<NAME>`` environment variables (``SHOAL_KAFKA_SASL_PASSWORD`` sets
   ``sasl.password``: lower case, ``_`` becomes ``.``);
5. what a client needs to keep its guarantees (group id, transactional id, isolation
   level, manual commits): Shoal sets these itself, and a user setting for one of
   them is refused with a one-line error instead of silently breaking exactly-once.

Java client settings that librdkafka spells differently are translated: a
``sasl.jaas.config`` with ``username=``/``password=`` becomes ``sasl.username`` and
``sasl.password``; a PEM ``ssl.truststore.location`` (``ssl.truststore.type=PEM``)
becomes ``ssl.ca.location``. :meth:`KafkaClientConfig.java_properties` goes the other
way for the JVM clients of the Flink engine. Settings only one side knows are dropped
on the other side (listed in ``_JAVA_ONLY`` / ``_LIBRDKAFKA_ONLY``).

Schema registry client settings travel the same way, spelled ``schema.registry.<name>``
in the file and in ``-X`` (as Confluent's Java serializers take them; the serializers'
``basic.auth.user.info``, ``basic.auth.credentials.source`` and ``auto.register.schemas``
count too, without the prefix); they are not Kafka settings, so
:func:`load_client_config` leaves them out and
``connectors.avro.registry.load_registry_config`` takes them (:func:`read_properties`
reads the sources for both).

The ``repr`` of a config never shows a secret (``runtime.api.redact``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.api.errors import ConfigError
from runtime.api.redact import redact_settings

__all__ = [
    "ENV_PREFIX",
    "REGISTRY_NAMES",
    "REGISTRY_PREFIX",
    "RESERVED",
    "KafkaClientConfig",
    "as_client_config",
    "is_registry_setting",
    "parse_properties",
    "parse_overrides",
    "read_properties",
]

ENV_PREFIX = "SHOAL_KAFKA_"
#: Settings of the schema registry client, not of Kafka's (see the module docstring).
REGISTRY_PREFIX = "schema.registry."
#: Confluent serializer settings that belong to the registry without the prefix.
REGISTRY_NAMES = frozenset(
    {"basic.auth.user.info", "basic.auth.credentials.source", "auto.register.schemas"}
)


def is_registry_setting(name: str) -> bool:
    """Whether a setting belongs to the schema registry client, not to Kafka's."""
    return name.startswith(REGISTRY_PREFIX) or name in REGISTRY_NAMES


#: Settings Shoal owns per client: the user may not set them (see the module docstring).
RESERVED = frozenset(
    {
        "group.id",
        "group.instance.id",
        "transactional.id",
        "isolation.level",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.idempotence",
        "on_delivery",
        "logger",
    }
)
# Java client settings librdkafka does not know (translated or dropped for it).
_JAVA_ONLY = frozenset(
    {
        "sasl.jaas.config",
        "ssl.truststore.location",
        "ssl.truststore.type",
        "ssl.truststore.password",
        "ssl.keystore.type",
        "ssl.endpoint.identification.algorithm.java",
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
    }
)
# librdkafka settings the Java clients do not know (translated or dropped for them).
_LIBRDKAFKA_ONLY = frozenset(
    {
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "enable.ssl.certificate.verification",
        "ssl.endpoint.identification.algorithm",
        "socket.timeout.ms",
        "log_level",
        "debug",
        "api.version.request",
        "broker.address.family",
    }
)
_CALLBACKS = ("logger", "on_delivery", "error_cb")
_JAAS_FIELD = re.compile(r"""\b(username|password)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s;]+))""")
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class KafkaClientConfig:
    """Where the cluster is and the user's client settings (merged, see the module doc).

    Args:
        bootstrap: ``host:port[,host:port...]``.
        properties: the user's settings (file, ``-X``, environment), already merged.
    """

    bootstrap: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        reserved = sorted(k for k in self.properties if k in RESERVED)
        if reserved:
            raise ConfigError(
                f"Kafka setting {', '.join(reserved)} is managed by Shoal and cannot be set "
                "(use --group and --worker-id instead of group.id and transactional.id)"
            )

    def __repr__(self) -> str:
        return f"KafkaClientConfig(bootstrap={self.bootstrap!r}, properties={self.shown()!r})"

    def shown(self) -> dict[str, Any]:
        """The user's settings with secrets masked (for logs, errors and pages)."""
        return redact_settings(dict(self.properties))

    @property
    def secured(self) -> bool:
        """Whether the user configured TLS or SASL."""
        return self.properties.get("security.protocol", "PLAINTEXT").upper() != "PLAINTEXT"

    def client(self, defaults: Mapping[str, Any] | None = None, **owned: Any) -> dict[str, Any]:
        """The librdkafka settings of one client.

        Args:
            defaults: Shoal's defaults for this client (the user's settings override them).
            owned: settings the client needs for its guarantees (override everything);
                Python names with ``_`` stand for ``.`` (``group_id`` is ``group.id``),
                except the callbacks (``logger``, ``on_delivery``, ``error_cb``).
        """
        conf: dict[str, Any] = dict(defaults or {})
        conf.update(librdkafka_properties(self.properties))
        conf["bootstrap.servers"] = self.bootstrap
        for name, value in owned.items():
            key = name if name in _CALLBACKS else name.replace("_", ".")
            conf[key] = value
        return conf

    def java_properties(self) -> dict[str, str]:
        """The same settings for a Java client (the Flink engine's Kafka connector)."""
        props = {
            k: v
            for k, v in self.properties.items()
            if k not in _LIBRDKAFKA_ONLY and not is_registry_setting(k)
        }
        props["bootstrap.servers"] = self.bootstrap
        user, password = self.properties.get("sasl.username"), self.properties.get("sasl.password")
        if "sasl.jaas.config" not in props and user is not None and password is not None:
            mechanism = self.properties.get("sasl.mechanism", "PLAIN").upper()
            module = _SCRAM_MODULE if mechanism.startswith("SCRAM") else _PLAIN_MODULE
            props["sasl.jaas.config"] = (
                f'{module} required username="{_jaas_quote(user)}" '
                f'password="{_jaas_quote(password)}";'
            )
        ca = self.properties.get("ssl.ca.location")
        if ca is not None and "ssl.truststore.location" not in props:
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = ca
        if self.properties.get("enable.ssl.certificate.verification", "").lower() == "false":
            props["ssl.endpoint.identification.algorithm"] = ""
        return props

    def with_bootstrap(self, bootstrap: str) -> KafkaClientConfig:
        """The same settings for another address."""
        return KafkaClientConfig(bootstrap, self.properties)


def as_client_config(target: str | KafkaClientConfig) -> KafkaClientConfig:
    """A bare bootstrap address as a config without settings; a config as it is."""
    if isinstance(target, KafkaClientConfig):
        return target
    return KafkaClientConfig(target)


def librdkafka_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """The user's settings as librdkafka takes them (Java-only names translated)."""
    out = {
        k: v for k, v in properties.items() if k not in _JAVA_ONLY and not is_registry_setting(k)
    }
    jaas = properties.get("sasl.jaas.config")
    if jaas is not None:
        found = {
            m.group(1): next(g for g in m.groups()[1:] if g is not None)
            for m in _JAAS_FIELD.finditer(jaas)
        }
        out.setdefault("sasl.username", found.get("username", ""))
        out.setdefault("sasl.password", found.get("password", ""))
    if properties.get("ssl.truststore.type", "").upper() == "PEM":
        location = properties.get("ssl.truststore.location")
        if location is not None:
            out.setdefault("ssl.ca.location", location)
    elif "ssl.truststore.location" in properties and "ssl.ca.location" not in properties:
        raise ConfigError(
            "ssl.truststore.location must be a PEM file (ssl.truststore.type=PEM) or be given "
            "as ssl.ca.location: the client cannot read JKS trust stores"
        )
    return out


def parse_properties(text: str, source: str = "properties") -> dict[str, str]:
    """Parse Java ``.properties`` text: ``key=value``, ``key: value`` or ``key value``.

    Lines starting with ``#`` or ``!`` are comments; a line ending in a backslash
    continues on the next one; leading whitespace of a continuation is dropped.

    >>> parse_properties("# c\\nsecurity.protocol=SASL_SSL\\nsasl.mechanism : SCRAM-SHA-512\\n")
    {'security.protocol': 'SASL_SSL', 'sasl.mechanism': 'SCRAM-SHA-512'}

    Raises:
        ConfigError: a line has a key but no value.
    """
    out: dict[str, str] = {}
    logical: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical.append(line[:-1])
            continue
        logical.append(line)
        entry, logical = "".join(logical), []
        match = re.match(r"((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)$", entry)
        if match is None:
            raise ConfigError(f"{source}, line {number}: expected key=value, got {entry[:40]!r}")
        key = re.sub(r"\\(.)", r"\1", match.group(1))
        out[key] = match.group(2).replace("\\\\", "\\")
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``-X key=value`` options as a mapping.

    Raises:
        ConfigError: an item has no ``=``.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-X {item.split('=')[0]!r}: expected -X key=value")
        out[key.strip()] = value.strip()
    return out


def env_properties(env: Mapping[str, str]) -> dict[str, str]:
    """``SHOAL_KAFKA_<NAME>`` variables as settings (``SASL_PASSWORD`` -> ``sasl.password``)."""
    return {
        name[len(ENV_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX)
    }


def read_properties(
    *,
    config_file: Path | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The user's settings from the file, ``-X`` and ``SHOAL_KAFKA_*``, merged in that order.

    Raises:
        ConfigError: the file cannot be read or parsed, or an override is malformed.
    """
    props: dict[str, str] = {}
    if config_file is not None:
        try:
            text = config_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read --kafka-config {config_file}: {exc.strerror}") from exc
        props.update(parse_properties(text, str(config_file)))
    props.update(parse_overrides(overrides))
    props.update(env_properties(env or {}))
    return props


def load_client_config(
    bootstrap: str,
    *,
    config_file: Path | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> KafkaClientConfig:
    """Merge the settings sources in the documented order (registry settings left out).

    Raises:
        ConfigError: the file cannot be read or parsed, an override is malformed, or a
            setting Shoal owns is given.
    """
    props = {
        k: v
        for k, v in read_properties(config_file=config_file, overrides=overrides, env=env).items()
        if not is_registry_setting(k)
    }
    from_file = props.pop("bootstrap.servers", "")
    if not (bootstrap or from_file):
        raise ConfigError("no Kafka address: pass --bootstrap or set bootstrap.servers")
    return KafkaClientConfig(bootstrap or from_file, props)


def _jaas_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
