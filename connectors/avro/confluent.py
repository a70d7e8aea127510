"""Confluent Schema Registry framing: magic byte 0, 4-byte schema id, Avro body.

The writer schema is registered (or looked up) under the subject
``<topic>-value`` (the registry's default "topic name" strategy) and its id is
cached; ids met while decoding are fetched once and cached with their
resolution against the reader schema.

The registry client comes from ``connectors.kafka.client.registry_client``; any
object with the same three methods works (see :class:`RegistryClient`).
"""

from __future__ import annotations

import json
from typing import Any, Final, Protocol

from connectors.avro.repository import SchemaRepository
from connectors.avro.serde import FramedSerde, FrameError
from connectors.kafka.client import registry_schema
from runtime.api.errors import ConnectorError

__all__ = ["CONFLUENT_MAGIC", "RegistryClient", "RegistrySerde", "value_subject"]

#: The byte every registry-framed record starts with.
CONFLUENT_MAGIC: Final = b"\x00"
_HEADER_SIZE: Final = 5
_NOT_FOUND: Final = 404


class RegistryClient(Protocol):
    """The part of confluent-kafka's ``SchemaRegistryClient`` this serde uses."""

    def register_schema(self, subject_name: str, schema: Any) -> int:
        """Register a schema under a subject; returns its id."""
        ...

    def lookup_schema(self, subject_name: str, schema: Any) -> Any:
        """Find an already registered schema; the result has ``schema_id``."""
        ...

    def get_schema(self, schema_id: int) -> Any:
        """The schema with this id; the result has ``schema_str``."""
        ...


def value_subject(topic: str) -> str:
    """The registry subject of a topic's values (``"<topic>-value"``).

    Args:
        topic: the Kafka topic.

    Returns:
        The subject name.
    """
    return f"{topic}-value"


class RegistrySerde(FramedSerde):
    """Confluent-framed Avro for one record schema and one subject.

    Args:
        schema_name: the record's full or unqualified name in ``repository``.
        repository: where the current (reader and writer) schema comes from.
        client: a schema registry client.
        subject: the subject to register the writer schema under.
        auto_register: register the schema on first encode (the registry
            client's default); when False it must already be registered.

    Raises:
        ConfigError: the repository has no such schema.
    """

    def __init__(
        self,
        schema_name: str,
        repository: SchemaRepository,
        client: RegistryClient,
        subject: str,
        *,
        auto_register: bool = True,
    ) -> None:
        super().__init__(repository.current(schema_name), _HEADER_SIZE)
        self._client = client
        self._subject = subject
        self._auto_register = auto_register
        self._header: bytes | None = None
        self._writers: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"RegistrySerde({self.schema.name!r}, subject={self._subject!r})"

    @property
    def subject(self) -> str:
        """The subject the writer schema is registered under."""
        return self._subject

    def schema_id(self) -> int:
        """The registry id of the schema this serde writes (registering it if allowed).

        Returns:
            The id.

        Raises:
            ConnectorError: the registry failed or does not know the schema.
        """
        return int.from_bytes(self._write_header()[1:], "big")

    def _write_header(self) -> bytes:
        if self._header is None:
            schema = registry_schema(self.schema.to_json())
            try:
                if self._auto_register:
                    schema_id = int(self._client.register_schema(self._subject, schema))
                else:
                    schema_id = int(self._client.lookup_schema(self._subject, schema).schema_id)
            except Exception as exc:
                action = "register" if self._auto_register else "look up"
                raise ConnectorError(
                    f"cannot {action} {self.schema.name} under subject {self._subject!r} "
                    f"in the schema registry: {exc}"
                ) from exc
            self._writers[schema_id] = self.schema.schema
            self._header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        return self._header

    def _writer_for(self, header: bytes) -> Any:
        if len(header) < _HEADER_SIZE:
            raise FrameError(
                f"{len(header)} bytes is shorter than the {_HEADER_SIZE}-byte registry header"
            )
        if header[:1] != CONFLUENT_MAGIC:
            raise FrameError(
                f"bad magic byte {header[:1].hex()}, expected 00 (schema registry framing); "
                "is the topic written in another format?"
            )
        schema_id = int.from_bytes(header[1:], "big")
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._fetch(schema_id)
            self._writers[schema_id] = writer
        return writer

    def _fetch(self, schema_id: int) -> Any:
        try:
            registered = self._client.get_schema(schema_id)
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == _NOT_FOUND:
                raise FrameError(f"schema id {schema_id} is unknown to the registry") from exc
            # Not this record's fault: the registry is down or refuses us.
            raise ConnectorError(
                f"cannot fetch schema id {schema_id} from the registry: {exc}"
            ) from exc
        schema_type = getattr(registered, "schema_type", None) or "AVRO"
        if schema_type != "AVRO":
            raise FrameError(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        if getattr(registered, "references", None):
            raise FrameError(f"schema id {schema_id} uses schema references (not supported)")
        try:
            return json.loads(registered.schema_str)
        except (TypeError, ValueError) as exc:
            raise FrameError(f"schema id {schema_id} is not valid JSON: {exc}") from exc
