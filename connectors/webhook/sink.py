"""A webhook sink: POSTs each record as JSON, signed by the Standard Webhooks convention.

Each record is sent as one ``POST`` to the configured URL with:

* body: the record value as compact JSON with sorted keys (the same bytes on
  every attempt);
* ``webhook-id``: the record's idempotency key, the values of ``id_fields`` joined by
  ``.`` (``<alert_id>.<state>`` for ``QoeAlert``: an incident's ``fired`` and
  ``resolved`` are two messages, each with an id that is the same on every attempt
  and every replay, so the receiver drops repeats: at-least-once delivery,
  effectively once);
* ``webhook-timestamp`` and ``webhook-signature`` (see :mod:`connectors.webhook.signing`).

A 2xx answer delivers the record. Connection errors, attempts past their deadline
(``deadline_s`` for the whole exchange, not per read: a receiver that trickles bytes
is cut), 408, 425, 429 and 5xx are retried by the ``backoff`` budget
(:class:`connectors.retry.Backoff`), a wait raised to a ``Retry-After`` the receiver
asks for (capped at the budget's ``max_s``). At most ``max_response_bytes`` of an
answer are read. Other answers (4xx) are permanent.

A record that is refused, has no idempotency key, or is still not delivered when its
budget is spent is **dead-lettered**: ``drain_undelivered`` hands it back (its
``webhook-id`` as the key, the record as the value) and the worker writes it to the
job's dead-letter topic in the same checkpoint, so a receiver that stays down never
stops the job nor holds its checkpoints; the dead letters can be replayed with their
ids. Once one record has spent its budget the receiver counts as down for the rest of
that flush: the records after it are dead-lettered without more attempts, so one
checkpoint waits for at most one budget. The next flush tries again.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.retry import Backoff
from connectors.webhook.http import DeadlinePoster
from connectors.webhook.signing import parse_secret, signed_headers
from runtime.api.errors import ConfigError, ConnectorError
from runtime.api.io import Undelivered
from runtime.api.redact import redact_text, redact_url

__all__ = ["WebhookConfig", "WebhookSink"]

_RETRY_STATUSES = frozenset((408, 425, 429))
_DEFAULT_BACKOFF = Backoff(max_attempts=6, initial_s=0.5, multiplier=2.0, max_s=30.0)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where and how to post.

    Args:
        url: the endpoint (``http://`` or ``https://``); shown only redacted.
        secret: the Standard Webhooks secret, ``whsec_<base64>`` text or the key bytes
            (24 to 64); stored as key bytes, never shown in ``repr``.
        deadline_s: the longest one attempt may take (connect, send and answer).
        max_response_bytes: at most this much of an answer is read.
        backoff: the retry budget of one record.
        id_fields: the value fields whose values, joined by ``.``, are the ``webhook-id``.
        headers: extra headers sent with every request.

    Raises:
        ConfigError: naming the first invalid setting.
    """

    url: str
    secret: bytes = field(repr=False)
    deadline_s: float = 10.0
    max_response_bytes: int = 64 * 1024
    backoff: Backoff = _DEFAULT_BACKOFF
    id_fields: tuple[str, ...] = ("alert_id", "state")
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"webhook url must start with http:// or https://, got {redact_url(self.url)!r}"
            )
        object.__setattr__(self, "secret", parse_secret(self.secret))
        if not self.deadline_s > 0:
            raise ConfigError(f"webhook deadline_s must be positive, got {self.deadline_s!r}")
        if isinstance(self.max_response_bytes, bool) or not self.max_response_bytes >= 0:
            raise ConfigError(
                f"webhook max_response_bytes must be >= 0, got {self.max_response_bytes!r}"
            )
        if not self.id_fields:
            raise ConfigError("webhook id_fields must name at least one field")

    def __repr__(self) -> str:
        return (
            f"WebhookConfig(url={redact_url(self.url)!r}, secret='***', "
            f"deadline_s={self.deadline_s!r}, max_response_bytes={self.max_response_bytes!r}, "
            f"backoff={self.backoff!r}, id_fields={self.id_fields!r})"
        )

    def message_id(self, value: Any) -> str:
        """The ``webhook-id`` of a record value.

        Raises:
            KeyError, TypeError: the value lacks one of ``id_fields``.
        """
        parts = [value[name] for name in self.id_fields]
        if any(p is None for p in parts):
            raise KeyError(self.id_fields)
        return ".".join(str(p) for p in parts)


