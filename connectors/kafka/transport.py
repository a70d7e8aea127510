"""Where checkpoints commit on Kafka: outputs, changelogs and input offsets together.

``KafkaTransport`` is what the worker writes through. In exactly-once mode it is a
transactional producer (EOS v2, KIP-447): sink records, state changes and the
input offsets (with checkpoint metadata) of one checkpoint commit in one
transaction, fenced by the consumer group's generation. In at-least-once mode the
same calls flush an idempotent producer and then commit the offsets.

Every record is checked against what its topic accepts before it is produced (see
``connectors.kafka.limits``; the limits are read once per topic): a timestamp outside
the broker's window is clamped into it (a sink record then carries its event time in
the ``shoal.event_time_ms`` header), a record larger than the topic takes is not
produced but handed back as a ``RefusedWrite`` (``take_refused``) for the worker to
dead-letter. Should the broker refuse a record anyway (a delivery report such as
INVALID_TIMESTAMP or RECORD_TOO_LARGE), the checkpoint aborts once, the record is
remembered, and the replay dead-letters it instead of writing it again: one bad
record never aborts checkpoints forever. Other delivery errors abort and retry.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.client import (
    CLIENT_LOGGER,
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from connectors.kafka.config import KafkaClientConfig, as_client_config
from connectors.kafka.limits import TopicLimits
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import KafkaSource
from runtime.api.errors import CheckpointAborted, ConnectorError, StateError
from runtime.api.io import RefusedWrite

Offsets = Mapping[tuple[str, int], tuple[int, str]]

# How long a checkpoint may block on the broker. Past it the worker fails and its
# supervisor restarts it from the last committed checkpoint: a worker blocked longer
# would also hold up the group's rebalances.
COMMIT_TIMEOUT_S = 30.0

#: Header of a record whose timestamp was clamped into the broker's window: its own
#: event time (decimal epoch ms).
EVENT_TIME_HEADER = "shoal.event_time_ms"
# Values up to this size skip the exact size check (key and headers counted) on the
# hot path; bigger ones take the slow path.
_KEY_ROOM = 512


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
        bootstrap: str | KafkaClientConfig,
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
        self._admin: KafkaAdmin | None = None
        self._limits: dict[str, TopicLimits] = {}
        self._refused: list[RefusedWrite] = []
        # Digests of records the broker refused (delivery reports): refused again
        # before producing on the replay. Bounded: a few per bad record.
        self._poison: dict[bytes, str] = {}
        self._broker_refusals = 0
        #: Records written with a clamped timestamp, and records refused, so far.
        self.clamped = 0
        self.refused = 0
        # Starting the transactions fences a predecessor with the same id, which waits
        # for the broker to abort its open transaction: on a thread of its own, so that
        # the group join and a state restore go on meanwhile (a restore reads committed
        # data only, so the abort changes nothing it reads). The first transaction
        # waits for it and raises its error.
        self._start_error: BaseException | None = None
        self._starting: threading.Thread | None = None
        if exactly_once:
            self._starting = threading.Thread(
                target=self._init_transactions, name="shoal-init-transactions", daemon=True
            )
            self._starting.start()

    def _init_transactions(self) -> None:
        try:
            self._producer.init_transactions(60)
        except BaseException as exc:  # raised by the first transaction (_started)
            self._start_error = exc

    def _started(self) -> None:
        """Wait until the transactions started.

        Raises:
            ConnectorError: they could not start.
        """
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        exc = self._start_error
        if exc is not None:
            raise ConnectorError(f"cannot start the worker's transactions: {exc}") from exc

    # -- what topics accept ------------------------------------------------------------
    def load_limits(self, topics: list[str]) -> None:
        """Read the timestamp and size limits of ``topics`` now (one admin request)
        instead of at each topic's first write."""
        wanted = [t for t in topics if t not in self._limits]
        if wanted:
            self._limits.update(self._admin_client().topic_limits(wanted))

    def limits(self, topic: str) -> TopicLimits:
        """What ``topic`` accepts (read from the broker at its first use)."""
        lim = self._limits.get(topic)
        if lim is None:
            self.load_limits([topic])
            lim = self._limits[topic]
        return lim

    def _admin_client(self) -> KafkaAdmin:
        if self._admin is None:
            self._admin = KafkaAdmin(self.client)
        return self._admin

    def take_refused(self) -> list[RefusedWrite]:
        """The records not written since the last call because their topic would
        refuse them (the worker dead-letters them)."""
        out, self._refused = self._refused, []
        return out

    # -- writing --------------------------------------------------------------------------
    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (inside the open transaction in exactly-once mode), its
        timestamp clamped into what the topic accepts; a record the topic cannot take
        is handed back through ``take_refused`` instead."""
        if self.exactly_once and not self._in_txn:
            self._begin()
        lim = self.limits(topic)
        lo, hi = lim.window(time.time_ns() // 1_000_000)
        self._write_checked(
            topic, key, value, timestamp_ms, headers, partition, lo, hi, lim.max_record_bytes
        )

    def write_many(self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
        """Queue many ``(key, value, timestamp_ms)`` records to one topic (the hot path),
        checked as ``write`` checks one: the bounds are computed once per call."""
        if self.exactly_once and not self._in_txn:
            self._begin()
        lim = self.limits(topic)
        lo, hi = lim.window(time.time_ns() // 1_000_000)
        max_bytes = lim.max_record_bytes
        quick = max_bytes - _KEY_ROOM
        poisoned = bool(self._poison)
        produce = self._producer.produce
        poll = self._producer.poll
        for key, value, ts in records:
            if poisoned or len(value) > quick or (ts is not None and not lo <= ts <= hi):
                self._write_checked(topic, key, value, ts, None, None, lo, hi, max_bytes)
                continue
            while True:
                try:
                    produce(topic, value, key, timestamp=ts or 0)
                    break
                except BufferError:
                    poll(0.05)
                except KafkaException as exc:
                    if self._refuse_on(exc, topic, key, value, ts):
                        break
                    raise ConnectorError(f"cannot produce to {topic!r}: {exc}") from exc

    def _write_checked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        ts: int | None,
        headers: list[tuple[str, bytes]] | None,
        partition: int | None,
        lo: int,
        hi: int,
        max_bytes: int,
    ) -> None:
        """The slow path: size, clamping and remembered refusals, then produce."""
        size = len(value or b"") + len(key or b"")
        if headers:
            size += sum(len(k) + len(v) for k, v in headers)
        if size > max_bytes:
            self._refuse(
                topic,
                key,
                None,
                ts,
                f"record of {size} bytes is larger than topic {topic!r} accepts "
                f"({max_bytes} bytes; max.message.bytes)",
            )
            return
        if self._poison:
            reason = self._poison.get(_digest(topic, key, value))
            if reason is not None:
                self._refuse(topic, key, value, ts, reason)
                return
        if ts is not None and not lo <= ts <= hi:
            # The broker would refuse this timestamp: write one it takes and keep the
            # event time in a header (repartition records carry it in their value too).
            headers = [*(headers or []), (EVENT_TIME_HEADER, str(ts).encode())]
            ts = min(max(ts, lo), hi)
            self.clamped += 1
        try:
            KafkaSink.write(self, topic, key, value, ts, headers, partition)
        except ConnectorError as exc:
            if not self._refuse_on(exc.__cause__, topic, key, value, ts):
                raise

    def _refuse_on(
        self,
        exc: BaseException | None,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        ts: int | None,
    ) -> bool:
        """Hand back a record the client refused locally as too large; else False."""
        err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            self._refuse(topic, key, None, ts, f"topic {topic!r} refuses the record: {err.str()}")
            return True
        return False

    def _refuse(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        ts: int | None,
        reason: str,
    ) -> None:
        self.refused += 1
        self._refused.append(RefusedWrite(topic, key, value, ts, reason))

    def _begin(self) -> None:
        self._started()
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
            try:
                self.flush()
            except ConnectorError as exc:
                if self._broker_refusals and len(self._errors) == 0:
                    n, self._broker_refusals = self._broker_refusals, 0
                    raise CheckpointAborted(
                        f"the broker refused {n} records; replaying to dead-letter them"
                    ) from exc
                raise
            if self._broker_refusals:
                n, self._broker_refusals = self._broker_refusals, 0
                raise CheckpointAborted(
                    f"the broker refused {n} records; replaying to dead-letter them"
                )
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
            refusals = self._broker_refusals
            self._abort_quietly()
            if refusals:
                raise CheckpointAborted(
                    f"the broker refused {refusals} records of the checkpoint; the replay "
                    f"dead-letters them ({exc})"
                ) from exc
            if _group_moved(exc):
                raise CheckpointAborted(f"checkpoint lost to a rebalance: {exc}") from exc
            raise StateError(f"checkpoint transaction failed: {exc}") from exc
        finally:
            self._in_txn = False
        if self._broker_refusals:
            # Committed without them: rewinding replays the checkpoint's input and the
            # replay dead-letters them.
            n, self._broker_refusals = self._broker_refusals, 0
            self._errors.clear()
            raise CheckpointAborted(
                f"the broker refused {n} records; replaying to dead-letter them"
            )
        if self._errors:
            first, n = self._errors[0], len(self._errors)
            self._errors.clear()
            raise StateError(f"{n} records failed in a committed transaction; first: {first}")

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Records purged by an abort belong to a transaction that will never be
        # visible: they are replayed from the last checkpoint, not lost.
        if err is not None and err.code() in _PURGED:
            return
        if err is not None and err.code() in _REFUSED:
            # This record can never be written as it is: remember it so the replay of
            # this checkpoint dead-letters it (see _write_checked).
            self._poison[_digest(msg.topic(), msg.key(), msg.value())] = (
                f"the broker refused the record for topic {msg.topic()!r}: {err.str()}"
            )
            self._broker_refusals += 1
            return
        super()._on_delivery(err, msg)

    def _abort_quietly(self) -> None:
        # A fenced producer fails both (a fatal error): nothing of it is kept anyway.
        with contextlib.suppress(KafkaException):
            self._producer.abort_transaction(10)
        # Serve the aborted records' delivery reports now and forget them, so that
        # they are not taken for failures of the next (committed) transaction.
        with contextlib.suppress(KafkaException):
            self._producer.poll(0)
        self._errors.clear()
        self._broker_refusals = 0

    def abort(self) -> None:
        """Abandon the open transaction (exactly-once only)."""
        if self.exactly_once and self._in_txn:
            self._abort_quietly()
            self._in_txn = False

    def close(self) -> None:
        """Abort what is open and flush the rest."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._start_error is not None:
            return  # no transaction began: nothing to abort or flush
        self.abort()
        self._producer.flush(10)


