"""Webhook signatures by the Standard Webhooks convention (https://www.standardwebhooks.com).

The one place the ``standardwebhooks`` package is imported. Each delivery carries:

* ``webhook-id``: the message id, the receiver's idempotency key (the same on every
  attempt and every replay of the record);
* ``webhook-timestamp``: UNIX seconds when the attempt was signed;
* ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``.

The secret is written ``whsec_`` + base64 of 24 to 64 random bytes, as the convention
says; :func:`generate_secret` makes one. A receiver verifies with any Standard Webhooks
library (``standardwebhooks.Webhook(secret).verify(body, headers)`` in Python, ``svix``
and others elsewhere) or with :func:`verify` below, which also takes the tolerance of
the timestamp check.

>>> secret = generate_secret()
>>> headers = signed_headers(secret, "a1.fired", 1_700_000_000, b'{"n":1}')
>>> verify(b'{"n":1}', headers, secret, now_s=1_700_000_010)
{'n': 1}
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from runtime.api.errors import ConfigError, ShoalError

__all__ = [
    "ID_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookVerificationError",
    "generate_secret",
    "parse_secret",
    "signed_headers",
    "verify",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
_MIN_KEY, _MAX_KEY = 24, 64  # bytes, the convention's bounds
DEFAULT_TOLERANCE = timedelta(minutes=5)


class WebhookVerificationError(ShoalError):
    """A delivery's signature, timestamp or headers do not verify: refuse the request."""


def generate_secret(nbytes: int = 32) -> str:
    """A new secret in the convention's format: ``whsec_`` + base64 of random bytes.

    Raises:
        ConfigError: ``nbytes`` is outside 24..64.
    """
    if not _MIN_KEY <= nbytes <= _MAX_KEY:
        raise ConfigError(f"a webhook secret has {_MIN_KEY} to {_MAX_KEY} bytes, got {nbytes}")
    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode("ascii")


def parse_secret(secret: str | bytes) -> bytes:
    """The key bytes of a secret: ``whsec_<base64>`` text, or the raw key bytes.

    Raises:
        ConfigError: the text is not ``whsec_`` + base64, or the key is not 24..64
            bytes long (the message never contains the secret).
    """
    if isinstance(secret, str):
        if not secret.startswith(SECRET_PREFIX):
            raise ConfigError(
                f"a webhook secret must look like {SECRET_PREFIX}<base64> "
                "(Standard Webhooks); make one with connectors.webhook.generate_secret()"
            )
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"a webhook secret after {SECRET_PREFIX} must be base64") from exc
    else:
        key = bytes(secret)
    if not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise ConfigError(
            f"a webhook secret must hold {_MIN_KEY} to {_MAX_KEY} bytes, got {len(key)}"
        )
    return key


def signed_headers(
    secret: str | bytes, msg_id: str, timestamp_s: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt.

    Args:
        secret: ``whsec_...`` text or the key bytes.
        msg_id: the ``webhook-id`` (idempotency key).
        timestamp_s: UNIX seconds of the attempt.
        body: the exact bytes sent.
    """
    signer = Webhook(parse_secret(secret))
    when = datetime.fromtimestamp(timestamp_s, tz=UTC)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(int(timestamp_s)),
        SIGNATURE_HEADER: signer.sign(msg_id, when, body),
    }


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    *,
    now_s: float | None = None,
) -> Any:
    """Check a received delivery and return its decoded JSON body.

    Args:
        payload: the request body exactly as received.
        headers: the request headers (any letter case).
        secret: the shared secret (``whsec_...`` or key bytes).
        tolerance: how far the ``webhook-timestamp`` may be from now, either way.
        now_s: the receiver's clock in UNIX seconds (default: the wall clock).

    Returns:
        The body parsed as JSON.

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is outside the
            tolerance, no signature matches, or the body is not JSON.
        ConfigError: the secret itself is malformed.
    """
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    low = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, sigs = (low.get(h) for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (msg_id and stamp and sigs):
        raise WebhookVerificationError(
            f"webhook delivery lacks one of {ID_HEADER}, {TIMESTAMP_HEADER}, {SIGNATURE_HEADER}"
        )
    try:
        timestamp_s = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError(
            f"webhook timestamp {stamp[:20]!r} is not an integer"
        ) from exc
    now = time.time() if now_s is None else now_s
    if abs(now - timestamp_s) > tolerance.total_seconds():
        raise WebhookVerificationError(
            f"webhook timestamp {timestamp_s} is more than {tolerance.total_seconds():g} s "
            f"from now ({int(now)}): stale or replayed"
        )
    expected = signed_headers(secret, msg_id, timestamp_s, body)[SIGNATURE_HEADER].encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in sigs.split(" ")):
        raise WebhookVerificationError(f"webhook {msg_id!r}: no signature matches")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError(f"webhook {msg_id!r}: body is not JSON") from exc
