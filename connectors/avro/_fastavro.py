"""The one module that imports fastavro.

Every other module of ``connectors.avro`` reaches fastavro through the names
below, so its types and errors stay behind this boundary.

Decoding is the platform's hot path. fastavro's public ``schemaless_reader``
re-parses both schemas and builds an options dict on every call; the private
``_read_data`` it delegates to does the same work without that. We call
``_read_data`` with schemas parsed once per writer/reader pair (a
:class:`ReadPlan`) when a probe at import shows it behaves like the public
function, and fall back to the public one otherwise (``FAST_READ`` says which).
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, Final, NamedTuple

import fastavro
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _validate

from runtime.api.errors import ConfigError

__all__ = [
    "FAST_READ",
    "RAW_OPTIONS",
    "RAW_READ",
    "ReadPlan",
    "canonical_form",
    "fingerprint",
    "is_valid",
    "parse",
    "read_body",
    "read_container",
    "read_plan",
    "write_body",
    "write_container",
]

#: Options fastavro's public reader passes down; the defaults, spelled out.
_READ_OPTIONS: Final[dict[str, Any]] = {
    "return_record_name": False,
    "return_record_name_override": False,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}


class ReadPlan(NamedTuple):
    """A writer/reader schema pair parsed once, ready for :func:`read_body`.

    Attributes:
        writer: the parsed writer schema.
        named: fastavro's named-type tables for the writer and the reader.
        reader: the parsed reader schema, or ``None`` when it equals the writer.
    """

    writer: Any
    named: dict[str, dict[str, Any]]
    reader: Any | None


def parse(schema: Any) -> Any:
    """Parse and check an Avro schema.

    Args:
        schema: the schema as JSON (a dict, list or type name).

    Returns:
        fastavro's parsed form of the schema.

    Raises:
        ConfigError: the schema is not valid Avro.
    """
    try:
        return fastavro.parse_schema(schema)
    except Exception as exc:
        raise ConfigError(f"invalid Avro schema: {exc}") from exc


def canonical_form(schema: Any) -> str:
    """The schema's Parsing Canonical Form, as the Avro specification defines it.

    Args:
        schema: the schema as JSON or parsed.

    Returns:
        The canonical JSON text.

    Raises:
        ConfigError: the schema is not valid Avro.
    """
    try:
        return str(to_parsing_canonical_form(schema))
    except Exception as exc:
        raise ConfigError(f"invalid Avro schema: {exc}") from exc


def fingerprint(schema: Any) -> bytes:
    """The CRC-64-AVRO fingerprint of the schema's canonical form, little-endian.

    Args:
        schema: the schema as JSON or parsed.

    Returns:
        The 8 bytes that follow ``C3 01`` in single-object encoding.

    Raises:
        ConfigError: the schema is not valid Avro.
    """
    # fastavro gives the hex of the bytes in little-endian order already (as
    # Java does), not of the 64-bit number: decode the hex, do not reverse it.
    return bytes.fromhex(_fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def read_plan(writer: Any, reader: Any | None = None) -> ReadPlan:
    """Parse a writer/reader pair once for repeated :func:`read_body` calls.

    Args:
        writer: the schema the data was written with.
        reader: the schema to resolve the data into; ``None`` reads as written.

    Returns:
        The parsed pair.

    Raises:
        ConfigError: either schema is not valid Avro.
    """
    named: dict[str, dict[str, Any]] = {"writer": {}, "reader": {}}
    try:
        parsed_writer = fastavro.parse_schema(writer, named["writer"])
        parsed_reader = None
        if reader is not None and canonical_form(reader) != canonical_form(writer):
            parsed_reader = fastavro.parse_schema(reader, named["reader"])
        elif reader is not None:
            # Same canonical form: only defaults, docs or aliases differ, none of
            # which changes how the bytes read.
            fastavro.parse_schema(reader, named["reader"])
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"invalid Avro schema: {exc}") from exc
    return ReadPlan(parsed_writer, named, parsed_reader)


def _public_read(
    fo: IO[bytes], writer: Any, named: dict[str, dict[str, Any]], reader: Any, options: Any
) -> Any:
    """Read one body with fastavro's public reader (the fallback path)."""
    del named, options
    return fastavro.schemaless_reader(fo, writer, reader)


