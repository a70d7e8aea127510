"""What the hand-written loops (``impl_raw*``) share: committing and the final report."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from bench.common import Stopwatch, package_version


def commit(consumer: Consumer) -> None:
    """Commit what was consumed (nothing new since the last commit is fine)."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


def finish(
    consumer: Consumer, producer: Producer, watch: Stopwatch, records: int, report: Any,
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
