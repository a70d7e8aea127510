"""Read either wire format, write the chosen one: the serde of a job's endpoints.

A topic may hold records of both framings (a producer moved to a registry, or two
producers disagree); a reader tells them apart by their first byte:

======== ============================================= ===========================
first    framing                                       resolved through
======== ============================================= ===========================
``C3``   Avro single-object encoding (``C3 01`` + fingerprint) ``schemas/`` (fingerprint)
``00``   Confluent Schema Registry (``00`` + 4-byte id) the registry (id, cached)
other    neither: a bad record (dead-lettered)
======== ============================================= ===========================

A registry-framed record with no registry configured is a bad record whose reason says
so. Writing uses one framing, the endpoint's (``connectors.wire``).

The usual batch holds one framing: it goes to that serde whole, so the check costs one
slice and comparison per record; mixed batches are split by framing and merged back in
input order.

Example:
    >>> from connectors.avro.repository import SchemaRepository
    >>> from connectors.avro.single_object import AvroSerde
    >>> ping = {"type": "record", "name": "Ping", "fields": [{"name": "n", "type": "int"}]}
    >>> single = AvroSerde("Ping", SchemaRepository([ping]))
    >>> serde = MagicByteSerde(single, single)
    >>> values, failures = serde.decode_batch([single.encode({"n": 1}), b"\\x07junk"])
    >>> values, [str(e) for _, e in failures]  # doctest: +ELLIPSIS
    ([{'n': 1}], ['cannot decode Ping: first byte 07 is neither ...'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final

from connectors.avro.confluent import CONFLUENT_MAGIC
from connectors.avro.repository import SchemaEntry
from connectors.avro.serde import Origins, Serde, origin_at
from connectors.avro.single_object import SINGLE_OBJECT_MAGIC
from runtime.api.errors import DecodeError, RecordOrigin

__all__ = ["MagicByteSerde"]

_SINGLE: Final = SINGLE_OBJECT_MAGIC[:1]


class MagicByteSerde:
    """Decodes single-object and registry-framed records alike; encodes with ``writer``.

    Args:
        writer: the serde that encodes (the endpoint's framing).
        single: the single-object serde of the same schema.
        registry: the registry-framed serde of the same schema, if a registry is
            configured.
    """

    def __init__(self, writer: Serde, single: Serde, registry: Serde | None = None) -> None:
        self.writer = writer
        self._readers: dict[bytes, Serde] = {_SINGLE: single}
        if registry is not None:
            self._readers[CONFLUENT_MAGIC] = registry

    def __repr__(self) -> str:
        return f"MagicByteSerde(writer={self.writer!r})"

    @property
    def schema(self) -> SchemaEntry:
        """The record schema values are written with and read into."""
        return self.writer.schema

    def validate(self, value: Mapping[str, Any], origin: RecordOrigin | None = None) -> None:
        """See :meth:`connectors.avro.serde.FramedSerde.validate`."""
        self.writer.validate(value, origin)

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode with the writer's framing."""
        return self.writer.encode(value)

    def encode_many(self, values: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode several values with the writer's framing."""
        return self.writer.encode_many(values)

    def decode(self, data: bytes, origin: RecordOrigin | None = None) -> dict[str, Any]:
        """Decode one record of either framing.

        Raises:
            DecodeError: neither framing, no registry for a registry-framed record, or
                whatever the framing's own serde refuses.
        """
        values, failures = self.decode_batch((data,), (origin or RecordOrigin(),))
        if failures:
            raise failures[0][1]
        return values[0]

    def decode_batch(
        self, datas: Sequence[bytes], origins: Origins = None
    ) -> tuple[list[dict[str, Any]], list[tuple[int, DecodeError]]]:
        """Decode a batch of records of either framing, failures collected by index.

        Returns:
            ``(values, failures)`` as :meth:`connectors.avro.serde.Serde.decode_batch`.
        """
        if not datas:
            return [], []
        first = _magic(datas[0])
        reader = self._readers.get(first)
        if reader is not None:
            try:
                same = all(d[:1] == first for d in datas)
            except TypeError:  # a value that is not bytes (None): sort it out below
                same = False
            if same:
                return reader.decode_batch(datas, origins)
        return self._mixed(datas, origins)

    def _mixed(
        self, datas: Sequence[bytes], origins: Origins
    ) -> tuple[list[dict[str, Any]], list[tuple[int, DecodeError]]]:
        groups: dict[bytes, list[int]] = {}
        for index, data in enumerate(datas):
            groups.setdefault(_magic(data), []).append(index)
        decoded: dict[int, dict[str, Any]] = {}
        failures: list[tuple[int, DecodeError]] = []
        for magic, indexes in groups.items():
            reader = self._readers.get(magic)
            if reader is None:
                reason = self._unreadable(magic)
                failures.extend(
                    (i, DecodeError(reason, origin=origin_at(origins, i))) for i in indexes
                )
                continue
            values, bad = reader.decode_batch(
                [datas[i] for i in indexes], partial(_origin_in, origins, indexes)
            )
            failed = {j for j, _ in bad}
            good = iter(values)
            for j, i in enumerate(indexes):
                if j not in failed:
                    decoded[i] = next(good)
            failures.extend((indexes[j], error) for j, error in bad)
        failures.sort(key=lambda pair: pair[0])
        return [decoded[i] for i in sorted(decoded)], failures

    def _unreadable(self, magic: bytes) -> str:
        what = f"cannot decode {self.schema.name}"
        if magic == CONFLUENT_MAGIC:
            return (
                f"{what}: the record is framed for a schema registry (first byte 00) but no "
                "schema registry is configured (--schema-registry URL)"
            )
        if not magic:
            return f"{what}: empty or missing value"
        return (
            f"{what}: first byte {magic.hex()} is neither Avro single-object encoding (c3 01) "
            "nor schema registry framing (00)"
        )


def _origin_in(origins: Origins, indexes: list[int], j: int) -> RecordOrigin:
    return origin_at(origins, indexes[j])


def _magic(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data[:1]
    if isinstance(data, bytearray | memoryview):
        return bytes(data[:1])
    return b""
