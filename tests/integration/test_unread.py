"""``KafkaSource.unread`` on the real broker: what the worker's idleness relies on.

A partition is unread while it has committed records the application has not been
handed; once they are all read it is not, even though transaction markers and an
aborted transaction follow the last record (read_committed skips them).
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.source import KafkaSource
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration


def _produce_transactions(kafka: str, topic: str, committed: int) -> None:
    """``committed`` records in a transaction each, then one aborted record."""
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": uuid.uuid4().hex})
    producer.init_transactions(30)
    for i in range(committed):
        producer.begin_transaction()
        producer.produce(topic, f"v{i}".encode(), partition=0)
        producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", partition=0)
    producer.flush(30)
    producer.abort_transaction(30)


def test_unread_until_every_committed_record_is_read(kafka: str) -> None:
    topic = unique("unread")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(topic, 1)])
    _produce_transactions(kafka, topic, 3)
    source = KafkaSource(kafka, unique("unread-group"), [topic])
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while not got:
            assert time.monotonic() < deadline, "no record within 30 s"
            got += [m.value() for m in source.poll(1, 0.2)]
        # one read, two committed records still to come
        assert source.unread({}) == [(topic, 0)]
        while len(got) < 3:
            assert time.monotonic() < deadline, f"only {got} within 30 s"
            got += [m.value() for m in source.poll(10, 0.2)]
        assert got == [b"v0", b"v1", b"v2"]
        # caught up: the markers and the aborted record are not unread records
        while source.unread({}):
            assert time.monotonic() < deadline, "still unread after reading everything"
            source.poll(10, 0.2)
        assert source.poll(10, 1.0) == []
    finally:
        source.close()
