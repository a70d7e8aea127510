"""Read an offset range of a partition as a read_committed consumer sees it.

``shoal chaos`` reads a job's inputs and its sinks between two points in time: the
records a job read (a range of its input partitions) and what it committed to its
sink topics over the same period.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from connectors.kafka.client import (
    CLIENT_LOGGER,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from connectors.kafka.config import KafkaClientConfig, as_client_config
from runtime.api.errors import ConnectorError


@dataclass(frozen=True, slots=True)
class RangeRecord:
    """One record of a range: key, value, record timestamp (ms) and offset."""

    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    offset: int


def read_range(
    bootstrap: str | KafkaClientConfig,
    topic: str,
    partition: int,
    start: int,
    end: int,
    timeout_s: float = 300.0,
) -> Iterator[RangeRecord]:
    """The committed records of ``topic[partition]`` with ``start <= offset < end``.

    ``end`` is a read_committed end offset (the last stable offset) read earlier:
    records of aborted transactions and transaction markers are skipped, so offsets
    have gaps.

    Raises:
        ConnectorError: the partition cannot be read, or not within ``timeout_s``.
    """
    if end <= start:
        return
    client = as_client_config(bootstrap)
    consumer = Consumer(
        client.client(
            {"enable.partition.eof": True, "fetch.queue.backoff.ms": 10},
            group_id=f"shoal-range-{uuid.uuid4().hex}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            logger=CLIENT_LOGGER,
        )
    )
    where = f"{topic}[{partition}] {start}..{end}"
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if (msg.offset() or 0) >= end:
                            return
                        continue
                    raise ConnectorError(f"reading {where}: {err}")
                offset = msg.offset()
                if offset is None or offset >= end:
                    return
                _, ts = msg.timestamp()
                yield RangeRecord(msg.key(), msg.value(), ts, offset)
                if offset >= end - 1:
                    return
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= end:  # the rest of the range were markers or aborted records
                return
        raise ConnectorError(f"reading {where} took longer than {timeout_s}s")
    except KafkaException as exc:
        raise ConnectorError(f"reading {where}: {exc}") from exc
    finally:
        consumer.close()
