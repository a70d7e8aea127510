"""The Redis sink against a real server: hashes, atomic top-N sorted sets, TTL, retries."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from connectors.external import make_external_sink
from connectors.redis import RedisSink, config_from_url
from runtime.api.errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    from tests.services import RedisServer

# the fixtures postgres and redis_server: a plugin, so one server each for the session
# (imported here, tests.services would be imported before pytest rewrites it)
pytest_plugins = ["tests.services"]
pytestmark = pytest.mark.integration


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's server, running again after a test that stopped it."""
    yield redis_server
    if redis_server.proc is None:
        redis_server.start()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url, decode_responses=True)
    yield c
    c.close()


def _sink(server: RedisServer, schema: str, **params: Any) -> RedisSink:
    params.setdefault("prefix", f"p{uuid.uuid4().hex[:8]}")
    url = server.sink_url(**{k: str(v) for k, v in params.items()})
    return RedisSink(config_from_url(url, "sink", schema), sleep=lambda s: None)


def _send(sink: RedisSink, values: list[dict[str, Any]]) -> None:
    sink.write([(None, v, 0) for v in values])
    sink.flush()


def _score(user: str, titles: list[tuple[str, float]], updated_ms: int = 1) -> dict[str, Any]:
    return {
        "user_id": user,
        "updated_ms": updated_ms,
        "model_version": "m1",
        "top_titles": [{"title_id": t, "score": s, "genre": None} for t, s in titles],
        "genre_affinity": {"drama": 0.5},
    }


def test_latest_values_as_hashes(server: RedisServer, client: redis.Redis) -> None:
    sink = _sink(server, "QoeMetric")
    prefix = sink.config.layout.prefix
    by_cdn = {
        "window_start_ms": 60_000, "window_end_ms": 120_000, "window_kind": "tumbling_1m",
        "group_kind": "cdn", "title_id": None, "device_type": None, "country": None,
        "cdn": "cdn-a", "plays_started": 3, "startup_p50_ms": 120.5, "rebuffer_ratio": 0.0,
    }  # fmt: skip
    _send(sink, [by_cdn, {**by_cdn, "plays_started": 4}])  # the same key: the last wins
    key = f"{prefix}:tumbling_1m:cdn::::cdn-a:60000"
    assert client.keys(f"{prefix}:*") == [key]
    assert client.hgetall(key) == {
        "window_start_ms": "60000", "window_end_ms": "120000", "window_kind": "tumbling_1m",
        "group_kind": "cdn", "cdn": "cdn-a", "plays_started": "4", "startup_p50_ms": "120.5",
        "rebuffer_ratio": "0.0",
    }  # fmt: skip
    assert 86_000 < client.ttl(key) <= 86_400  # QoeMetric's default TTL: a day
    # a rewrite replaces the hash: a field that became null is gone
    _send(sink, [{**by_cdn, "startup_p50_ms": None}])
    assert "startup_p50_ms" not in client.hgetall(key)
    sink.close()
    assert sink.keys_written == 2 and sink.retries == 0


def test_top_titles_as_sorted_sets_replaced_whole(server: RedisServer, client: redis.Redis) -> None:
    sink = _sink(server, "PersonalizationScore")
    prefix = sink.config.layout.prefix
    _send(sink, [_score("u1", [("t1", 3.0), ("t2", 2.0), ("t3", 1.0)]), _score("u2", [("t9", 1)])])
    assert client.zrevrange(f"{prefix}:u1:top", 0, -1, withscores=True) == [
        ("t1", 3.0), ("t2", 2.0), ("t3", 1.0)
    ]  # fmt: skip
    assert client.hget(f"{prefix}:u1", "model_version") == "m1"
    assert client.hget(f"{prefix}:u1", "genre_affinity") == '{"drama":0.5}'
    assert client.ttl(f"{prefix}:u1:top") == -1  # scores live as long as the user
    _send(sink, [_score("u1", [("t4", 5.0), ("t2", 0.5)], updated_ms=2)])
    assert client.zrevrange(f"{prefix}:u1:top", 0, -1, withscores=True) == [
        ("t4", 5.0), ("t2", 0.5)
    ]  # fmt: skip
    assert client.hget(f"{prefix}:u1", "updated_ms") == "2"
    _send(sink, [_score("u2", [])])
    assert not client.exists(f"{prefix}:u2:top")
    sink.close()


