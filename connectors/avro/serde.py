"""What every Avro serde offers, and the framing logic they share.

A wire format is a short header naming the writer schema, then the schemaless
Avro body. :class:`FramedSerde` does everything but the header: encoding,
validation, and decoding with writer-to-reader resolution, cached per header.
Subclasses say how to write their header and how a header maps to a writer
schema (:mod:`connectors.avro.single_object`, :mod:`connectors.avro.confluent`).

``decode_batch`` is the platform's hot path. With the native decoder
(:mod:`connectors.avro.native`) a batch whose records share the first one's header
is read in one call, and only the records it hands back go the other way: per
record one slice, one comparison with the previous header, one ``BytesIO`` and one
call into fastavro. Either way a reshape follows when an older writer version needs
one (see :mod:`connectors.avro.projection`). Everything else (schema parsing,
resolution pairs, origins of failed records) happens once per writer schema or
only on failure.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from connectors.avro import _fastavro
from connectors.avro.limits import TooManyItems, item_check
from connectors.avro.native import decoder_for
from connectors.avro.projection import Projector, compile_projection, identity
from connectors.avro.repository import SchemaEntry
from connectors.avro.schema_tree import describe, kind, normalize, same_name
from connectors.avro.validation import find_violation, integer_fields, misfit_integer
from runtime.api.errors import (
    ConfigError,
    ConnectorError,
    DecodeError,
    RecordOrigin,
    SchemaError,
)

__all__ = ["FrameError", "FramedSerde", "Origins", "Serde", "origin_at"]

#: Where failed records of a batch came from: one origin per record, or a
#: function from a record's index to its origin (called only on failure).
Origins = Sequence[RecordOrigin] | Callable[[int], RecordOrigin] | None


class Serde(Protocol):
    """Turns values of one record schema into bytes and back."""

    @property
    def schema(self) -> SchemaEntry:
        """The record schema values are written with and read into."""
        ...

    def validate(self, value: Mapping[str, Any], origin: RecordOrigin | None = None) -> None:
        """Raise :class:`SchemaError` naming the field path if ``value`` breaks the schema."""
        ...

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode one value."""
        ...

    def encode_many(self, values: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode several values."""
        ...

    def decode(self, data: bytes, origin: RecordOrigin | None = None) -> dict[str, Any]:
        """Decode one record, raising :class:`DecodeError` for bad bytes."""
        ...

    def decode_batch(
        self, datas: Sequence[bytes], origins: Origins = None
    ) -> tuple[list[dict[str, Any]], list[tuple[int, DecodeError]]]:
        """Decode many records, collecting failures by index instead of raising."""
        ...


class _Decoder(NamedTuple):
    """How to read bodies behind one header: a fastavro plan, a projection, and the
    native decoder of the writer schema when there is one (:mod:`.native`)."""

    writer: Any
    named: dict[str, dict[str, Any]]
    reader: Any | None
    project: Projector | None
    native: Any | None = None
    #: Refuses bodies asking for too many array items of no bytes (:mod:`.limits`).
    items: Callable[[bytes, int], None] | None = None


class FrameError(Exception):
    """A record's header is bad or names an unknown writer schema (internal)."""


class _TrailingBytes(Exception):
    """The body decoded but bytes are left over."""


class FramedSerde:
    """Encode and decode one record schema behind a header naming the writer schema.

    Args:
        entry: the schema values are written with and decoded into.
        header_size: how many bytes the header has.
    """

    def __init__(self, entry: SchemaEntry, header_size: int) -> None:
        self._entry = entry
        self._header_size = header_size
        self._plans: dict[bytes, _Decoder] = {}
        self._integers = integer_fields(entry.tree)

    @property
    def schema(self) -> SchemaEntry:
        """The record schema values are written with and read into."""
        return self._entry

    # -- for subclasses -------------------------------------------------------

    def _write_header(self) -> bytes:
        """The header to put before bodies written with :attr:`schema`."""
        raise NotImplementedError

    def _writer_for(self, header: bytes) -> Any:
        """The writer schema a header names.

        Raises:
            FrameError: the header is malformed or names no known schema.
        """
        raise NotImplementedError

    # -- validation and encoding ----------------------------------------------

    def validate(self, value: Mapping[str, Any], origin: RecordOrigin | None = None) -> None:
        """Check a value against the schema before encoding it.

        Args:
            value: the record as a dict.
            origin: where the value came from, for the error message.

        Raises:
            SchemaError: the value does not fit; the message names the field path
                (``"shoal.Session: plays[2].watch_ms: expected long, got str 'x'"``).
        """
        if _fastavro.is_valid(value, self._entry.parsed):
            return
        problem = find_violation(value, self._entry.tree) or "fastavro's validator rejects it"
        raise SchemaError(f"{self._entry.name}: {problem}", origin=origin)

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode one value: header, then the Avro body.

        Args:
            value: the record as a dict.

        Returns:
            The framed bytes.

        Raises:
            SchemaError: the value cannot be written with the schema.
            ConnectorError: the header needs a schema registry that failed.

        The record's top-level integer fields are checked (a float, a bool or an
        integer out of range there would be truncated or wrapped by fastavro without
        a word); nested values are not: call :meth:`validate` first for values that
        are not trusted.
        """
        return self._encode(self._write_header(), value)

    def encode_many(self, values: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode several values (the header is looked up once).

        Args:
            values: the records.

        Returns:
            The framed bytes of each, in order.

        Raises:
            SchemaError: a value cannot be written with the schema.
            ConnectorError: the header needs a schema registry that failed.
        """
        header = self._write_header()
        return [self._encode(header, value) for value in values]

    def _encode(self, header: bytes, value: Mapping[str, Any]) -> bytes:
        if self._integers and misfit_integer(value, self._integers):
            # fastavro would truncate a float or write a bool in an integer field.
            self.validate(value)  # raises, naming the field
        stream = io.BytesIO()
        stream.write(header)
        try:
            _fastavro.write_body(stream, self._entry.parsed, value)
        except Exception as exc:
            self.validate(value)  # raises with the field path when it can tell
            message = f"{self._entry.name}: cannot encode value: {type(exc).__name__}: {exc}"
            raise SchemaError(message) from exc
        return stream.getvalue()

    # -- decoding -------------------------------------------------------------

    def decode(self, data: bytes, origin: RecordOrigin | None = None) -> dict[str, Any]:
        """Decode one framed record into the schema.

        Args:
            data: the framed bytes.
            origin: topic, partition and offset of the record, for errors.

        Returns:
            The record as a dict, resolved from its writer schema.

        Raises:
            DecodeError: bad header, unknown writer schema, truncated or garbage
                body, leftover bytes; the message names ``origin``.
            ConnectorError: a schema registry needed to find the writer failed.
        """
        values, failures = self.decode_batch((data,), (origin or RecordOrigin(),))
        if failures:
            raise failures[0][1]
        return values[0]

    def decode_batch(
        self, datas: Sequence[bytes], origins: Origins = None
    ) -> tuple[list[dict[str, Any]], list[tuple[int, DecodeError]]]:
        """Decode many records, collecting failures instead of raising.

        Args:
            datas: the framed records.
            origins: where each came from (a sequence, or a function of the
                index that is called only for failed records).

        Returns:
            ``(values, failures)``: the good records in input order, and
            ``(index, DecodeError)`` for each bad one; the good records are
            those whose index is not among the failures.

        Raises:
            ConnectorError: a schema registry needed to find a writer failed
                (the batch cannot be judged; nothing is returned).
        """
        if datas:
            first = datas[0]
            if type(first) is bytes:
                header = first[: self._header_size]
                try:
                    plan = self._plans.get(header) or self._plan(header)
                except ConnectorError:
                    raise
                except Exception:  # the record-by-record path says what is wrong
                    plan = None
                if plan is not None and plan.native is not None:
                    return self._decode_native(plan, header, datas, origins)
        return self._decode_each(datas, range(len(datas)), origins)

    def _decode_native(
        self, plan: _Decoder, header: bytes, datas: Sequence[bytes], origins: Origins
    ) -> tuple[list[dict[str, Any]], list[tuple[int, DecodeError]]]:
        """Decode natively; what the native decoder hands back goes through fastavro."""
        listed = datas if type(datas) is list else list(datas)
        native: Any = plan.native
        decoded, failed = native.decode_many(listed, header)
        project = plan.project
        if project is not None:
            for index, value in enumerate(decoded):
                if value is not None:
                    try:
                        decoded[index] = project(value)
                    except Exception:
                        decoded[index] = None
                        failed.append(index)
            failed.sort()
        if not failed:
            return decoded, []
        retried, failures = self._decode_each(listed, failed, origins)
        bad = {index for index, _ in failures}
        good = iter(retried)
        for index in failed:
            if index not in bad:
                decoded[index] = next(good)
        return [value for value in decoded if value is not None], failures

    def _decode_each(
        self, datas: Sequence[bytes], indices: Iterable[int], origins: Origins
    ) -> tuple[list[dict[str, Any]], list[tuple[int, DecodeError]]]:
        """Decode the records at ``indices`` one by one with fastavro."""
        size = self._header_size
        plans = self._plans
        read = _fastavro.RAW_READ
        options = _fastavro.RAW_OPTIONS
        bytes_io = io.BytesIO
        values: list[dict[str, Any]] = []
        failures: list[tuple[int, DecodeError]] = []
        keep = values.append
        last: bytes | None = None
        writer: Any = None
        named: Any = None
        reader: Any = None
        project: Projector | None = None
        items: Callable[[bytes, int], None] | None = None
        for index in indices:
            data = datas[index]
            try:
                header = data[:size]
                if header != last:
                    plan = plans.get(header) or self._plan(header)
                    writer, named, reader, project, _, items = plan
                    last = header
                if items is not None:
                    items(data, size)
                stream = bytes_io(data)
                stream.seek(size)
                value = read(stream, writer, named, reader, options)
                if project is not None:
                    value = project(value)
                if stream.tell() != len(data):
                    raise _TrailingBytes(f"{len(data) - stream.tell()} bytes left after the body")
            except ConnectorError:
                raise
            except Exception as exc:
                failures.append((index, self._decode_error(exc, data, origin_at(origins, index))))
                continue
            keep(value)
        return values, failures

    def _plan(self, header: bytes) -> _Decoder:
        writer = self._writer_for(header)
        reader = self._entry.tree.root
        try:
            writer_tree = normalize(writer)
            if kind(writer_tree.root) != "record" or not same_name(writer_tree.root, reader):
                raise FrameError(
                    f"written as {describe(writer_tree.root)}, which cannot be read "
                    f"as {self._entry.name}"
                )
            project = compile_projection(writer_tree, self._entry.tree)
            if project is None:  # let fastavro resolve every record
                plan = _fastavro.read_plan(writer, self._entry.schema)
            else:  # read as written, then reshape (about twice as fast)
                plan = _fastavro.read_plan(writer)
        except ConfigError as exc:
            raise FrameError(f"the writer schema is unusable: {exc}") from exc
        native = None
        if plan.reader is None:  # read as written: the native decoder can do that
            native = decoder_for(plan.writer, plan.named["writer"])
        items = item_check(plan.writer, plan.named["writer"])
        decoder = _Decoder(*plan, None if project is identity else project, native, items)
        self._plans[header] = decoder
        return decoder

    def _decode_error(self, exc: Exception, data: Any, origin: RecordOrigin) -> DecodeError:
        what = f"cannot decode {self._entry.name}"
        if isinstance(exc, FrameError | _TrailingBytes | TooManyItems):
            message = f"{what}: {exc}"
        elif not isinstance(data, bytes | bytearray | memoryview):
            message = f"{what}: expected bytes, got {type(data).__name__}"
        else:
            message = f"{what}: bad body ({type(exc).__name__}: {exc})"
        error = DecodeError(message, origin=origin)
        error.__cause__ = exc
        return error


def origin_at(origins: Origins, index: int) -> RecordOrigin:
    """Where the record at ``index`` of a batch came from (see :data:`Origins`)."""
    if origins is None:
        return RecordOrigin()
    if callable(origins):
        return origins(index)
    return origins[index]
