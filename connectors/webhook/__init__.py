"""Webhook sink: JSON POSTs signed by the Standard Webhooks convention, with retries.

Senders bind a sink to ``webhook+https://...`` (see ``connectors.external``); receivers
written in Python check deliveries with :func:`verify` (or any Standard Webhooks
library).
"""

from connectors.webhook.signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookVerificationError,
    generate_secret,
    parse_secret,
    signed_headers,
    verify,
)
from connectors.webhook.sink import WebhookConfig, WebhookSink

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookConfig",
    "WebhookSink",
    "WebhookVerificationError",
    "generate_secret",
    "parse_secret",
    "signed_headers",
    "verify",
]