def test_readers_never_see_a_half_written_set(server: RedisServer, client: redis.Redis) -> None:
    sink = _sink(server, "PersonalizationScore", chunk=50)
    prefix = sink.config.layout.prefix
    users = [f"u{i}" for i in range(50)]
    versions = [[(f"v{v}-t{t}", float(10 - t)) for t in range(10)] for v in range(20)]
    stop = threading.Event()
    seen: list[tuple[str, ...]] = []

    def read() -> None:
        reader = redis.Redis.from_url(server.url, decode_responses=True)
        while not stop.is_set():
            for user in ("u0", "u49"):
                seen.append(tuple(reader.zrevrange(f"{prefix}:{user}:top", 0, -1)))
        reader.close()

    _send(sink, [_score(u, versions[0]) for u in users])
    thread = threading.Thread(target=read)
    thread.start()
    try:
        for titles in versions[1:]:
            _send(sink, [_score(u, titles) for u in users])
    finally:
        stop.set()
        thread.join()
    sink.close()
    complete = {tuple(t for t, _ in titles) for titles in versions}
    assert seen and set(seen) <= complete
    assert len(set(seen)) > 2  # the reader saw the sets change


def test_ttl_expires_keys(server: RedisServer, client: redis.Redis) -> None:
    sink = _sink(server, "PersonalizationScore", ttl=1)
    prefix = sink.config.layout.prefix
    _send(sink, [_score("u1", [("t1", 1.0)])])
    assert 0 < client.pttl(f"{prefix}:u1") <= 1_000
    assert 0 < client.pttl(f"{prefix}:u1:top") <= 1_000
    time.sleep(1.2)
    assert client.keys(f"{prefix}:*") == []
    sink.close()


def test_writes_ride_out_a_restart_and_reconnect(server: RedisServer, client: redis.Redis) -> None:
    sink = _sink(server, "PersonalizationScore")
    prefix = sink.config.layout.prefix
    _send(sink, [_score("u1", [("t1", 1.0)])])
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            server.start()

    sink._sleep = sleep
    server.stop()
    _send(sink, [_score("u2", [("t2", 2.0)])])
    sink.close()
    assert sink.retries == 2 and waits[0] < waits[1]
    # what was written before the restart survived it (append-only file)
    assert client.zrange(f"{prefix}:u1:top", 0, -1) == ["t1"]
    assert client.zrange(f"{prefix}:u2:top", 0, -1) == ["t2"]


def test_gives_up_after_its_budget_and_keeps_the_records(
    server: RedisServer, client: redis.Redis
) -> None:
    sink = _sink(server, "PersonalizationScore", max_attempts=2, backoff_initial_s=0.01)
    server.stop()
    sink.write([(None, _score("u1", [("t1", 1.0)]), 0)])
    with pytest.raises(ConnectorError, match="not written after 2 attempts; last error: Conn"):
        sink.flush()
    server.start()
    sink.flush()
    sink.close()
    assert client.zrange(f"{sink.config.layout.prefix}:u1:top", 0, -1) == ["t1"]


def test_bad_records_are_refused(server: RedisServer) -> None:
    sink = _sink(server, "PersonalizationScore")
    sink.write([(None, {"user_id": "u", "top_titles": [{"title_id": "t"}]}, 0)])
    with pytest.raises(ConnectorError, match="'top_titles' must be a list of items"):
        sink.flush()
    assert len(sink._queue) == 1  # kept: the worker does not commit past it
    with pytest.raises(ConnectorError, match="lacks key field 'user_id'"):
        sink.config.layout.plan([{"no_user": 1}])
    with pytest.raises(ConnectorError, match="records must be dicts"):
        sink.config.layout.plan([("u", 1)])
    sink.close()


def test_urls_and_defaults(redis_server: RedisServer) -> None:
    sink = make_external_sink(redis_server.url, "personalization-scores",
                              "PersonalizationScore", {})  # fmt: skip
    assert isinstance(sink, RedisSink)
    layout = sink.config.layout
    assert (layout.prefix, layout.key, layout.top, layout.ttl_s) == (
        "personalization-scores", ("user_id",), "top_titles", None
    )  # fmt: skip
    cfg = config_from_url(
        "rediss://:secret@cache.example:6380/2?prefix=qoe&ttl=0&key=cdn,window_start_ms"
        "&top=&chunk=10&socket_timeout=2", "qoe-metrics", "QoeMetric",
    )  # fmt: skip
    assert (cfg.layout.prefix, cfg.layout.key, cfg.layout.ttl_s, cfg.layout.top) == (
        "qoe", ("cdn", "window_start_ms"), None, None
    )  # fmt: skip
    assert cfg.chunk == 10 and cfg.timeout_s == 2.0
    assert cfg.url == "rediss://:secret@cache.example:6380/2?socket_timeout=2"
    assert "secret" not in repr(cfg) and "secret" not in cfg.where
    assert config_from_url(redis_server.url + "?key=user", "s", "").layout.key == ("user",)
    for url, message in [
        (redis_server.url, "no default key for schema 'None'"),
        (redis_server.url + "?key=a&ttl=-1", "ttl must be positive"),
        (redis_server.url + "?key=a&ttl=soon", "invalid number"),
        (redis_server.url + "?key=a&chunk=0", "chunk must be >= 1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_url(url, "s", "")
