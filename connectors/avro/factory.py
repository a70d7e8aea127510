"""Choose a serde by wire-format name, as endpoint configuration spells it.

Example:
    >>> from connectors.avro.repository import SchemaRepository
    >>> ping = {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "int"}]}
    >>> make_serde("avro", "Ping", SchemaRepository([ping]))
    AvroSerde('Ping')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from connectors.avro.confluent import RegistryClient, RegistrySerde, value_subject
from connectors.avro.repository import SchemaRepository
from connectors.avro.serde import Serde
from connectors.avro.single_object import AvroSerde
from connectors.kafka.client import registry_client
from runtime.api.errors import ConfigError

__all__ = ["FORMATS", "make_serde"]

#: Wire formats by name; the first is the default.
FORMATS: Final = ("avro", "confluent")


def make_serde(
    format: str,
    schema_name: str,
    repository: SchemaRepository,
    registry_conf: Mapping[str, Any] | None = None,
    *,
    topic: str | None = None,
    registry: RegistryClient | None = None,
) -> Serde:
    """Build the serde for a wire format.

    Args:
        format: ``"avro"`` (single-object encoding, the default) or
            ``"confluent"`` (schema registry framing).
        schema_name: the record schema, full or unqualified name.
        repository: the known schemas.
        registry_conf: schema registry client settings (``{"url": ...}``);
            ``"confluent"`` needs it unless ``registry`` is given.
        topic: the topic; ``"confluent"`` registers under ``<topic>-value``.
        registry: an existing registry client to share (overrides
            ``registry_conf``).

    Returns:
        The serde.

    Raises:
        ConfigError: unknown format (the message lists the valid ones), unknown
            schema, or settings ``"confluent"`` needs are missing.
    """
    if format == "avro":
        return AvroSerde(schema_name, repository)
    if format != "confluent":
        raise ConfigError(
            f"unknown serialization format {format!r}; valid formats: {', '.join(FORMATS)}"
        )
    if not topic:
        raise ConfigError("format 'confluent' needs the topic (its subject is '<topic>-value')")
    if registry is None:
        if not registry_conf or not registry_conf.get("url"):
            raise ConfigError(
                "format 'confluent' needs a schema registry: registry_conf={'url': ...}"
            )
        registry = registry_client(dict(registry_conf))
    return RegistrySerde(schema_name, repository, registry, value_subject(topic))
