"""Reads table topics for the worker (``runtime.engine.ports.TableFeed``).

A task that opens reads each table partition it holds from the start to the end the
partition has then (:meth:`TableReader.load`, a throwaway consumer per partition);
afterwards one consumer of the worker follows every held partition from where the
tasks are (:meth:`TableReader.follow`, :meth:`TableReader.poll`). Neither joins a
consumer group or commits: a table is read from its start whenever a task opens.
Reads are ``read_committed``, so a table written by a transactional job shows only
committed records.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kafka.client import (
    CLIENT_LOGGER,
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from connectors.kafka.config import KafkaClientConfig, as_client_config
from runtime.api.errors import ConnectorError

__all__ = ["TableReader"]

#: Records handed over at once.
BATCH = 10_000


class TableReader:
    """Loads and follows table topic partitions.

    Args:
        bootstrap: the cluster (address or client settings).
        timeout_s: how long loading one partition may take at most.
    """

    def __init__(self, bootstrap: str | KafkaClientConfig, timeout_s: float = 300.0) -> None:
        self.client = as_client_config(bootstrap)
        self.timeout_s = timeout_s
        self._follower: Any = None

    def _consumer(self, purpose: str, eof: bool) -> Any:
        return Consumer(
            self.client.client(
                {"enable.partition.eof": eof, "fetch.queue.backoff.ms": 10},
                group_id=f"shoal-table-{purpose}-{uuid.uuid4().hex}",
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                logger=CLIENT_LOGGER,
            )
        )

    def partitions(self, topic: str) -> int:
        """The partition count of ``topic``.

        Raises:
            ConnectorError: the topic does not exist or the cluster cannot be asked.
        """
        consumer = self._follower or self._consumer("meta", False)
        try:
            meta = consumer.list_topics(topic, timeout=30)
            found = meta.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise ConnectorError(f"table topic {topic!r} does not exist")
            return len(found.partitions)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read table topic {topic!r}: {exc}") from exc
        finally:
            if consumer is not self._follower:
                consumer.close()

    def load(self, topic: str, partition: int) -> Iterator[list[Any]]:
        """Batches of the partition's committed records, from its start to the end it
        has now.

        Raises:
            ConnectorError: reading failed or took longer than ``timeout_s``.
        """
        consumer = self._consumer("load", True)
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
            if high <= low:
                return
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                batch = []
                done = False
                for msg in consumer.consume(BATCH, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            done = True
                            break
                        raise ConnectorError(f"reading table {topic}[{partition}]: {err}")
                    batch.append(msg)
                    if (msg.offset() or 0) >= high - 1:
                        done = True
                        break
                if batch:
                    yield batch
                if done:
                    return
            raise ConnectorError(
                f"reading table {topic}[{partition}] took longer than {self.timeout_s}s"
            )
        except KafkaException as exc:
            raise ConnectorError(f"reading table {topic}[{partition}]: {exc}") from exc
        finally:
            consumer.close()

    def follow(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Read these partitions from these offsets on (replaces what was followed).

        Raises:
            ConnectorError: the consumer could not be set up.
        """
        try:
            if self._follower is None:
                self._follower = self._consumer("follow", False)
            self._follower.assign(
                [TopicPartition(t, p, max(off, 0)) for (t, p), off in sorted(positions.items())]
            )
        except KafkaException as exc:
            raise ConnectorError(f"cannot follow table topics: {exc}") from exc

    def poll(self) -> list[Any]:
        """Records of the followed partitions that came since the last poll (no wait).

        Raises:
            ConnectorError: reading failed.
        """
        if self._follower is None:
            return []
        try:
            msgs = self._follower.consume(BATCH, 0)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read table topics: {exc}") from exc
        out = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                out.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                raise ConnectorError(f"cannot read table topics: {err}")
        return out

    def close(self) -> None:
        """Release the follower."""
        if self._follower is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                self._follower.close()
            self._follower = None
