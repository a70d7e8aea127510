"""Where checkpoints commit on Kafka: outputs, changelogs and input offsets together.

``KafkaTransport`` is what the worker writes through. In exactly-once mode it is a
transactional producer (EOS v2, KIP-447): sink records, state changes and the
input offsets (with checkpoint metadata) of one checkpoint commit in one
transaction, fenced by the consumer group's generation. In at-least-once mode the
same calls flush an idempotent producer and then commit the offsets.
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
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import KafkaSource
from runtime.api.errors import CheckpointAborted, ConnectorError, StateError

Offsets = Mapping[tuple[str, int], tuple[int, str]]

# How long a checkpoint may block on the broker. Past it the worker fails and its
# supervisor restarts it from the last committed checkpoint: a worker blocked longer
# would also hold up the group's rebalances.
COMMIT_TIMEOUT_S = 30.0


class KafkaTransport(KafkaSink):
    """Writes outputs and commits checkpoints.

    Args:
        bootstrap: cluster address.
        source: the worker's consumer (its group metadata fences transactions).
        exactly_once: use transactions; otherwise flush then commit offsets.
        transactional_id: stable id of this worker slot (a restarted worker with the
            same id aborts its predecessor's open transaction at once).
        linger_ms: producer batching delay.
    """

    def __init__(
        self,
        bootstrap: str,
        source: KafkaSource,
        *,
        exactly_once: bool,
        transactional_id: str | None = None,
        linger_ms: int = 10,
        transaction_timeout_ms: int = 30_000,
    ) -> None:
        extra: dict[str, Any] = {}
        if exactly_once:
            extra["transactional.id"] = transactional_id or f"shoal-{uuid.uuid4().hex}"
            extra["transaction.timeout.ms"] = transaction_timeout_ms
        super().__init__(bootstrap, linger_ms=linger_ms, extra=extra)
        self.source = source
        self.exactly_once = exactly_once
        self._in_txn = False
        if exactly_once:
            try:
                self._producer.init_transactions(60)
            except KafkaException as exc:
                raise ConnectorError(f"cannot start the worker's transactions: {exc}") from exc

    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (inside the open transaction in exactly-once mode)."""
        if self.exactly_once and not self._in_txn:
            self._begin()
        super().write(topic, key, value, timestamp_ms, headers, partition)

    def write_many(
        self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]
    ) -> None:
        """Queue many records to one topic (inside the open transaction, if any)."""
        if self.exactly_once and not self._in_txn:
            self._begin()
        super().write_many(topic, records)

    def _begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise ConnectorError(f"cannot begin a transaction: {exc}") from exc
        self._in_txn = True

    def commit(self, offsets: Offsets) -> None:
        """Commit a checkpoint: outputs written so far plus ``offsets`` (with metadata).

        Raises:
            StateError: the transaction could not commit (it is aborted; the worker
                must restart from the last committed checkpoint).
        """
        tps = [TopicPartition(t, p, o, metadata=m) for (t, p), (o, m) in offsets.items()]
        if not self.exactly_once:
            self.flush()
            if tps:
                try:
                    self.source.commit_partitions(tps)
                except ConnectorError as exc:
                    if _group_moved(exc.__cause__):
                        raise CheckpointAborted(
                            f"offset commit lost to a rebalance: {exc}"
                        ) from exc
                    raise
            return
        if not self._in_txn:
            self._begin()
        try:
            if tps:
                self._producer.send_offsets_to_transaction(
                    tps, self.source.group_metadata(), COMMIT_TIMEOUT_S
                )
            self._producer.commit_transaction(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            self._abort_quietly()
            if _group_moved(exc):
                raise CheckpointAborted(f"checkpoint lost to a rebalance: {exc}") from exc
            raise StateError(f"checkpoint transaction failed: {exc}") from exc
        finally:
            self._in_txn = False
        if self._errors:
            first, n = self._errors[0], len(self._errors)
            self._errors.clear()
            raise StateError(f"{n} records failed in a committed transaction; first: {first}")

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Records purged by an abort belong to a transaction that will never be
        # visible: they are replayed from the last checkpoint, not lost.
        if err is not None and err.code() in _PURGED:
            return
        super()._on_delivery(err, msg)

    def _abort_quietly(self) -> None:
        with contextlib.suppress(KafkaException):
            self._producer.abort_transaction(10)
        # Serve the aborted records' delivery reports now and forget them, so that
        # they are not taken for failures of the next (committed) transaction.
        self._producer.poll(0)
        self._errors.clear()

    def abort(self) -> None:
        """Abandon the open transaction (exactly-once only)."""
        if self.exactly_once and self._in_txn:
            self._abort_quietly()
            self._in_txn = False

    def close(self) -> None:
        """Abort what is open and flush the rest."""
        self.abort()
        self._producer.flush(10)


_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}

_GROUP_MOVED = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST,
}


def _group_moved(exc: BaseException | None) -> bool:
    """Whether a commit failed only because the consumer group changed generation."""
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    err = exc.args[0]
    if not isinstance(err, KafkaError) or err.fatal():
        return False
    return err.code() in _GROUP_MOVED or (err.txn_requires_abort() and not err.fatal())


class ChangelogReader:
    """Reads a changelog partition from the start to its end (read_committed)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def read(
        self, topic: str, partition: int, timeout_s: float = 300.0
    ) -> Iterator[tuple[bytes, bytes | None, int]]:
        """Every committed ``(key, value, offset)`` of the partition, oldest first."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"shoal-restore-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "fetch.queue.backoff.ms": 10,
                "logger": CLIENT_LOGGER,
            }
        )
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
            if high <= low:
                return
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for msg in consumer.consume(10_000, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return
                        raise ConnectorError(f"reading changelog {topic}[{partition}]: {err}")
                    key = msg.key()
                    if key is not None:  # state changes always have a key
                        offset = msg.offset()
                        yield key, msg.value(), -1 if offset is None else offset
            raise StateError(f"restoring {topic}[{partition}] took longer than {timeout_s}s")
        except KafkaException as exc:
            raise ConnectorError(f"reading changelog {topic}[{partition}]: {exc}") from exc
        finally:
            consumer.close()
