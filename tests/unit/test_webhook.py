"""The webhook sink's configuration, backoff schedule and signature (no server needed).

Delivery against a real local HTTP server is in tests/integration/test_webhook_sink.py.
"""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from connectors.webhook import WebhookConfig, WebhookSink, sign
from runtime.api.errors import ConfigError, ConnectorError


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"alert_id":"a1"}'
    want = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"s3cret", "1700000000", body) == "v1=" + want
    assert sign(b"other", "1700000000", body) != "v1=" + want


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    config = WebhookConfig("http://127.0.0.1:1/x", b"k", backoff_initial_s=0.1,
                           backoff_multiplier=2.0, backoff_max_s=1.0, jitter=0.2)  # fmt: skip
    rng = random.Random(5)
    for retry in range(1, 12):
        base = 0.1 * 2 ** (retry - 1)
        wait = config.backoff_s(retry, rng)
        assert min(1.0, 0.8 * base) <= wait <= min(1.0, 1.2 * base)
    waits = [config.backoff_s(r, rng) for r in range(1, 5)]
    assert waits == sorted(waits) and waits[-1] > 5 * waits[0]
    exact = WebhookConfig("http://h/x", b"k", backoff_initial_s=0.5, jitter=0.0)
    assert [exact.backoff_s(r, rng) for r in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_secret_never_shows_in_repr() -> None:
    config = WebhookConfig("https://hooks.example/qoe", "very-secret-value")
    assert config.secret == b"very-secret-value"
    assert "very-secret" not in repr(config)
    sink = WebhookSink(config)
    try:
        assert "very-secret" not in repr(sink)
    finally:
        sink.close()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"url": "ftp://x"}, "http"),
        ({"secret": b""}, "secret"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_initial_s": 5.0, "backoff_max_s": 1.0}, "backoff"),
        ({"jitter": 1.5}, "jitter"),
        ({"backoff_multiplier": 0.5}, "multiplier"),
    ],
)
def test_invalid_config_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"url": "http://127.0.0.1:1/x", "secret": b"k", **kwargs}
    with pytest.raises(ConfigError, match=message):
        WebhookConfig(**args)  # type: ignore[arg-type]


def test_record_without_idempotency_key_is_refused_before_sending() -> None:
    sink = WebhookSink(WebhookConfig("http://127.0.0.1:1/x", b"k"))
    try:
        sink.write([(None, {"rule": "r"}, 0)])
        with pytest.raises(ConnectorError, match="alert_id"):
            sink.flush()
    finally:
        sink.close()
