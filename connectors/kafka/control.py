"""The job's control topic and the group-level reads and writes savepoints need.

``<group>.control`` is a compacted topic of one partition holding JSON records:

=========================  ====================================================
key                        value
=========================  ====================================================
``job``                    the job's description (each worker writes it at start)
``command``                the latest command: ``id``, ``op``, ``phase``, times
``ack.<id>.<phase>.<m>``   a worker's answer to a command phase (``m``: member id)
``scale``                  the worker count asked of a local supervisor
``ack.scale.<id>``         the supervisor's answer
=========================  ====================================================

Compaction keeps the latest record per key, so the topic stays small; a command
issued before a reader started is never acted on, because readers start at the
topic's end (see :mod:`runtime.engine.control`). Values are JSON and are only ever
parsed: a record that does not parse is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.client import (
    CLIENT_LOGGER,
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from connectors.kafka.config import KafkaClientConfig, as_client_config
from runtime.api.errors import ConnectorError

__all__ = [
    "ControlTopic",
    "commit_group_offsets",
    "control_topic",
    "ensure_control_topic",
    "iter_partition",
    "latest_values",
    "unconsumed",
]

log = logging.getLogger("shoal.control")


def control_topic(group: str) -> str:
    """The control topic of a job's consumer group."""
    return f"{group}.control"


def ensure_control_topic(admin: KafkaAdmin, group: str, replication: int = -1) -> str:
    """Create the compacted control topic if it does not exist; returns its name."""
    name = control_topic(group)
    admin.ensure_topics([TopicSpec(name, 1, replication, config={"cleanup.policy": "compact"})])
    return name


class ControlTopic:
    """Reads and writes one control topic.

    Args:
        bootstrap: the cluster.
        topic: the control topic.
        from_start: read what the topic holds already (a command's coordinator reads
            the job's description); otherwise only what is written from now on.
    """

    def __init__(
        self, bootstrap: str | KafkaClientConfig, topic: str, *, from_start: bool = False
    ) -> None:
        client = as_client_config(bootstrap)
        self.topic = topic
        try:
            self._producer = Producer(
                client.client({"linger.ms": 0, "enable.idempotence": True}, logger=CLIENT_LOGGER)
            )
            self._consumer = Consumer(
                client.client(
                    {"enable.partition.eof": True, "fetch.wait.max.ms": 100},
                    group_id=f"shoal-control-{uuid.uuid4().hex}",
                    enable_auto_commit=False,
                    isolation_level="read_committed",
                    logger=CLIENT_LOGGER,
                )
            )
            start = OFFSET_BEGINNING
            if not from_start:
                # The end now, read at once: commands written before this reader
                # existed are never acted on (the topic keeps the last one).
                start = self._end(topic)
            self._consumer.assign([TopicPartition(topic, 0, start)])
        except KafkaException as exc:
            raise ConnectorError(f"cannot open control topic {topic}: {exc}") from exc
        self.at_end = False

    def _end(self, topic: str) -> int:
        """The topic's end offset; a topic made a moment ago may lack a leader for a while."""
        deadline = time.monotonic() + 30
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, 0), 10)
                return max(int(high), 0)
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def send(self, key: str, value: Mapping[str, Any] | None) -> None:
        """Write one record (``None``: a tombstone) and wait until it is stored.

        Raises:
            ConnectorError: the record could not be written.
        """
        data = None if value is None else json.dumps(value, sort_keys=True).encode()
        errors: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            self._producer.produce(self.topic, key=key.encode(), value=data, on_delivery=done)
            left = self._producer.flush(30)
        except (KafkaException, BufferError) as exc:
            raise ConnectorError(f"cannot write to {self.topic}: {exc}") from exc
        if errors or left:
            raise ConnectorError(
                f"cannot write to {self.topic}: {errors[0] if errors else 'timeout'}"
            )

    def read(self, timeout_s: float = 0.0) -> list[tuple[str, dict[str, Any] | None]]:
        """Records that arrived since the last read, oldest first (waits up to ``timeout_s``)."""
        out: list[tuple[str, dict[str, Any] | None]] = []
        try:
            msgs = self._consumer.consume(500, timeout_s)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read {self.topic}: {exc}") from exc
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.at_end = True
                    continue
                if _group_refused(err):
                    continue
                raise ConnectorError(f"cannot read {self.topic}: {err}")
            self.at_end = False
            raw_key = msg.key()
            if raw_key is None:
                continue
            key = raw_key.decode("utf-8", "replace")
            raw = msg.value()
            if raw is None:
                out.append((key, None))
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                log.warning("%s: skipping a record under %r that is not JSON", self.topic, key)
                continue
            if isinstance(value, dict):
                out.append((key, value))
            else:
                log.warning("%s: skipping a record under %r that is not an object", self.topic, key)
        return out

    def read_to_end(self, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """The latest value of every key up to the topic's end (from where reading began)."""
        latest: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        self.at_end = False
        while not self.at_end and time.monotonic() < deadline:
            for key, value in self.read(0.2):
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value
        return latest

    def close(self) -> None:
        """Release the clients."""
        try:
            self._producer.flush(5)
        finally:
            with contextlib.suppress(KafkaException, RuntimeError):
                self._consumer.close()


def latest_values(
    bootstrap: str | KafkaClientConfig, topics: list[str], key: str, timeout_s: float = 15.0
) -> dict[str, bytes]:
    """The latest value of the records under ``key`` in each one-partition topic.

    Reads every topic's partition 0 from its start to its end (read_committed) with one
    consumer outside any group. A topic whose latest record under ``key`` is a
    tombstone, or that has none, is left out. Values are returned as bytes, unparsed.

    Raises:
        ConnectorError: the topics could not be read to their ends within ``timeout_s``.
    """
    if not topics:
        return {}
    client = as_client_config(bootstrap)
    wanted = key.encode()
    consumer = Consumer(
        client.client(
            {"enable.partition.eof": True, "fetch.wait.max.ms": 50},
            group_id=f"shoal-jobs-{uuid.uuid4().hex}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            logger=CLIENT_LOGGER,
        )
    )
    latest: dict[str, bytes] = {}
    try:
        consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in sorted(set(topics))])
        pending = set(topics)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                topic = str(msg.topic())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(topic)
                        continue
                    if _group_refused(err):
                        continue
                    raise ConnectorError(f"cannot read {topic}: {err}")
                if msg.key() != wanted:
                    continue
                value = msg.value()
                if value is None:
                    latest.pop(topic, None)
                else:
                    latest[topic] = value
        if pending:
            raise ConnectorError(
                f"could not read {len(pending)} control topic(s) to their end within "
                f"{timeout_s:.0f}s: {sorted(pending)[:3]}"
            )
        return latest
    except KafkaException as exc:
        raise ConnectorError(f"cannot read topics {sorted(topics)[:3]}: {exc}") from exc
    finally:
        consumer.close()


