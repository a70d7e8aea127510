"""Topics of a benchmark run: creation with unlimited retention, and reading one whole.

Records of W1 carry event times of the generator's 2025 origin (Shoal's sink
stamps results with their window's end), so every topic is created with
``retention.ms=-1``: time-based retention would otherwise delete them mid-run.
"""

from __future__ import annotations

import uuid

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.client import CLIENT_LOGGER, Consumer, TopicPartition

KEEP = {"retention.ms": "-1"}


def create_topics(
    bootstrap: str, names: list[str], partitions: int, config: dict[str, str] | None = None
) -> None:
    """Create topics (unlimited retention, plus ``config``)."""
    conf = {**KEEP, **(config or {})}
    KafkaAdmin(bootstrap).ensure_topics([TopicSpec(n, partitions, config=conf) for n in names])


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every ``(key, value)`` of a topic up to its current end (committed records only)."""
    return [(k, v) for k, v, _ in read_topic_timed(bootstrap, topic)]


def read_topic_timed(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
    """Every ``(key, value, timestamp ms)`` of a topic up to its current end (committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.queue.backoff.ms": 10,
            "logger": CLIENT_LOGGER,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=30)
        parts = sorted(md.topics[topic].partitions)
        ends = {}
        for p in parts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = high
        todo = {p for p, high in ends.items() if high > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        out: list[tuple[bytes | None, bytes | None, int]] = []
        quiet = 0
        # A transaction marker can be a partition's last offset: stop after 5 quiet seconds.
        while todo and quiet < 5:
            msgs = consumer.consume(num_messages=10_000, timeout=1.0)
            quiet = 0 if msgs else quiet + 1
            for m in msgs:
                if m.error() is not None:
                    continue
                out.append((m.key(), m.value(), m.timestamp()[1]))
                p = m.partition()
                if m.offset() + 1 >= ends[p]:
                    todo.discard(p)
        return out
    finally:
        consumer.close()
