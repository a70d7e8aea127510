"""The one module that imports confluent_kafka.

Everything else in Shoal reaches the Kafka client through the names below, so
the client library's types stay behind the connector boundary.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
)

# librdkafka's own log lines go through Python logging instead of stderr.
CLIENT_LOGGER = logging.getLogger("shoal.kafka.client")

__all__ = [
    "CLIENT_LOGGER",
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "AclBinding",
    "AclOperation",
    "AclPermissionType",
    "AdminClient",
    "ConfigResource",
    "Consumer",
    "ConsumerGroupTopicPartitions",
    "IsolationLevel",
    "KafkaError",
    "KafkaException",
    "Message",
    "NewTopic",
    "OffsetSpec",
    "Producer",
    "ResourcePatternType",
    "ResourceType",
    "registry_client",
    "registry_error_status",
    "registry_schema",
    "TopicPartition",
]


def registry_client(conf: dict[str, Any]) -> Any:
    """A Confluent Schema Registry client (imported lazily: it pulls in an HTTP stack).

    Args:
        conf: client settings, e.g. ``{"url": "http://registry:8081"}``. A
            ``mock://`` URL gives the client library's in-process fake registry.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client(conf)


def registry_schema(schema_str: str) -> Any:
    """A registry schema object for an Avro schema text."""
    from confluent_kafka.schema_registry import Schema

    return Schema(schema_str, schema_type="AVRO")


def registry_error_status(exc: BaseException) -> int | None:
    """The HTTP status a schema registry answered with, if ``exc`` is such an answer.

    ``None`` for everything else (no answer at all: connection refused, timeouts, TLS).
    """
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        return int(exc.http_status_code)
    return None
