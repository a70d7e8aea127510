"""Who may call the service: loopback without a token, anything else only with one."""

from __future__ import annotations

import pytest
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.api.errors import ConfigError
from runtime.service import (
    ServiceConfig,
    WorkerHandle,
    is_loopback,
    make_app,
    parse_address,
    start_service,
)
from runtime.service.app import COOKIE
from tests.unit.service.conftest import LiveWorker

TOKEN = "s3cret-token-of-forty-bytes-0123456789ab"


@pytest.fixture
def guarded(live: LiveWorker) -> TestClient:
    app = make_app(WorkerHandle(live.worker), CollectorRegistry(auto_describe=False), TOKEN)
    return TestClient(app, follow_redirects=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    assert ServiceConfig(host=host.strip("[]")).token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "example.org", ""])
def test_anything_else_needs_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="needs a bearer token"):
        ServiceConfig(host=host)
    config = ServiceConfig(host=host, token=TOKEN)
    assert TOKEN not in repr(config)


def test_start_service_refuses_before_binding(live: LiveWorker) -> None:
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0"):
        start_service(live.worker, "0.0.0.0", 0)
    assert live.worker.taps == {}


@pytest.mark.parametrize(
    "text,address",
    [
        ("127.0.0.1:8088", ("127.0.0.1", 8088)),
        ("8088", ("127.0.0.1", 8088)),
        (":0", ("127.0.0.1", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["host", "127.0.0.1:http", "127.0.0.1:70000", "1:-1"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="--http"):
        parse_address(text)


def test_every_endpoint_but_health_needs_the_bearer_token(guarded: TestClient) -> None:
    assert guarded.get("/health").status_code == 200
    for path in [
        "/",
        "/metrics",
        "/status",
        "/topology",
        "/streams/clicks/events",
        "/state/clicks/totals/u1",
        "/filters",
        "/static/app.js",
        "/nothing",
    ]:
        r = guarded.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == 'Bearer realm="shoal"'
        assert "Authorization: Bearer" in r.json()["error"]
        assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get(path, headers={"Authorization": TOKEN}).status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/metrics", headers=ok).status_code == 200
    assert guarded.get("/topology", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert guarded.get("/state/clicks/totals/u1", headers=ok).status_code == 404  # past the check


def test_a_browser_logs_in_once_and_the_cookie_stands_for_the_token(guarded: TestClient) -> None:
    assert guarded.get("/", params={"token": "wrong"}).status_code == 401
    r = guarded.get("/", params={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower() and TOKEN not in cookie
    session = cookie.split(";")[0].split("=", 1)[1]
    page = guarded.get("/")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and "<html" in page.text
    assert guarded.get("/topology").status_code == 200
    for forged in (session[:-1] + ("1" if session[-1] == "0" else "0"), TOKEN):
        guarded.cookies.clear()
        guarded.cookies.set(COOKIE, forged)
        assert guarded.get("/topology").status_code == 401