def unconsumed(
    bootstrap: str | KafkaClientConfig,
    pairs: Mapping[tuple[str, int], int],
    timeout_s: float = 30.0,
    ignore: Callable[[bytes | None], bool] = lambda _value: False,
) -> list[tuple[str, int]]:
    """Partitions with committed records at or after the given offsets.

    Reads (read_committed) from each offset to the partition's end: a partition that
    ends without a data record is consumed up to there, whatever transaction markers
    follow the last record. Offsets < 0 mean "from the beginning". Records whose value
    ``ignore`` accepts do not count.

    Raises:
        ConnectorError: the partitions could not be read within ``timeout_s``.
    """
    if not pairs:
        return []
    client = as_client_config(bootstrap)
    consumer = Consumer(
        client.client(
            {"enable.partition.eof": True, "fetch.wait.max.ms": 50},
            group_id=f"shoal-inflight-{uuid.uuid4().hex}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            logger=CLIENT_LOGGER,
        )
    )
    try:
        consumer.assign(
            [TopicPartition(t, p, o if o >= 0 else OFFSET_BEGINNING) for (t, p), o in pairs.items()]
        )
        pending = set(pairs)
        found: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.2):
                tp = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(tp)
                        continue
                    if _group_refused(err):
                        continue
                    raise ConnectorError(f"cannot read {tp[0]}[{tp[1]}]: {err}")
                if tp in pending and not ignore(msg.value()):
                    found.add(tp)
                    pending.discard(tp)
        if pending:
            raise ConnectorError(
                f"could not read {len(pending)} partitions to their end within {timeout_s:.0f}s: "
                f"{sorted(pending)[:3]}"
            )
        return sorted(found)
    except KafkaException as exc:
        raise ConnectorError(f"cannot read partitions {sorted(pairs)[:3]}: {exc}") from exc
    finally:
        consumer.close()


def commit_group_offsets(
    bootstrap: str | KafkaClientConfig,
    group: str,
    offsets: Mapping[tuple[str, int], tuple[int, str]],
) -> None:
    """Commit offsets with metadata for a group that has no live members.

    Raises:
        ConnectorError: the commit failed (e.g. the group has members).
    """
    if not offsets:
        return
    client = as_client_config(bootstrap)
    consumer = Consumer(
        client.client({}, group_id=group, enable_auto_commit=False, logger=CLIENT_LOGGER)
    )
    try:
        tps = [TopicPartition(t, p, o, metadata=m) for (t, p), (o, m) in offsets.items()]
        result = consumer.commit(offsets=tps, asynchronous=False)
        bad = [tp for tp in result or [] if tp.error is not None]
        if bad:
            raise ConnectorError(
                f"cannot commit offsets of group {group!r}: {bad[0].topic}[{bad[0].partition}] "
                f"{bad[0].error}"
            )
    except KafkaException as exc:
        raise ConnectorError(f"cannot commit offsets of group {group!r}: {exc}") from exc
    finally:
        consumer.close()


def iter_partition(
    bootstrap: str | KafkaClientConfig, topic: str, partition: int, end: int
) -> Iterator[tuple[bytes, bytes | None]]:
    """Committed ``(key, value)`` records of a partition from its start up to ``end``."""
    from connectors.kafka.transport import ChangelogReader

    if end <= 0:
        return
    for key, value, offset in ChangelogReader(bootstrap).read(topic, partition):
        if offset >= end:
            return
        yield key, value
        if offset == end - 1:
            return


def _group_refused(err: KafkaError) -> bool:
    """The coordinator lookup of a reader's throwaway group was refused.

    These readers assign partitions themselves and never use their group, but the client
    looks up a coordinator for any ``group.id``; a principal with no rights on that
    group (a job's ACLs name its own group only) gets this error, which is not about the
    records being read.
    """
    return bool(err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED)
