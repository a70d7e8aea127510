"""Avro single-object encoding: the default wire format, no registry needed.

A record is ``C3 01``, then the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema's Parsing Canonical Form, then the schemaless Avro body (Avro
specification, "Single-object encoding"). The fingerprint is looked up in a
:class:`~connectors.avro.repository.SchemaRepository`, so any version it knows
can be read into the current schema.

Example:
    >>> from connectors.avro.repository import SchemaRepository
    >>> ping = {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "int"}]}
    >>> serde = AvroSerde("Ping", SchemaRepository([ping]))
    >>> data = serde.encode({"n": 7})
    >>> data[:2].hex(), serde.decode(data)
    ('c301', {'n': 7})
"""

from __future__ import annotations

from typing import Any, Final

from connectors.avro.repository import SchemaRepository
from connectors.avro.serde import FramedSerde, FrameError

__all__ = ["SINGLE_OBJECT_MAGIC", "AvroSerde"]

#: The two bytes every single-object encoded record starts with.
SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
_HEADER_SIZE: Final = 10


class AvroSerde(FramedSerde):
    """Single-object encoding of one record schema.

    Values are written with the repository's current version of the schema and
    read into it from whichever known version wrote them.

    Args:
        schema_name: the record's full or unqualified name.
        repository: the known schemas and their older versions.

    Raises:
        ConfigError: the repository has no such schema.
    """

    def __init__(self, schema_name: str, repository: SchemaRepository) -> None:
        entry = repository.current(schema_name)
        super().__init__(entry, _HEADER_SIZE)
        self._repository = repository
        self._header = SINGLE_OBJECT_MAGIC + entry.fingerprint

    def __repr__(self) -> str:
        return f"AvroSerde({self.schema.name!r})"

    def _write_header(self) -> bytes:
        return self._header

    def _writer_for(self, header: bytes) -> Any:
        if header[:1] == b"\x00":
            raise FrameError(
                f"bad magic bytes {header[:2].hex()}, expected c301 (Avro single-object "
                "encoding); a first byte 00 is schema registry framing: configure "
                "--schema-registry URL"
            )
        if len(header) < _HEADER_SIZE:
            raise FrameError(
                f"{len(header)} bytes is shorter than the {_HEADER_SIZE}-byte single-object header"
            )
        if header[:2] != SINGLE_OBJECT_MAGIC:
            raise FrameError(
                f"bad magic bytes {header[:2].hex()}, expected c301 (Avro single-object "
                "encoding); is the topic written in another format?"
            )
        entry = self._repository.by_fingerprint(header[2:])
        if entry is None:
            raise FrameError(
                f"unknown writer schema fingerprint {header[2:].hex()} "
                "(no known version of any schema has it)"
            )
        return entry.schema
