"""Batched Kafka source: one consumer in the job's group, reading many messages per call."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
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
from connectors.kafka.errors import COORDINATOR_MOVING
from runtime.api.errors import ConnectorError

#: Errors of a committed-offsets request that pass when asked again.
ASK_AGAIN = COORDINATOR_MOVING | {KafkaError._TIMED_OUT, KafkaError._TRANSPORT}

AssignListener = Callable[[list[tuple[str, int]]], None]
#: Called with newly assigned partitions; may return where to start reading each one.
StartListener = Callable[[list[tuple[str, int]]], Mapping[tuple[str, int], int] | None]

# librdkafka's default fetch.queue.backoff.ms of 1000 caps a fast consumer; 10 keeps the
# pre-fetch queue full without spinning. The pre-fetch is bounded in bytes as well as
# messages, and fetches are moderate: with a large backlog, big fetch responses and a
# deep queue (not the state) made up most of a worker's memory (W6 in bench/: 1.2 GB
# of RSS at 2M keys before, about half after, at the same throughput within noise).
FAST_FETCH: dict[str, Any] = {
    "fetch.queue.backoff.ms": 10,
    "fetch.wait.max.ms": 50,
    "queued.min.messages": 50_000,
    "queued.max.messages.kbytes": 32 * 1024,
    "fetch.max.bytes": 16 * 1024 * 1024,
    "max.partition.fetch.bytes": 2 * 1024 * 1024,
}


class KafkaSource:
    """Reads the job's source topics in batches.

    Args:
        bootstrap: cluster address.
        group_id: the consumer group (the job's name); workers of a job share it.
        topics: topics to subscribe to.
        on_assign: called with ``(topic, partition)`` pairs newly assigned; when it
            returns start offsets (negative: the beginning), reading starts exactly
            there, so state restored from a checkpoint and the read position come from
            the same reading of the committed offsets.
        on_revoke: called with pairs taken away (before they go).
        read_committed: read only committed transactional records.
        extra: more client settings (override the defaults).
    """

    def __init__(
        self,
        bootstrap: str | KafkaClientConfig,
        group_id: str,
        topics: list[str],
        *,
        on_assign: StartListener | None = None,
        on_revoke: AssignListener | None = None,
        read_committed: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        client = as_client_config(bootstrap)
        bootstrap = client.bootstrap
        defaults: dict[str, Any] = {
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            # A member that stops polling (e.g. blocked on an unreachable broker) is
            # removed after this, so the rest of the group can rebalance without it.
            "max.poll.interval.ms": 60_000,
            **FAST_FETCH,
        }
        conf = client.client(
            defaults,
            group_id=group_id,
            enable_auto_commit=False,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            logger=CLIENT_LOGGER,
        )
        conf.update(extra or {})
        self.topics = topics
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: set[tuple[str, int]] = set()
        self._cooperative = conf["partition.assignment.strategy"] == "cooperative-sticky"
        try:
            self._consumer = Consumer(conf)
            self._consumer.subscribe(
                topics,
                on_assign=self._assign_cb,
                on_revoke=self._revoke_cb,
                on_lost=self._revoke_cb,
            )
        except KafkaException as exc:
            raise ConnectorError(f"cannot subscribe to {topics} on {bootstrap}: {exc}") from exc

    def _assign_cb(self, consumer: Any, parts: list[Any]) -> None:
        pairs = [(p.topic, p.partition) for p in parts]
        self._assigned.update(pairs)
        if self._on_assign is None or not pairs:
            return
        start = self._on_assign(pairs)
        if start is None:
            return  # the client assigns them at their committed offsets
        tps = [
            TopicPartition(t, p, o if (o := start.get((t, p), -1)) >= 0 else OFFSET_BEGINNING)
            for t, p in pairs
        ]
        if self._cooperative:
            consumer.incremental_assign(tps)
        else:
            consumer.assign(tps)  # eager protocols hand over the whole assignment

    def _revoke_cb(self, consumer: Any, parts: list[Any]) -> None:
        pairs = [(p.topic, p.partition) for p in parts]
        if self._on_revoke is not None and pairs:
            self._on_revoke(pairs)
        self._assigned.difference_update(pairs)

    @property
    def assignment(self) -> set[tuple[str, int]]:
        """The partitions this consumer currently owns."""
        return set(self._assigned)

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        """Up to ``max_records`` messages; errors that are not transient are raised.

        Returns what is already fetched at once; waits (up to ``timeout_s``) only when
        nothing is: the client's own call would wait for ``max_records`` or the
        timeout, idling a worker whose input trickles in (e.g. an internal topic).
        """
        consume = self._consumer.consume
        try:
            msgs = consume(num_messages=max_records, timeout=0)
            if not msgs:
                msgs = consume(num_messages=1, timeout=timeout_s)
                if msgs and max_records > 1:
                    msgs.extend(consume(num_messages=max_records - 1, timeout=0))
        except KafkaException as exc:
            raise ConnectorError(f"consume failed: {exc}") from exc
        if not msgs:
            return msgs
        out = msgs
        for m in msgs:
            if m.error() is not None:
                out = [x for x in msgs if x.error() is None]
                for bad in msgs:
                    err = bad.error()
                    if err is not None and err.fatal():
                        raise ConnectorError(f"consumer failed: {err.str()}")
                break
        return out

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit next-to-read offsets synchronously (at-least-once mode)."""
        if not offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() in (
                KafkaError._NO_OFFSET,
                KafkaError.REBALANCE_IN_PROGRESS,
                KafkaError.ILLEGAL_GENERATION,
                KafkaError.UNKNOWN_MEMBER_ID,
            ):
                return  # partitions moved: the new owner re-reads from the last commit
            raise ConnectorError(f"offset commit failed: {exc}") from exc

    def commit_partitions(self, tps: list[TopicPartition]) -> None:
        """Commit offsets with metadata synchronously (at-least-once checkpoints)."""
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            raise ConnectorError(f"offset commit failed: {exc}") from exc

    def committed(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, str]]:
        """Committed offset and metadata of each partition (offset < 0: none)."""
        if not pairs:
            return {}
        wanted = [TopicPartition(t, p) for t, p in pairs]
        deadline = time.monotonic() + 60
        while True:
            try:
                tps = self._consumer.committed(wanted, timeout=30)
                break
            except KafkaException as exc:
                # The group coordinator moving or loading (NOT_COORDINATOR,
                # COORDINATOR_LOAD_IN_PROGRESS) is retriable: ask again.
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and (
                    error.retriable() or error.code() in ASK_AGAIN
                )
                if not retriable or time.monotonic() > deadline:
                    raise ConnectorError(f"cannot read committed offsets: {exc}") from exc
                time.sleep(0.5)
        return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in tps}

    def lag(self, positions: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Records behind the end of each partition (from cached fetch metadata)."""
        out = {}
        for (topic, partition), pos in positions.items():
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0 and pos >= 0:
                out[(topic, partition)] = max(0, high - pos)
        return out

    def unread(self, start: Mapping[tuple[str, int], int]) -> list[tuple[str, int]]:
        """Assigned partitions with records not yet handed to the application.

        From the client's position (which moves past transaction markers and aborted
        records) and the end offset cached from the last fetch: no broker request.
        Before a partition's first record the position is unknown; ``start`` (where
        reading began; negative: the beginning) stands in for it. Records of a
        transaction still open count as unread.
        """
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        if not parts:
            return []
        try:
            positions = self._consumer.position(parts)
        except KafkaException:
            return []
        out = []
        for tp in positions:
            try:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            pos = tp.offset
            if pos < 0:
                pos = start.get((tp.topic, tp.partition), -1)
                if pos < 0:
                    pos = max(low, 0)
            if high > pos:
                out.append((tp.topic, tp.partition))
        return out

    def beginning(self, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The earliest offset of each partition."""
        out = {}
        for topic, partition in pairs:
            try:
                low, _ = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=30
                )
            except KafkaException as exc:
                raise ConnectorError(f"cannot read offsets of {topic}[{partition}]: {exc}") from exc
            out[(topic, partition)] = low
        return out

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Move assigned partitions back to offsets (negative: the beginning)."""
        for (topic, partition), offset in offsets.items():
            target = offset if offset >= 0 else OFFSET_BEGINNING
            try:
                self._consumer.seek(TopicPartition(topic, partition, target))
            except KafkaException as exc:
                raise ConnectorError(f"cannot seek {topic}[{partition}]: {exc}") from exc

    def pause(self, pairs: list[tuple[str, int]]) -> None:
        """Stop fetching these assigned partitions (records already fetched are dropped
        by the client and fetched again after ``resume``, from the read position)."""
        if pairs:
            try:
                self._consumer.pause([TopicPartition(t, p) for t, p in pairs])
            except KafkaException as exc:
                raise ConnectorError(f"cannot pause {sorted(pairs)[:3]}: {exc}") from exc

    def resume(self, pairs: list[tuple[str, int]]) -> None:
        """Fetch paused partitions again."""
        if pairs:
            try:
                self._consumer.resume([TopicPartition(t, p) for t, p in pairs])
            except KafkaException as exc:
                raise ConnectorError(f"cannot resume {sorted(pairs)[:3]}: {exc}") from exc

    def member_id(self) -> str:
        """This consumer's member id in its group (empty before it joined)."""
        try:
            return str(self._consumer.memberid() or "")
        except (KafkaException, RuntimeError):
            return ""

    def group_metadata(self) -> Any:
        """The consumer group metadata (for transactional offset commits)."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group."""
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()