_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}

# Delivery errors that refuse one record for what it is (not for the broker's state).
_REFUSED = {
    KafkaError.INVALID_TIMESTAMP,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG,
    KafkaError.RECORD_LIST_TOO_LARGE,
}


def _digest(topic: str | None, key: bytes | None, value: bytes | None) -> bytes:
    """Identifies a record's content (the same on a replay)."""
    h = hashlib.blake2b(digest_size=16)
    for part in ((topic or "").encode(), key or b"", value or b""):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


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
    """Reads changelog partitions from the start to their end (read_committed).

    ``read`` reads one partition; ``read_many`` reads several with one consumer, so
    the client fetches them all at once (restoring eight partitions one after another
    took three times as long here as reading them together).
    """

    #: Records handed over at once per partition by ``read_many``.
    CHUNK = 50_000

    def __init__(self, bootstrap: str | KafkaClientConfig) -> None:
        self.client = as_client_config(bootstrap)
        self.bootstrap = self.client.bootstrap

    def __call__(self, topic: str, partition: int) -> Iterator[tuple[bytes, bytes | None, int]]:
        return self.read(topic, partition)

    def read(
        self, topic: str, partition: int, timeout_s: float = 300.0
    ) -> Iterator[tuple[bytes, bytes | None, int]]:
        """Every committed ``(key, value, offset)`` of the partition, oldest first."""
        for _, chunk in self.read_many([(topic, partition)], timeout_s=timeout_s):
            yield from chunk

    def read_many(
        self,
        pairs: Sequence[tuple[str, int]],
        chunk: int = CHUNK,
        timeout_s: float = 300.0,
    ) -> Iterator[tuple[tuple[str, int], list[tuple[bytes, bytes | None, int]]]]:
        """Every committed record of several partitions, as ``((topic, partition),
        [(key, value, offset), ...])`` chunks of at most ``chunk`` records; each
        partition's chunks come oldest first (partitions interleave).

        Raises:
            StateError: no record arrived for ``timeout_s`` seconds before the end.
            ConnectorError: the cluster refused or failed the read.
        """
        if not pairs:
            return
        consumer = Consumer(
            self.client.client(
                {"enable.partition.eof": True, "fetch.queue.backoff.ms": 10},
                group_id=f"shoal-restore-{uuid.uuid4().hex}",
                enable_auto_commit=False,
                isolation_level="read_committed",
                logger=CLIENT_LOGGER,
            )
        )
        where = ", ".join(f"{t}[{p}]" for t, p in pairs[:4]) + (" ..." if len(pairs) > 4 else "")
        try:
            left: set[tuple[str, int]] = set()
            for topic, partition in pairs:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
                if high > low:
                    left.add((topic, partition))
            if not left:
                return
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(left)])
            held: dict[tuple[str, int], list[tuple[bytes, bytes | None, int]]] = {
                tp: [] for tp in left
            }
            idle_until = time.monotonic() + timeout_s
            while left:
                msgs = consumer.consume(10_000, 0.5)
                if not msgs:
                    if time.monotonic() > idle_until:
                        raise StateError(
                            f"restoring {where}: no changelog record for {timeout_s:.0f}s"
                        )
                    continue
                idle_until = time.monotonic() + timeout_s
                for msg in msgs:
                    tp = (msg.topic() or "", msg.partition() or 0)
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            if tp in left:
                                left.discard(tp)
                                if held[tp]:
                                    yield tp, held[tp]
                                    held[tp] = []
                            continue
                        raise ConnectorError(f"reading changelog {where}: {err}")
                    key = msg.key()
                    if key is not None:  # state changes always have a key
                        offset = msg.offset()
                        out = held[tp]
                        out.append((key, msg.value(), -1 if offset is None else offset))
                        if len(out) >= chunk:
                            yield tp, out
                            held[tp] = []
        except KafkaException as exc:
            raise ConnectorError(f"reading changelog {where}: {exc}") from exc
        finally:
            consumer.close()
