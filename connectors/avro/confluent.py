"""Confluent Schema Registry framing: magic byte 0, 4-byte schema id, Avro body.

Writing: the writer schema is registered under a subject (see
:mod:`connectors.avro.subjects`; by default ``<topic>-value``) by :meth:`RegistrySerde.register`,
which a job calls for every sink before it reads anything, so a schema the registry
refuses (its compatibility rule, bad credentials, an unreachable registry) stops the job
at start with one line instead of failing mid-run. Its id is cached; encoding never
asks the registry again.

Reading: ids met while decoding are fetched once through a :class:`RegistryLookup` and
cached, with their resolution against the reader schema. A record whose id the registry
does not know, or cannot be asked about (after the client's own retries), is a bad
record (:class:`~connectors.avro.serde.FrameError`, dead-lettered with the reason), not
a crash; such a failure is remembered for ``retry_after_s`` so that a registry outage
costs one lookup per id and interval instead of one per record.

The registry client comes from ``connectors.avro.registry.RegistryConfig.connect``; any
object with the three methods of :class:`RegistryClient` works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from connectors.avro.repository import SchemaRepository
from connectors.avro.serde import FramedSerde, FrameError
from connectors.kafka.client import registry_error_status, registry_schema
from runtime.api.errors import ConfigError, ConnectorError
from runtime.api.redact import redact_text

__all__ = [
    "CONFLUENT_MAGIC",
    "RegistryClient",
    "RegistryLookup",
    "RegistrySerde",
    "schema_id_of",
    "value_subject",
]

#: The byte every registry-framed record starts with.
CONFLUENT_MAGIC: Final = b"\x00"
HEADER_SIZE: Final = 5
_NOT_FOUND: Final = 404
_CONFLICT: Final = 409
_INVALID: Final = 422
_DENIED: Final = (401, 403)
#: Seconds a failed id lookup is remembered before the registry is asked again.
RETRY_AFTER_S: Final = 30.0


class RegistryClient(Protocol):
    """The part of confluent-kafka's ``SchemaRegistryClient`` Shoal uses."""

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


def schema_id_of(data: bytes) -> int | None:
    """The schema id of a registry-framed record, or ``None`` if ``data`` is not one.

    >>> schema_id_of(b"\\x00\\x00\\x00\\x00\\x07body"), schema_id_of(b"\\xc3\\x01...")
    (7, None)
    """
    if len(data) < HEADER_SIZE or data[:1] != CONFLUENT_MAGIC:
        return None
    return int.from_bytes(data[1:HEADER_SIZE], "big")


def _one_line(exc: BaseException) -> str:
    return redact_text(" ".join(str(exc).split()) or type(exc).__name__)


class RegistryLookup:
    """Writer schemas by registry id, cached; failures remembered for a while.

    Args:
        client: the registry client.
        retry_after_s: how long a failed lookup is answered from memory.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        client: RegistryClient,
        *,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._writers: dict[int, Any] = {}
        self._failed: dict[int, tuple[str, float]] = {}

    def remember(self, schema_id: int, schema: Any) -> None:
        """Cache a schema whose id is known (one this process registered)."""
        self._writers[schema_id] = schema

    def writer(self, schema_id: int) -> Any:
        """The writer schema (as JSON) with this id.

        Raises:
            FrameError: the registry does not know the id, the schema is not a usable
                Avro schema, or the registry cannot be asked (the reason says which).
        """
        schema = self._writers.get(schema_id)
        if schema is not None:
            return schema
        failed = self._failed.get(schema_id)
        if failed is not None and self._clock() < failed[1]:
            raise FrameError(failed[0])
        try:
            schema = self._fetch(schema_id)
        except FrameError as exc:
            self._failed[schema_id] = (str(exc), self._clock() + self._retry_after_s)
            raise
        self._failed.pop(schema_id, None)
        self._writers[schema_id] = schema
        return schema

    def _fetch(self, schema_id: int) -> Any:
        try:
            registered = self.client.get_schema(schema_id)
        except Exception as exc:
            if registry_error_status(exc) == _NOT_FOUND:
                raise FrameError(f"schema id {schema_id} is unknown to the registry") from exc
            raise FrameError(
                f"schema registry lookup of schema id {schema_id} failed: {_one_line(exc)}"
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


class RegistrySerde(FramedSerde):
    """Confluent-framed Avro for one record schema and one subject.

    Args:
        schema_name: the record's full or unqualified name in ``repository``.
        repository: where the current (reader and writer) schema comes from.
        client: a schema registry client.
        subject: the subject to register the writer schema under.
        auto_register: register the schema (the default); when False it must already
            be registered and is only looked up.
        lookup: a shared id cache over ``client`` (one is made otherwise).

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
        lookup: RegistryLookup | None = None,
    ) -> None:
        super().__init__(repository.current(schema_name), HEADER_SIZE)
        self._client = client
        self._subject = subject
        self._auto_register = auto_register
        self._header: bytes | None = None
        self._lookup = lookup or RegistryLookup(client)

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
            ConfigError: the registry refuses the schema (see :meth:`register`).
            ConnectorError: the registry cannot be reached.
        """
        return int.from_bytes(self._write_header()[1:], "big")

    def register(self) -> int:
        """Register (or, without auto-registration, look up) the writer schema now.

        Jobs call this for every sink at start; encoding then never asks the registry.

        Returns:
            The schema id.

        Raises:
            ConfigError: the registry refuses the schema: incompatible with the
                subject's registered versions under its compatibility rule, invalid, not
                registered while auto-registration is off, or our credentials are
                refused. One line naming the schema, the subject and the registry's
                reason.
            ConnectorError: the registry cannot be reached or fails.
        """
        return self.schema_id()

    def _write_header(self) -> bytes:
        if self._header is None:
            schema = registry_schema(self.schema.to_json())
            try:
                if self._auto_register:
                    schema_id = int(self._client.register_schema(self._subject, schema))
                else:
                    schema_id = int(self._client.lookup_schema(self._subject, schema).schema_id)
            except Exception as exc:
                raise self._refusal(exc) from exc
            self._lookup.remember(schema_id, self.schema.schema)
            self._header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        return self._header

    def _refusal(self, exc: Exception) -> Exception:
        what = f"{self.schema.name} under subject {self._subject!r}"
        status, reason = registry_error_status(exc), _one_line(exc)
        if status == _CONFLICT:
            return ConfigError(
                f"the schema registry refuses {what}: incompatible with the versions "
                f"registered there under the subject's compatibility rule ({reason})"
            )
        if status == _INVALID:
            return ConfigError(f"the schema registry refuses {what} as invalid ({reason})")
        if status in _DENIED:
            return ConfigError(
                f"the schema registry denies access to {what} (HTTP {status}): check "
                f"basic.auth.user.info and the registry's permissions ({reason})"
            )
        if status == _NOT_FOUND and not self._auto_register:
            return ConfigError(
                f"{what} is not registered in the schema registry and "
                f"auto.register.schemas is false: register it first ({reason})"
            )
        action = "register" if self._auto_register else "look up"
        return ConnectorError(f"cannot {action} {what} in the schema registry: {reason}")

    def _writer_for(self, header: bytes) -> Any:
        if len(header) < HEADER_SIZE:
            raise FrameError(
                f"{len(header)} bytes is shorter than the {HEADER_SIZE}-byte registry header"
            )
        if header[:1] != CONFLUENT_MAGIC:
            raise FrameError(
                f"bad magic byte {header[:1].hex()}, expected 00 (schema registry framing); "
                "is the topic written in another format?"
            )
        return self._lookup.writer(int.from_bytes(header[1:], "big"))