class WebhookSink:
    """An ``ExternalSink`` that posts records to a webhook (see the module docstring).

    Args:
        config: endpoint, secret, deadline and retry budget.
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
        self._queue: deque[tuple[Any, Any, int]] = deque()
        self._undelivered: list[Undelivered] = []
        self._poster = DeadlinePoster(config.deadline_s, config.max_response_bytes)
        self._where = redact_url(config.url)
        self.delivered = 0
        self.attempts = 0
        self.dead_lettered = 0

    def __repr__(self) -> str:
        return f"WebhookSink({self._where!r}, queued={len(self._queue)})"

    def write(self, records: Sequence[tuple[Any, Any, int]]) -> None:
        """Queue ``(key, value, event_time_ms)`` records; nothing is sent until ``flush``."""
        self._queue.extend(records)

    def flush(self) -> None:
        """Post every queued record in order; what cannot be delivered is dead-lettered.

        Never raises for a receiver's failure: see ``drain_undelivered``.
        """
        down: str | None = None
        while self._queue:
            _, value, _ = self._queue[0]
            if down is not None:
                self._give_up(value, None, "ConnectorError", f"receiver down: {down}")
            else:
                down = self._deliver(value)
            self._queue.popleft()

    def drain_undelivered(self) -> list[Undelivered]:
        """Records given up on since the last call, for the dead-letter output."""
        out, self._undelivered = self._undelivered, []
        return out

    def close(self) -> None:
        """Close the HTTP connections (queued records are not sent)."""
        self._poster.close()

    def _give_up(self, value: Any, msg_id: str | None, error_class: str, why: str) -> None:
        if msg_id is None:
            try:
                msg_id = self.config.message_id(value)
            except (KeyError, TypeError):
                msg_id = None
        text = redact_text(f"webhook {self._where}: record {msg_id!r} dead-lettered: {why}")
        self._undelivered.append(
            Undelivered(
                key=None if msg_id is None else msg_id.encode(),
                value=value,
                error_class=error_class,
                error_message=text,
            )
        )
        self.dead_lettered += 1

    def _deliver(self, value: Any) -> str | None:
        """Deliver one record or dead-letter it; the last error if its budget ran out."""
        cfg = self.config
        try:
            msg_id = cfg.message_id(value)
        except (KeyError, TypeError):
            fields = ", ".join(cfg.id_fields)
            self._give_up(value, None, "RecordError", f"record has no {fields} for a webhook-id")
            return None
        try:
            body = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            self._give_up(value, msg_id, "RecordError", f"record is not JSON: {exc}")
            return None
        last = ""
        budget = cfg.backoff
        for attempt in range(1, budget.max_attempts + 1):
            headers = {
                **cfg.headers,
                "Content-Type": "application/json",
                **signed_headers(cfg.secret, msg_id, int(self._clock()), body),
            }
            retry_after: float | None = None
            self.attempts += 1
            try:
                reply = self._poster.post(cfg.url, body, headers)
            except ConnectorError as exc:  # connect errors and deadlines included
                last = str(exc)
            else:
                if 200 <= reply.status < 300:
                    self.delivered += 1
                    return None
                last = f"HTTP {reply.status}"
                if reply.status < 500 and reply.status not in _RETRY_STATUSES:
                    self._give_up(value, msg_id, "ConnectorError", f"refused with {last}")
                    return None
                retry_after = _retry_after_s(reply.headers.get("retry-after"))
            if attempt < budget.max_attempts:
                wait = budget.delay_s(attempt, self._rng)
                if retry_after is not None:
                    wait = min(budget.max_s, max(wait, retry_after))
                self._sleep(wait)
        why = f"not delivered after {budget.max_attempts} attempts; last error: {last}"
        self._give_up(value, msg_id, "ConnectorError", why)
        return last


def _retry_after_s(header: str | None) -> float | None:
    """Seconds of a ``Retry-After: <seconds>`` header; None if absent or a date."""
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None
