"""The one redaction helper: secrets never reach a message, repr or log line."""

from __future__ import annotations

import doctest

import pytest

import runtime.api.redact as redact_module
from runtime.api.redact import MASK, is_secret_key, redact_settings, redact_text, redact_url


def test_doctests() -> None:
    result = doctest.testmod(redact_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "name",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.jaas.config",
        "basic.auth.user.info",
        "schema.registry.basic.auth.user.info",
        "SHOAL_KAFKA_SASL_PASSWORD",
        "SHOAL_HTTP_TOKEN",
        "webhook_secret",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name", ["bootstrap.servers", "security.protocol", "sasl.mechanism", "group.id", "table"]
)
def test_plain_names(name: str) -> None:
    assert not is_secret_key(name)


def test_settings_keep_plain_values_and_mask_secrets() -> None:
    got = redact_settings(
        {
            "bootstrap.servers": "b1:9093,b2:9093",
            "sasl.username": "alice",
            "sasl.password": "s3cr3t-value",
            "schema.registry.url": "https://u:p4ss@registry:8081",
        }
    )
    assert got["bootstrap.servers"] == "b1:9093,b2:9093"
    assert got["sasl.username"] == "alice"
    assert got["sasl.password"] == MASK
    assert "p4ss" not in repr(got) and "s3cr3t-value" not in repr(got)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgres://shoal:hunter2@127.0.0.1:5432/qoe?table=qoe_metrics", "hunter2"),
        ("redis://:redispw@127.0.0.1:6379/0", "redispw"),
        ("webhook+https://user:pw123@hooks.example/qoe", "pw123"),
        ("webhook+https://hooks.example/qoe?secret=whsec_abc&x=1", "whsec_abc"),
        ("https://h/x?token=tok-9&sig=sig-9", "tok-9"),
    ],
)
def test_urls(url: str, secret: str) -> None:
    out = redact_url(url)
    assert secret not in out
    assert MASK in out
    assert out.split("://")[0] == url.split("://")[0]


def test_text_with_an_echoed_url_and_a_setting() -> None:
    text = (
        "cannot bind qoe-metrics to postgres://u:topsecret@db/q: refused; "
        'sasl.password="quoted secret" ssl.key.password=kp'
    )
    out = redact_text(text)
    for secret in ("topsecret", "quoted secret", "kp;", "=kp"):
        assert secret not in out
    assert "postgres://u:" in out and "refused" in out


def test_plain_text_is_unchanged() -> None:
    text = "task 3 restored 10 records from sessions.by_user.changelog in 0.2s; key=user-1"
    assert redact_text(text) == text


def test_a_url_that_is_the_value_of_a_pair_keeps_its_query_redacted() -> None:
    text = (
        "binding 'sink=webhook+https://u:pw1@h/x?secret=whsec_abc=&token=tk2&team=qoe' "
        "and nope=redis://h/0?password=pw3"
    )
    out = redact_text(text)
    for secret in ("pw1", "whsec_abc", "tk2", "pw3"):
        assert secret not in out
    assert "team=qoe" in out and "sink=webhook+https://u:***@h/x?secret=***" in out
