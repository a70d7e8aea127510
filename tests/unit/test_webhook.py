"""The webhook sink's configuration, signatures (Standard Webhooks) and verify helper.

Delivery against real local HTTP servers is in tests/integration/test_webhook_sink.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from connectors.external import make_external_sink
from connectors.retry import Backoff
from connectors.webhook import (
    WebhookConfig,
    WebhookSink,
    WebhookVerificationError,
    generate_secret,
    parse_secret,
    signed_headers,
    verify,
)
from runtime.api.errors import ConfigError

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = 1_700_000_000
BODY = b'{"alert_id":"a1","state":"fired"}'


def test_signature_is_the_conventions_hmac_over_id_timestamp_and_body() -> None:
    headers = signed_headers(SECRET, "a1.fired", NOW, BODY)
    digest = hmac.new(KEY, b"a1.fired.1700000000." + BODY, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "a1.fired",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    assert signed_headers(KEY, "a1.fired", NOW, BODY) == headers  # key bytes work alike
    assert signed_headers(generate_secret(), "a1.fired", NOW, BODY) != headers


def test_verify_accepts_a_delivery_and_refuses_tampering_wrong_secret_and_staleness() -> None:
    headers = signed_headers(SECRET, "a1.fired", NOW, BODY)
    assert verify(BODY, headers, SECRET, now_s=NOW + 30) == {"alert_id": "a1", "state": "fired"}
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify(BODY.decode(), upper, SECRET, now_s=NOW) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY.replace(b"fired", b"fixed"), headers, SECRET, now_s=NOW)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY, headers, generate_secret(), now_s=NOW)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(BODY, {**headers, "webhook-id": "a1.resolved"}, SECRET, now_s=NOW)
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify(BODY, headers, SECRET, now_s=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify(BODY, headers, SECRET, now_s=NOW - 301)  # from the future
    assert verify(BODY, headers, SECRET, timedelta(hours=1), now_s=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify(BODY, headers, SECRET, timedelta(seconds=10), now_s=NOW + 11)
    with pytest.raises(WebhookVerificationError, match="lacks"):
        verify(BODY, {"webhook-id": "x"}, SECRET, now_s=NOW)
    with pytest.raises(WebhookVerificationError, match="not an integer"):
        verify(BODY, {**headers, "webhook-timestamp": "soon"}, SECRET, now_s=NOW)


def test_verify_takes_any_of_several_signatures_as_during_a_secret_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    sig_old = signed_headers(old, "m", NOW, BODY)["webhook-signature"]
    headers = signed_headers(new, "m", NOW, BODY)
    headers["webhook-signature"] = sig_old + " " + headers["webhook-signature"]
    assert verify(BODY, headers, new, now_s=NOW) == json.loads(BODY)
    assert verify(BODY, headers, old, now_s=NOW) == json.loads(BODY)


def test_the_reference_library_verifies_what_we_sign() -> None:
    import time

    stamp = int(time.time())
    headers = signed_headers(SECRET, "a1.fired", stamp, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    # and what it signs, our helper verifies
    from datetime import UTC, datetime

    theirs = Webhook(SECRET).sign("m1", datetime.fromtimestamp(stamp, tz=UTC), BODY)
    ours = {"webhook-id": "m1", "webhook-timestamp": str(stamp), "webhook-signature": theirs}
    assert verify(BODY, ours, SECRET, now_s=stamp) == json.loads(BODY)


@pytest.mark.parametrize(
    "secret,message",
    [
        ("plain-text-secret", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64"),
        (b"x" * 23, "24 to 64"),
        (b"x" * 65, "24 to 64"),
    ],
)
def test_malformed_secrets_are_config_errors_that_never_echo_them(
    secret: str | bytes, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_secret(secret)
    shown = secret if isinstance(secret, str) else secret.decode()
    assert shown not in str(info.value)


def test_generated_secrets_parse_and_differ() -> None:
    a, b = generate_secret(), generate_secret(24)
    assert a.startswith("whsec_") and len(parse_secret(a)) == 32 and len(parse_secret(b)) == 24
    assert a != generate_secret()
    with pytest.raises(ConfigError):
        generate_secret(8)


def test_message_id_is_alert_id_and_state_stable_across_replays() -> None:
    config = WebhookConfig("http://127.0.0.1:1/x", SECRET)
    fired = {"alert_id": "a1", "state": "fired", "value": 0.5}
    assert config.message_id(fired) == "a1.fired"
    assert config.message_id(dict(fired)) == config.message_id(fired)
    assert config.message_id({**fired, "state": "resolved"}) == "a1.resolved"
    with pytest.raises(KeyError):
        config.message_id({"state": "fired"})
    with pytest.raises(KeyError):
        config.message_id({"alert_id": None, "state": "fired"})


def test_secret_and_url_password_never_show_in_repr_or_str() -> None:
    config = WebhookConfig(
        "https://user:pw-in-url@hooks.example/qoe?token=tok-in-url&team=qoe", SECRET
    )
    assert config.secret == KEY
    sink = WebhookSink(config)
    try:
        for text in (repr(config), str(config), repr(sink), str(sink)):
            assert SECRET[6:] not in text and "pw-in-url" not in text
            assert "tok-in-url" not in text and "hooks.example/qoe" in text
    finally:
        sink.close()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"url": "ftp://x"}, "http"),
        ({"url": "ftp://u:hunter2@x"}, "http"),
        ({"secret": b""}, "secret"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"max_response_bytes": -1}, "max_response_bytes"),
        ({"id_fields": ()}, "id_fields"),
    ],
)
def test_invalid_config_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"url": "http://127.0.0.1:1/x", "secret": SECRET, **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        WebhookConfig(**args)  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)


def test_records_without_an_idempotency_key_are_dead_lettered_before_sending() -> None:
    sink = WebhookSink(WebhookConfig("http://127.0.0.1:1/x", SECRET))
    try:
        sink.write([(None, {"rule": "r"}, 0), (None, {"alert_id": "a", "state": b"x"}, 0)])
        sink.flush()
        gone = sink.drain_undelivered()
        assert [u.error_class for u in gone] == ["RecordError", "RecordError"]
        assert [u.key for u in gone] == [None, b"a.b'x'"]
        assert gone[0].value == {"rule": "r"} and "alert_id, state" in gone[0].error_message
        assert "not JSON" in gone[1].error_message
        assert sink.attempts == 0 and sink.dead_lettered == 2 and sink.drain_undelivered() == []
    finally:
        sink.close()


def test_binding_url_reads_the_secret_from_the_environment_or_the_query() -> None:
    env = {"SHOAL_WEBHOOK_SECRET": SECRET}
    sink = make_external_sink("webhook+http://127.0.0.1:9/h?team=qoe", "qoe-alerts", "", env)
    assert isinstance(sink, WebhookSink)
    assert sink.config.secret == KEY and sink.config.url == "http://127.0.0.1:9/h?team=qoe"
    sink.close()
    other = {"HOOK_KEY": SECRET}
    url = "webhook+https://h.example/x?secret_env=HOOK_KEY&deadline_s=2&max_attempts=3"
    sink = make_external_sink(url, "qoe-alerts", "", other)
    assert isinstance(sink, WebhookSink)
    assert sink.config.deadline_s == 2.0 and sink.config.backoff.max_attempts == 3
    assert sink.config.url == "https://h.example/x" and sink.config.secret == KEY
    sink.close()
    # in a query, base64's '+' arrives as ' ' unless written %2B: both work
    plus = "whsec_" + base64.b64encode(b"\xfb" * 30).decode()
    assert "+" in plus
    for written in (plus, plus.replace("+", "%2B")):
        sink = make_external_sink(f"webhook+http://h/x?secret={written}", "s", "", {})
        assert isinstance(sink, WebhookSink) and sink.config.secret == b"\xfb" * 30
        sink.close()


def test_binding_errors_never_echo_secrets() -> None:
    with pytest.raises(ConfigError, match="SHOAL_WEBHOOK_SECRET") as info:
        make_external_sink("webhook+https://u:pw-xyz@h.example/x", "qoe-alerts", "", {})
    assert "pw-xyz" not in str(info.value)
    with pytest.raises(ConfigError, match="whsec_") as info:
        make_external_sink("webhook+https://h/x?secret=raw-secret-xyz", "s", "", {})
    assert "raw-secret-xyz" not in str(info.value)
    with pytest.raises(ConfigError, match="invalid number") as info:
        make_external_sink(f"webhook+https://h/x?secret={SECRET}&deadline_s=abc", "s", "", {})
    assert SECRET[6:] not in str(info.value)
    with pytest.raises(ConfigError, match="unknown sink URL scheme") as info:
        make_external_sink("mysql://root:pw-abc@db/x?token=tok-abc", "s", "", {})
    assert "pw-abc" not in str(info.value) and "tok-abc" not in str(info.value)


def test_backoff_budget_is_the_shared_one() -> None:
    config = WebhookConfig("http://h/x", SECRET, backoff=Backoff(max_attempts=2))
    assert config.backoff.max_attempts == 2
    assert WebhookConfig("http://h/x", SECRET).backoff.max_attempts == 6
