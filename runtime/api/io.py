"""Protocols between the engine and the outside world.

Connectors implement these; the engine and the test driver only see the protocols.
A raw record has the accessor methods of a Kafka client message, so the Kafka
source hands its messages to the engine without copying them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.api.errors import JobDefinitionError, RecordError


@dataclass(frozen=True, slots=True)
class Avro:
    """A sink format: Avro records of the schema named ``record``.

    ``record`` is a built-in schema (``schemas/``) or one of the job's own
    (``Job(..., schemas=FOLDER)``); the wire config decides the framing (single-object
    or a schema registry's).

    >>> Avro("QoeMetric")
    Avro(record='QoeMetric')
    """

    record: str

    def __post_init__(self) -> None:
        if not isinstance(self.record, str) or not self.record:
            raise JobDefinitionError(f"Avro() needs a record name, got {self.record!r}")


@dataclass(frozen=True, slots=True)
class Json:
    """A sink format: JSON objects (UTF-8), one per message.

    >>> Json()
    Json()
    """


SinkFormat = Avro | Json
"""How a sink encodes its records: ``Avro("Record")`` or ``Json()``."""


def format_schema(fmt: SinkFormat) -> str:
    """The schema name the engines and codecs know a sink format by (``""``: JSON)."""
    return fmt.record if isinstance(fmt, Avro) else ""


class RawRecord(Protocol):
    """One record as read from a source: bytes plus where it came from."""

    def topic(self) -> str | None:
        """Source topic."""
        ...

    def partition(self) -> int | None:
        """Source partition."""
        ...

    def offset(self) -> int | None:
        """Offset within the partition."""
        ...

    def key(self) -> bytes | None:
        """Message key."""
        ...

    def value(self) -> bytes | None:
        """Message value."""
        ...

    def timestamp(self) -> tuple[int, int]:
        """(timestamp type, epoch ms) as the broker reports it."""
        ...


class Codec(Protocol):
    """Turns bytes into records of one schema and back."""

    def decode_batch(
        self, datas: Sequence[bytes | None], origins: Sequence[Any] | None = None
    ) -> tuple[list[Any], list[tuple[int, RecordError]]]:
        """Decode a batch; failures are returned by index, not raised."""
        ...

    def encode(self, value: Any) -> bytes:
        """Encode one record."""
        ...


class CodecFactory(Protocol):
    """Gives the codecs of a job: per source, per sink, and for internal records.

    A source's or sink's codec depends on its endpoint (its wire format, and with a
    schema registry its subject, which is named after its topic), so the engine asks by
    step name; ``""`` as a schema means JSON.
    """

    def __call__(self, schema: str) -> Codec:
        """The codec of internal records of ``schema`` (dead letters)."""
        ...

    def source(self, name: str, schema: str) -> Codec:
        """The codec the source ``name`` decodes with."""
        ...

    def sink(self, name: str, schema: str) -> Codec:
        """The codec the sink ``name`` encodes with."""
        ...


@dataclass(frozen=True, slots=True)
class RefusedWrite:
    """An output record a transport did not write because the topic would refuse it.

    Attributes:
        topic: where it was to go.
        key: its message key.
        value: its bytes (``None`` when they are what made it unacceptable: too large).
        timestamp_ms: its timestamp.
        reason: why, in one line.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    reason: str


class SourceReader(Protocol):
    """Batched reads from the job's source topics."""

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first."""
        ...

    def close(self) -> None:
        """Leave the group and release resources."""
        ...


class SinkWriter(Protocol):
    """Batched writes to output topics."""

    def write(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None) -> None:
        """Queue one record."""
        ...

    def flush(self) -> None:
        """Wait until every queued record is acknowledged; raise on failure."""
        ...


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A record an external sink gave up on, handed back for the job's dead-letter output.

    Args:
        key: the dead letter's key: the sink's idempotency key when it has one (a
            webhook's ``webhook-id``), so a replay delivers it once.
        value: the record as the job emitted it.
        error_class: class name of the last error.
        error_message: why it was given up (already free of secrets).
    """

    key: bytes | None
    value: Any
    error_class: str
    error_message: str


class ExternalSink(Protocol):
    """A sink outside Kafka (webhook, PostgreSQL, Redis).

    The worker hands it each batch's records and calls ``flush`` before it commits the
    input offsets (and, with exactly-once, before the Kafka transaction commits), so a
    replay after a crash writes the same records again: ``flush`` must make writes
    durable and the writes must be idempotent (upserts, idempotency keys). Records the
    sink gives up on (a receiver that stays down past its retry budget) are handed back
    by ``drain_undelivered`` right after ``flush`` and go to the dead-letter output in
    the same checkpoint, so neither the job nor its checkpoints stall on them.
    """

    def write(self, records: Sequence[tuple[Any, Any, int]]) -> None:
        """Queue ``(key, value, event_time_ms)`` records."""
        ...

    def flush(self) -> None:
        """Deliver everything queued; retry transient failures; raise when it cannot."""
        ...

    def drain_undelivered(self) -> list[Undelivered]:
        """Records given up on since the last call (``[]`` for sinks that never give up)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
