"""Codecs the engine uses: Avro (single-object) by schema name, JSON for schema-less sinks.

With a schema registry, ``connectors.wire.EndpointCodecs`` chooses per source and sink.

``codec_factory()`` gives a callable ``schema name -> codec`` over the ``schemas/``
folder; the empty name means JSON. ``any_decoder`` decodes whatever a topic holds
(for ``shoal tail`` and the demo view).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any

import orjson

from connectors.avro import SINGLE_OBJECT_MAGIC, AvroSerde, SchemaRepository, Serde
from connectors.avro.limits import item_check
from runtime.api.errors import ConfigError, DecodeError, RecordError, RecordOrigin


def _origin_of(raw: Any) -> RecordOrigin:
    if raw is None:
        return RecordOrigin()
    if isinstance(raw, RecordOrigin):
        return raw
    return RecordOrigin(raw.topic(), raw.partition(), raw.offset())


class AvroCodec:
    """An Avro serde with origins taken from raw source records."""

    def __init__(self, serde: Serde) -> None:
        self.serde = serde
        self.encode = serde.encode

    def decode_batch(
        self, datas: Sequence[bytes | None], origins: Sequence[Any] | None = None
    ) -> tuple[list[Any], list[tuple[int, RecordError]]]:
        """Decode a batch; failures carry topic/partition/offset of their record."""
        if origins is None:
            values, failures = self.serde.decode_batch(datas)  # type: ignore[arg-type]
        else:
            values, failures = self.serde.decode_batch(
                datas,  # type: ignore[arg-type]
                lambda i: _origin_of(origins[i]),
            )
        return list(values), list(failures)


_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
_FAST_OPTIONS = orjson.OPT_NON_STR_KEYS


class JsonCodec:
    """UTF-8 JSON, for sinks declared with ``Json()``."""

    def encode(self, value: Any) -> bytes:
        """Compact JSON (fields in the record's own order); unknown types as ``str``.

        orjson does the work (NaN and infinities become ``null``: valid JSON); what it
        refuses (e.g. integers beyond 64 bits) the standard library encodes.
        """
        try:
            return orjson.dumps(value, default=str, option=_FAST_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            return _dumps(value).encode()

    def decode_batch(
        self, datas: Sequence[bytes | None], origins: Sequence[Any] | None = None
    ) -> tuple[list[Any], list[tuple[int, RecordError]]]:
        """Parse a batch of JSON documents."""
        values: list[Any] = []
        failures: list[tuple[int, RecordError]] = []
        for i, data in enumerate(datas):
            try:
                values.append(json.loads(data))  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                origin = _origin_of(origins[i]) if origins is not None else None
                failures.append((i, DecodeError(f"not JSON: {exc}", origin=origin)))
        return values, failures


class CodecFactory:
    """``factory(schema_name)`` -> codec, cached per name: single-object Avro everywhere.

    Jobs with a schema registry use ``connectors.wire.EndpointCodecs`` over this one.
    """

    def __init__(self, repository: SchemaRepository) -> None:
        self.repository = repository
        self._codecs: dict[str, Any] = {"": JsonCodec()}

    def __call__(self, schema: str) -> Any:
        codec = self._codecs.get(schema)
        if codec is None:
            codec = self._codecs[schema] = AvroCodec(AvroSerde(schema, self.repository))
        return codec

    def source(self, name: str, schema: str) -> Any:
        """The codec of a source: the schema's, whatever the source."""
        return self(schema)

    def sink(self, name: str, schema: str) -> Any:
        """The codec of a sink: the schema's, whatever the sink."""
        return self(schema)

    def knows(self, schema: str) -> bool:
        """Whether ``schema`` names a record of the repository (or is ``""``, JSON)."""
        if schema in self._codecs:
            return True
        try:
            self.repository.current(schema)
        except ConfigError:
            return False
        return True

    def single_object_schemas(self, schema: str) -> tuple[str, tuple[str, ...]] | None:
        """What a decoder outside Python needs to read a source of ``schema`` as this
        factory does: the reader schema and the writer versions (JSON texts) that it can
        read without the item walk of ``connectors.avro.limits`` (records of any other
        version are left to this factory's codec); ``None`` for JSON or an unknown name.
        """
        if not schema or not self.knows(schema):
            return None
        current = self.repository.current(schema)
        writers = tuple(
            e.to_json()
            for e in self.repository.versions(current.name)
            if item_check(e.parsed, {}) is None
        )
        return current.to_json(), writers

    def any_decoder(self, schema: str | None) -> Callable[[bytes | None], Any]:
        """A forgiving decoder: the named schema, else Avro by fingerprint, JSON, or hex."""

        def decode(data: bytes | None) -> Any:
            if data is None:
                return None
            if schema:
                return self(schema).serde.decode(data)
            if data[:2] == SINGLE_OBJECT_MAGIC:
                entry = self.repository.by_fingerprint(bytes(data[2:10]))
                if entry is not None:
                    return self(entry.name).serde.decode(data)
            try:
                return json.loads(data)
            except ValueError:
                return data.hex()

        return decode


def codec_factory(schema_dirs: Iterable[str | PathLike[str]] = ()) -> CodecFactory:
    """The codec factory over ``schemas/`` and a job author's own schema folders.

    Factories are shared per set of folders (codecs cache their compiled schemas).

    Raises:
        ConfigError: a folder is missing, or a record name has two different schemas.
    """
    return _factory(tuple(str(Path(d).resolve()) for d in schema_dirs))


@lru_cache(maxsize=16)
def _factory(schema_dirs: tuple[str, ...]) -> CodecFactory:
    return CodecFactory(SchemaRepository.from_directories(Path(d) for d in schema_dirs))


def codec_for_schema(schema: str, schema_dirs: Iterable[str | PathLike[str]] = ()) -> Any:
    """The codec of one schema name (``""``: JSON)."""
    return codec_factory(schema_dirs)(schema)
