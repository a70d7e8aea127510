"""Webhook sink: signed JSON POSTs with an idempotency key, retries and backoff."""

from connectors.webhook.sink import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookSink,
    sign,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookConfig",
    "WebhookSink",
    "sign",
]
