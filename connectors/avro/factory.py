"""Choose a serde by wire-format name, as endpoint configuration spells it.

Example:
    >>> from connectors.avro.repository import SchemaRepository
    >>> ping = {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "int"}]}
    >>> make_serde("single-object", "Ping", SchemaRepository([ping]))
    AvroSerde('Ping')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from connectors.avro.confluent import RegistryClient, RegistryLookup, RegistrySerde
from connectors.avro.registry import RegistryConfig
from connectors.avro.repository import SchemaRepository
from connectors.avro.serde import Serde
from connectors.avro.single_object import AvroSerde
from connectors.avro.subjects import DEFAULT_STRATEGY, subject_name
from runtime.api.errors import ConfigError

__all__ = ["CONFLUENT", "FORMATS", "SINGLE_OBJECT", "check_format", "make_serde"]

SINGLE_OBJECT: Final = "single-object"
CONFLUENT: Final = "confluent"
#: Wire formats by name.
FORMATS: Final = (SINGLE_OBJECT, CONFLUENT)


def check_format(format: str) -> str:
    """``format`` if it is one of :data:`FORMATS`.

    Raises:
        ConfigError: it is not; the message lists the valid ones.
    """
    if format not in FORMATS:
        raise ConfigError(
            f"unknown serialization format {format!r}; valid formats: {', '.join(FORMATS)}"
        )
    return format


def make_serde(
    format: str,
    schema_name: str,
    repository: SchemaRepository,
    registry_conf: Mapping[str, Any] | None = None,
    *,
    topic: str | None = None,
    registry: RegistryClient | None = None,
    strategy: str = DEFAULT_STRATEGY,
    auto_register: bool = True,
    lookup: RegistryLookup | None = None,
) -> Serde:
    """Build the serde for a wire format.

    Args:
        format: ``"single-object"`` (Avro single-object encoding) or ``"confluent"``
            (schema registry framing).
        schema_name: the record schema, full or unqualified name.
        repository: the known schemas.
        registry_conf: schema registry client settings (``{"url": ...}``, see
            ``connectors.avro.registry``); ``"confluent"`` needs it unless ``registry``
            is given.
        topic: the topic; ``"confluent"`` names its subject after it.
        registry: an existing registry client to share (overrides ``registry_conf``).
        strategy: the subject naming strategy (``connectors.avro.subjects``).
        auto_register: register the writer schema (else only look it up).
        lookup: a shared cache of writer schemas by id.

    Returns:
        The serde.

    Raises:
        ConfigError: unknown format or strategy (the message lists the valid ones),
            unknown schema, or settings ``"confluent"`` needs are missing.
    """
    if check_format(format) == SINGLE_OBJECT:
        return AvroSerde(schema_name, repository)
    if not topic:
        raise ConfigError("format 'confluent' needs the topic (subjects are named after it)")
    if registry is None:
        if not registry_conf or not registry_conf.get("url"):
            raise ConfigError(
                "format 'confluent' needs a schema registry: registry_conf={'url': ...}"
            )
        settings = {k: str(v) for k, v in registry_conf.items() if k != "url"}
        registry = RegistryConfig(str(registry_conf["url"]), settings).connect()
    entry = repository.current(schema_name)
    return RegistrySerde(
        schema_name,
        repository,
        registry,
        subject_name(strategy, topic, entry.name),
        auto_register=auto_register,
        lookup=lookup,
    )