def _choose_reader() -> tuple[Callable[..., Any], bool]:
    """Pick fastavro's private reader if it reads a probe exactly like the public one."""
    private = getattr(importlib.import_module("fastavro._read"), "_read_data", None)
    if private is None:
        return _public_read, False
    old = {
        "type": "record",
        "name": "Probe",
        "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": ["null", "string"]}],
    }
    new = {
        "type": "record",
        "name": "Probe",
        "fields": [
            {"name": "b", "type": ["null", "string"]},
            {"name": "c", "type": "int", "default": 7},
        ],
    }
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), {"a": -3, "b": "é"})
    body = buffer.getvalue()
    try:
        for reader in (None, new):
            plan = read_plan(old, reader)
            got = private(io.BytesIO(body), plan.writer, plan.named, plan.reader, _READ_OPTIONS)
            if got != fastavro.schemaless_reader(io.BytesIO(body), old, reader):
                return _public_read, False
    except Exception:
        return _public_read, False
    return private, True


_READ, FAST_READ = _choose_reader()


def read_body(fo: IO[bytes], plan: ReadPlan) -> Any:
    """Read one schemaless Avro body from ``fo`` at its current position.

    Args:
        fo: the stream; left just after the body.
        plan: the parsed writer/reader pair.

    Returns:
        The decoded datum (a dict for a record schema).

    Raises:
        Exception: whatever fastavro raises for bad bytes (``EOFError``,
            ``IndexError``, ``UnicodeDecodeError``, resolution errors ...);
            callers wrap it.
    """
    return _READ(fo, plan.writer, plan.named, plan.reader, _READ_OPTIONS)


#: The raw reader for hot loops: ``RAW_READ(fo, writer, named, reader, RAW_OPTIONS)``.
RAW_READ: Final[Callable[..., Any]] = _READ
RAW_OPTIONS: Final[dict[str, Any]] = _READ_OPTIONS


def write_body(fo: IO[bytes], parsed: Any, value: Any) -> None:
    """Append the schemaless Avro body of ``value`` to ``fo``.

    Args:
        fo: the stream to write to.
        parsed: the parsed schema.
        value: the datum.

    Raises:
        Exception: whatever fastavro raises for a value that does not fit the
            schema; callers wrap it.
    """
    fastavro.schemaless_writer(fo, parsed, value)


def is_valid(value: Any, parsed: Any) -> bool:
    """Whether ``value`` fits the schema, by fastavro's validator (fast, no detail).

    Args:
        value: the datum.
        parsed: the parsed schema.

    Returns:
        True when fastavro would write it.
    """
    try:
        return bool(_validate(value, parsed, raise_errors=False))
    except Exception:
        return False


def write_container(
    fo: IO[bytes],
    schema: Any,
    records: Iterable[Any],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write an Avro object container file (deflate blocks) of ``records``.

    Args:
        fo: the binary stream to write to.
        schema: the schema of every record, as JSON.
        records: the records.
        metadata: extra header entries (names must not start with ``avro.``).

    Raises:
        ConfigError: the schema is invalid, or a record does not fit it (the
            message names the record's position).
    """
    parsed = parse(schema)
    count = 0

    def counted() -> Iterator[Any]:
        nonlocal count
        for record in records:
            count += 1
            yield record

    try:
        fastavro.writer(
            fo, parsed, counted(), codec="deflate", metadata=dict(metadata or {}), validator=True
        )
    except Exception as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"record {count} does not fit the schema: {detail}") from exc


def read_container(fo: IO[bytes], reader_schema: Any | None = None) -> tuple[Any, Iterator[Any]]:
    """Open an Avro object container file: its writer schema and its records.

    Args:
        fo: the binary stream.
        reader_schema: resolve every record into this schema (Avro schema
            resolution); ``None`` reads records as written.

    Returns:
        ``(writer schema as JSON, iterator of records)``.

    Raises:
        ConfigError: the stream is not an Avro container file, or the reader
            schema is invalid.
    """
    try:
        parsed_reader = parse(reader_schema) if reader_schema is not None else None
        reader = fastavro.reader(fo, parsed_reader)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"not an Avro container file: {exc}") from exc
    return reader.writer_schema, iter(reader)
