"""HTTP basics: Host allow-list, hand-read cookies, token length, health details, bad keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.api.errors import ConfigError
from runtime.service import ServiceConfig, WorkerHandle, make_app
from runtime.service.guard import MAX_COOKIE_BYTES, find_cookie, loopback_host
from runtime.service.server import MIN_TOKEN_BYTES
from tests.unit.service.conftest import LOOPBACK, T0, LiveWorker, event
from tests.unit.service.test_endpoints import settle

TOKEN = "t" * MIN_TOKEN_BYTES


@pytest.fixture
def open_app(live: LiveWorker) -> Iterator[TestClient]:
    handle = WorkerHandle(live.worker)
    with TestClient(make_app(handle, CollectorRegistry(auto_describe=False))) as c:
        yield c
    handle.close()


@pytest.fixture
def guarded(live: LiveWorker) -> Iterator[TestClient]:
    handle = WorkerHandle(live.worker)
    app = make_app(handle, CollectorRegistry(auto_describe=False), TOKEN)
    with TestClient(app, base_url="http://shoal.example", follow_redirects=False) as c:
        yield c
    handle.close()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8088", "localhost", "LOCALHOST:1", "[::1]", "[::1]:9000"]
)
def test_loopback_names_are_answered_without_a_token(open_app: TestClient, host: str) -> None:
    assert loopback_host(host.encode())
    r = open_app.get("/health", headers={"host": host})
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:8088",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example",
        "127.0.0.2",
        "[::1]x",
        "127.0.0.1:80:80",
        "127.0.0.1:",
        "",
    ],
)
def test_other_hosts_get_403_without_a_token(open_app: TestClient, host: str) -> None:
    assert not loopback_host(host.encode())
    for path in ("/health", "/metrics", "/state/clicks/totals/u1", "/"):
        r = open_app.get(path, headers={"host": host})
        assert r.status_code == 403, (path, host)
        assert "loopback Host" in r.json()["error"]


def test_with_a_token_any_host_may_ask(guarded: TestClient) -> None:
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/topology", headers=ok).status_code == 200
    assert guarded.get("/topology").status_code == 401


def test_cookies_are_split_by_hand_and_long_headers_ignored() -> None:
    headers = [(b"cookie", b'theme=dark; shoal_session="abc"; other=1')]
    assert find_cookie(headers, b"shoal_session") == b"abc"
    assert find_cookie([(b"cookie", b"a=1"), (b"cookie", b"shoal_session=x")], b"shoal_session")
    assert find_cookie([(b"cookie", b"shoal_sessionx=1; =; ;;")], b"shoal_session") is None
    long = b"a=" + b"x" * MAX_COOKIE_BYTES + b"; shoal_session=abc"
    assert find_cookie([(b"cookie", long)], b"shoal_session") is None


def test_a_huge_hostile_cookie_is_ignored(guarded: TestClient) -> None:
    login = guarded.get("/", params={"token": TOKEN})
    session = login.headers["set-cookie"].split(";")[0]
    guarded.cookies.clear()
    # What made the standard library's parser quadratic: 60 KB of unbalanced quotes.
    hostile = '"' + "\\" * 30_000 + ";" * 30_000
    r = guarded.get("/topology", headers={"cookie": hostile})
    assert r.status_code == 401
    assert guarded.get("/topology", headers={"cookie": f"a=1; {session}"}).status_code == 200
    padded = f"pad={'x' * MAX_COOKIE_BYTES}; {session}"
    assert guarded.get("/topology", headers={"cookie": padded}).status_code == 401


def test_the_session_cookie_attributes(guarded: TestClient) -> None:
    plain = guarded.get("/", params={"token": TOKEN}).headers["set-cookie"].lower()
    assert "httponly" in plain and "samesite=strict" in plain and "max-age=43200" in plain
    assert "secure" not in plain.replace("samesite", "")
    proxied = guarded.get(
        "/", params={"token": TOKEN}, headers={"x-forwarded-proto": "https"}
    ).headers["set-cookie"]
    assert "Secure" in proxied
    assert TOKEN not in proxied


def test_health_shows_details_only_to_the_authorised(guarded: TestClient) -> None:
    anonymous = guarded.get("/health")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    full = guarded.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert full["status"] == "ok" and full["job"] == "clicks" and "tasks" in full


def test_short_tokens_are_refused_beyond_loopback_only() -> None:
    with pytest.raises(ConfigError) as info:
        ServiceConfig(host="0.0.0.0", token="x" * (MIN_TOKEN_BYTES - 1))
    message = str(info.value)
    assert f"at least {MIN_TOKEN_BYTES}" in message and "x" * 8 not in message
    assert "\n" not in message
    assert ServiceConfig(host="0.0.0.0", token=TOKEN).token == TOKEN
    assert ServiceConfig(host="127.0.0.1", token="short").token == "short"


@pytest.mark.parametrize(
    "raw,status,says",
    [
        ("%FF%FE", 400, "not valid UTF-8"),
        ("u%C3", 400, "not valid UTF-8"),
        ("9" * 5000, 400, "at most 1024"),
        ("%C2%B2", 404, "no state"),  # '²': a digit to Python, but a string key here
        ("-" + "9" * 700, 404, "no state"),  # too wide for an int key: looked up as text
        ("%00", 404, "no state"),
    ],
)
def test_malformed_keys_are_json_errors_never_500(
    live: LiveWorker, open_app: TestClient, raw: str, status: int, says: str
) -> None:
    live.push([event("u1", 5, 0)])
    settle(live, 1)
    r = open_app.get(f"{LOOPBACK}/state/clicks/totals/{raw}")
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


def test_state_answers_say_their_bound(live: LiveWorker, open_app: TestClient) -> None:
    live.push([event("u1", 5, 0), event("u1", 6, 11_000)])
    settle(live, 2)
    body = open_app.get(f"{LOOPBACK}/state/clicks/counts_10s/u1").json()
    assert body["limit"] == 1000 and body["truncated"] is False
    # the first window fired and went; the second is open
    assert body["entries"] == [
        {"task": 0, "window_start_ms": T0 + 10_000, "window_end_ms": T0 + 20_000, "value": 1}
    ]
