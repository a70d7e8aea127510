"""A webhook sink: POSTs each record as JSON, signed, with an idempotency key and retries.

Each record is sent as one ``POST`` to the configured URL with:

* body: the record value as compact JSON with sorted keys (the same bytes on
  every attempt);
* ``Idempotency-Key``: the value's ``idempotency_field`` (``alert_id`` for
  ``QoeAlert``), the same on every attempt and on every replay of the record, so the
  receiver can drop repeats (at-least-once delivery, effectively once);
* ``X-Shoal-Timestamp``: UNIX seconds when the attempt was signed;
* ``X-Shoal-Signature``: ``v1=`` + hex HMAC-SHA256 over ``<timestamp>.<body>`` with
  the shared secret. A receiver recomputes it, compares in constant time and
  rejects stale timestamps, which stops forged and replayed requests.

A 2xx answer delivers the record. Connection errors, timeouts, 408, 429 and 5xx are
retried with exponential backoff (``backoff_initial_s * backoff_multiplier**n``),
jittered by up to ``±jitter`` of itself, capped at ``backoff_max_s`` and raised to a
``Retry-After`` the server asks for (also capped). Other answers (4xx) are
permanent. After ``max_attempts`` attempts, or on a permanent answer, ``flush``
raises :class:`~runtime.api.errors.ConnectorError`; the record and the ones after it
stay queued, so the worker does not commit past them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# httpx2 is httpx's successor (same API): it comes with confluent-kafka[schemaregistry],
# which Shoal depends on already, and gives a connection pool and per-request timeouts.
import httpx2

from runtime.api.errors import ConfigError, ConnectorError

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookConfig",
    "WebhookSink",
    "sign",
]

TIMESTAMP_HEADER = "X-Shoal-Timestamp"
SIGNATURE_HEADER = "X-Shoal-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RETRY_STATUSES = frozenset((408, 425, 429))


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value: ``v1=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where and how to post.

    Args:
        url: the endpoint (``http://`` or ``https://``).
        secret: the shared HMAC secret; never shown in ``repr``.
        timeout_s: timeout of one request (connect, write, read each).
        max_attempts: attempts per record, the first included.
        backoff_initial_s: wait before the first retry.
        backoff_multiplier: growth of the wait per retry.
        backoff_max_s: cap of one wait.
        jitter: the wait is drawn from ``wait * (1 ± jitter)`` (0 to 1).
        idempotency_field: the value field that is the idempotency key.
        headers: extra headers sent with every request.

    Raises:
        ConfigError: naming the first invalid setting.
    """

    url: str
    secret: bytes = field(repr=False)
    timeout_s: float = 5.0
    max_attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 30.0
    jitter: float = 0.2
    idempotency_field: str = "alert_id"
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook url must start with http:// or https://, got {self.url!r}")
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", self.secret.encode())
        if not self.secret:
            raise ConfigError("webhook secret must not be empty")
        if not self.timeout_s > 0:
            raise ConfigError(f"webhook timeout_s must be positive, got {self.timeout_s!r}")
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError(f"webhook max_attempts must be >= 1, got {self.max_attempts!r}")
        if not (0 <= self.backoff_initial_s <= self.backoff_max_s):
            raise ConfigError("webhook backoff needs 0 <= backoff_initial_s <= backoff_max_s")
        if not self.backoff_multiplier >= 1:
            raise ConfigError(
                f"webhook backoff_multiplier must be >= 1, got {self.backoff_multiplier!r}"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"webhook jitter must be between 0 and 1, got {self.jitter!r}")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1 for the first), jittered and capped."""
        base = self.backoff_initial_s * self.backoff_multiplier ** (retry - 1)
        return min(self.backoff_max_s, base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))


class WebhookSink:
    """An ``ExternalSink`` that posts records to a webhook (see the module docstring).

    Args:
        config: endpoint, secret, timeouts and retry budget.
        sleep: waits between attempts (injectable for tests).
        clock: UNIX time in seconds for signatures (injectable for tests).
        rng: jitter source.
    """

    def __init__(
        self,
        config: WebhookConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._queue: list[tuple[Any, Any, int]] = []
        # Endpoints and proxies come from config, never from the process environment.
        self._client = httpx2.Client(timeout=config.timeout_s, trust_env=False)
        self.delivered = 0

    def __repr__(self) -> str:
        return f"WebhookSink({self.config.url!r}, queued={len(self._queue)})"

    def write(self, records: Sequence[tuple[Any, Any, int]]) -> None:
        """Queue ``(key, value, event_time_ms)`` records; nothing is sent until ``flush``."""
        self._queue.extend(records)

    def flush(self) -> None:
        """Post every queued record in order.

        Raises:
            ConnectorError: a record could not be delivered within the retry budget or
                was refused; it and the records after it stay queued.
        """
        while self._queue:
            _, value, _ = self._queue[0]
            self._deliver(value)
            self._queue.pop(0)
            self.delivered += 1

    def close(self) -> None:
        """Close the HTTP connections (queued records are not sent)."""
        self._client.close()

    def _deliver(self, value: Any) -> None:
        cfg = self.config
        body = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        try:
            key = str(value[cfg.idempotency_field])
        except (KeyError, TypeError) as exc:
            raise ConnectorError(
                f"webhook {cfg.url}: record has no {cfg.idempotency_field!r} for an idempotency key"
            ) from exc
        last = ""
        for attempt in range(1, cfg.max_attempts + 1):
            stamp = str(int(self._clock()))
            headers = {
                **cfg.headers,
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: key,
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: sign(cfg.secret, stamp, body),
            }
            retry_after: float | None = None
            try:
                response = self._client.post(cfg.url, content=body, headers=headers)
            except httpx2.TransportError as exc:  # connect errors and timeouts included
                last = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return
                last = f"HTTP {status}"
                if status < 500 and status not in _RETRY_STATUSES:
                    raise ConnectorError(
                        f"webhook {cfg.url} refused record {key!r} with {last} (not retried)"
                    )
                retry_after = _retry_after_s(response.headers.get("Retry-After"))
            if attempt < cfg.max_attempts:
                wait = cfg.backoff_s(attempt, self._rng)
                if retry_after is not None:
                    wait = min(cfg.backoff_max_s, max(wait, retry_after))
                self._sleep(wait)
        raise ConnectorError(
            f"webhook {cfg.url}: record {key!r} not delivered after {cfg.max_attempts} "
            f"attempts; last error: {last}"
        )


def _retry_after_s(header: str | None) -> float | None:
    """Seconds of a ``Retry-After: <seconds>`` header; None if absent or a date."""
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None
