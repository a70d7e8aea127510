"""Batched Kafka sink: linger and large batches; delivery failures raised as our errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.kafka.client import CLIENT_LOGGER, KafkaError, KafkaException, Producer
from runtime.api.errors import ConnectorError


class KafkaSink:
    """Writes records to Kafka with an idempotent producer.

    Delivery reports are requested only for failures (``delivery.report.only.error``),
    so the happy path costs no Python call per record; ``flush`` raises the first
    failure of the batch.

    Args:
        bootstrap: cluster address.
        linger_ms: how long to wait to fill batches.
        extra: more client settings (override the defaults).
    """

    def __init__(
        self, bootstrap: str, *, linger_ms: int = 20, extra: Mapping[str, Any] | None = None
    ) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "acks": "all",
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "logger": CLIENT_LOGGER,
        }
        conf.update(extra or {})
        self.bootstrap = bootstrap
        self._errors: list[str] = []
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ConnectorError(f"cannot create a producer for {bootstrap}: {exc}") from exc

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record, waiting for queue space if the client's buffer is full."""
        produce = self._producer.produce
        kwargs: dict[str, Any] = {"timestamp": timestamp_ms or 0}
        if headers is not None:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                produce(topic, value, key, **kwargs)
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise ConnectorError(f"cannot produce to {topic!r}: {exc}") from exc

    def write_many(self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
        """Queue many ``(key, value, timestamp_ms)`` records to one topic (the hot path)."""
        produce = self._producer.produce
        poll = self._producer.poll
        for key, value, ts in records:
            while True:
                try:
                    produce(topic, value, key, timestamp=ts or 0)
                    break
                except BufferError:
                    poll(0.05)
                except KafkaException as exc:
                    raise ConnectorError(f"cannot produce to {topic!r}: {exc}") from exc

    def poll(self) -> None:
        """Serve delivery callbacks without blocking."""
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued record; raise the first delivery failure."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise ConnectorError(f"{remaining} records were not delivered within {timeout_s}s")
        if self._errors:
            first, n = self._errors[0], len(self._errors)
            self._errors.clear()
            raise ConnectorError(f"{n} records failed delivery; first: {first}")

    @property
    def producer(self) -> Any:
        """The underlying client (for transactions)."""
        return self._producer

    def close(self) -> None:
        """Flush what is left."""
        self._producer.flush(10)
