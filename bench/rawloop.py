"""What the hand-written loops (``impl_raw*``) share: their clients, input schemas,
writing, committing once a second and the final report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from fastavro import parse_schema

from bench.common import FAST_FETCH, FAST_PRODUCE, Stopwatch, package_version

#: The Avro schema of each input stream of the generated workloads.
STREAM_SCHEMAS = {"playback": "PlaybackEvent.avsc", "interactions": "InteractionEvent.avsc"}


def clients(
    args: Any,
    topics: list[str],
    *,
    consumer: dict[str, Any] | None = None,
    producer: dict[str, Any] | None = None,
    **subscribe: Any,
) -> tuple[Consumer, Producer]:
    """A consumer subscribed to ``topics`` (fast fetch, manual commits) and a producer
    (``acks=all``), each with extra settings."""
    c = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group,
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        **FAST_FETCH, **(consumer or {}),
    })  # fmt: skip
    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", **FAST_PRODUCE,
                  **(producer or {})})  # fmt: skip
    c.subscribe(topics, **subscribe)
    return c, p


def topic_schemas(args: Any, inputs: dict[str, str]) -> dict[str, Any]:
    """The parsed Avro schema of each input topic (``inputs``: stream -> topic)."""
    folder = Path(args.schema).parent
    return {
        topic: parse_schema(json.loads((folder / STREAM_SCHEMAS[stream]).read_text()))
        for stream, topic in inputs.items()
    }


def send(producer: Producer, topic: str, value: bytes, key: bytes) -> None:
    """Produce, waiting for room when the client's queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


class Committer:
    """Flush and commit once a second (at-least-once)."""

    def __init__(self, consumer: Consumer, producer: Producer) -> None:
        self.consumer, self.producer = consumer, producer
        self.next = time.monotonic() + 1.0

    def tick(self) -> None:
        """Serve delivery reports; flush and commit when a second has passed."""
        self.producer.poll(0)
        if time.monotonic() >= self.next:
            self.producer.flush()
            commit(self.consumer)
            self.next = time.monotonic() + 1.0


def commit(consumer: Consumer) -> None:
    """Commit what was consumed (nothing new since the last commit is fine)."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


def finish(
    consumer: Consumer,
    producer: Producer,
    watch: Stopwatch,
    records: int,
    report: Any,
    **extra: Any,
) -> None:
    """Stop the clock, deliver and commit the rest, close, and write the report."""
    watch.stop()
    producer.flush()
    commit(consumer)
    consumer.close()
    watch.records = records
    watch.extra.update(
        **extra,
        versions={
            "confluent-kafka": package_version("confluent-kafka"),
            "fastavro": package_version("fastavro"),
        },
    )
    watch.write(report)
