"""What the worker needs from the outside world, as protocols.

The Kafka connectors implement them (``connectors.kafka.transport`` and
``connectors.kafka.source``); tests use small in-memory fakes. A transport and the
committed offsets are required; reporting lag and unread partitions are optional
capabilities, each a protocol of its own that the worker checks for once
(``isinstance``) when it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from runtime.api.io import RawRecord, RefusedWrite

__all__ = [
    "ChangelogRead",
    "ChangelogChunks",
    "Offsets",
    "ReadsChangelogs",
    "ReportsLag",
    "ReportsUnread",
    "TableFeed",
    "Transport",
]

TopicPartition = tuple[str, int]

# Reads a changelog partition from the start: (key, value, offset) records, oldest first.
ChangelogRead = Callable[[str, int], Iterator[tuple[bytes, bytes | None, int]]]
# Changelog records of several partitions: ((topic, partition), [(key, value, offset), ...])
# chunks, each partition's oldest first.
ChangelogChunks = Iterator[tuple[TopicPartition, list[tuple[bytes, bytes | None, int]]]]


@runtime_checkable
class ReadsChangelogs(Protocol):
    """A changelog reader that reads several partitions at once (restores them together)."""

    def read_many(self, pairs: Sequence[TopicPartition], chunk: int) -> ChangelogChunks:
        """Every record of ``pairs`` in chunks of at most ``chunk`` per partition."""
        ...


class Transport(Protocol):
    """What the worker writes through and commits with (see connectors.kafka.transport)."""

    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (into the open transaction, with exactly-once)."""
        ...

    def write_many(self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
        """Queue ``(key, value, timestamp)`` records of one topic."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, tuple[int, str]]) -> None:
        """Commit what was written together with the input ``(offset, metadata)``.

        Raises:
            CheckpointAborted: the commit lost a race with a rebalance (rewind).
        """
        ...

    def take_refused(self) -> list[RefusedWrite]:
        """Records not written because their topic would refuse them (to dead-letter)."""
        ...


class Offsets(Protocol):
    """Committed offsets and metadata of the worker's consumer group, and rewinding."""

    def committed(self, pairs: list[TopicPartition]) -> dict[TopicPartition, tuple[int, str]]:
        """``(offset, metadata)`` committed for each partition (``-1``: none)."""
        ...

    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Move the consumer to these offsets."""
        ...

    def beginning(self, pairs: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offset still held of each partition."""
        ...


@runtime_checkable
class ReportsLag(Protocol):
    """Offsets that can tell how far the worker is behind each partition's end."""

    def lag(self, positions: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Records between each position and its partition's end."""
        ...


@runtime_checkable
class ReportsUnread(Protocol):
    """Offsets that can tell which partitions have records fetched or fetchable but
    not yet read (see ``Worker`` on idleness)."""

    def unread(self, start: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        """Partitions with records at or after ``start`` that the worker has not read."""
        ...


class TableFeed(Protocol):
    """Reads table topics (see ``runtime.engine.tables``): a partition from its start
    when a task opens, then every partition the worker's tasks hold as records come
    (``connectors.kafka.tables.TableReader``)."""

    def partitions(self, topic: str) -> int:
        """The partition count of ``topic``."""
        ...

    def load(self, topic: str, partition: int) -> Iterator[list[RawRecord]]:
        """Batches of the partition's records, from its start to the end it has now."""
        ...

    def follow(self, positions: Mapping[TopicPartition, int]) -> None:
        """From now on :meth:`poll` reads these partitions from these offsets on."""
        ...

    def poll(self) -> list[RawRecord]:
        """Records of the followed partitions that came since the last poll (no wait)."""
        ...

    def close(self) -> None:
        """Release the reader."""
        ...
