"""The PostgreSQL sink against a real server: DDL from Avro, idempotent upserts, retries."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg.rows import dict_row

from connectors.external import make_external_sink
from connectors.postgres import DEFAULT_KEYS, PostgresSink, Table, config_from_url
from runtime.api.errors import ConfigError, ConnectorError
from schemas import load_schema

if TYPE_CHECKING:
    from tests.services import PostgresServer

# the fixtures postgres and redis_server: a plugin, so one server each for the session
# (imported here, tests.services would be imported before pytest rewrites it)
pytest_plugins = ["tests.services"]
pytestmark = pytest.mark.integration


ALERT = {
    "alert_id": "a1", "rule": "r", "state": "fired", "group": {"cdn": "cdn-a"},
    "metric": "rebuffer_ratio", "value": 0.2, "threshold": 0.1, "window_end_ms": 1,
    "incident_started_ms": 1, "emitted_ms": 1,
}  # fmt: skip


def _table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def _sink(server: PostgresServer, schema: str, **params: Any) -> PostgresSink:
    params.setdefault("table", _table())
    url = server.sink_url(**{k: str(v) for k, v in params.items()})
    return PostgresSink(config_from_url(url, "sink", schema), sleep=lambda s: None)


def _rows(server: PostgresServer, table: str, order: str = "") -> list[dict[str, Any]]:
    with psycopg.connect(server.url, row_factory=dict_row) as conn:
        return conn.execute(f'SELECT * FROM "{table}" {order}').fetchall()


def _metric(i: int, **changes: Any) -> dict[str, Any]:
    """A QoeMetric; odd ``i`` are grouped by CDN only (the other dimensions null)."""
    by_cdn = i % 2 == 1
    metric = {
        "window_start_ms": 1_700_000_000_000 + (i // 10) * 60_000,
        "window_end_ms": 1_700_000_000_000 + (i // 10 + 1) * 60_000,
        "window_kind": "tumbling_1m",
        "group_kind": "cdn" if by_cdn else "title_device_country_cdn",
        "title_id": None if by_cdn else f"title-{i % 10}",
        "device_type": None if by_cdn else "tv",
        "country": None if by_cdn else "US",
        "cdn": f"cdn-{i % 10}",
        "plays_started": i,
        "startup_p50_ms": None if i % 3 == 0 else 100.5 + i,
        "startup_p90_ms": None,
        "startup_p99_ms": None,
        "watch_time_ms": 1000 * i,
        "rebuffer_time_ms": 10,
        "rebuffer_count": 1,
        "rebuffer_ratio": 0.01,
        "rebuffers_per_hour": 2.5,
        "avg_bitrate_kbps": 3500.25,
        "bitrate_switches": 2,
        "play_attempts": i + 1,
        "play_failures": 0,
        "failure_rate": 0.0,
        "concurrent_streams": 3,
    }
    metric.update(changes)
    return metric


def _send(sink: PostgresSink, values: list[dict[str, Any]]) -> None:
    sink.write([(None, v, 0) for v in values])
    sink.flush()


@pytest.fixture
def server(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The session's server, running again after a test that stopped it."""
    yield postgres
    if not postgres.running:
        postgres.start()


def test_ddl_is_derived_from_the_avro_schema(server: PostgresServer) -> None:
    tables = {name: _table() for name in DEFAULT_KEYS}
    for schema, table in tables.items():
        sink = _sink(server, schema, table=table)
        sink.flush()  # nothing queued: no connection, no table
        sink.write([])
        sink._connection()  # connecting creates the table
        sink.close()
    with psycopg.connect(server.url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_name = ANY(%s) ORDER BY table_name, ordinal_position",
            (list(tables.values()),),
        ).fetchall()
        constraints = dict(
            conn.execute(
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid::regclass::text = ANY(%s) AND contype IN ('p', 'u')",
                (list(tables.values()),),
            ).fetchall()
        )
    cols = {(t, c): (dtype, nullable) for t, c, dtype, nullable in columns}
    qoe, sessions = tables["QoeMetric"], tables["SessionSummary"]
    alerts, scores = tables["QoeAlert"], tables["PersonalizationScore"]
    fields = [f["name"] for f in load_schema("QoeMetric")["fields"]]
    assert [c for t, c in cols if t == qoe] == fields
    assert cols[(qoe, "window_start_ms")] == ("bigint", "NO")
    assert cols[(qoe, "title_id")] == ("text", "YES")
    assert cols[(qoe, "startup_p50_ms")] == ("double precision", "YES")
    assert cols[(qoe, "rebuffer_ratio")] == ("double precision", "NO")
    assert cols[(sessions, "titles")] == ("jsonb", "NO")
    assert cols[(sessions, "plays")] == ("integer", "NO")
    assert cols[(sessions, "end_reason")] == ("text", "NO")  # an enum
    assert cols[(alerts, "group")] == ("jsonb", "NO")  # a map
    assert cols[(scores, "top_titles")] == ("jsonb", "NO")  # an array of records
    # nullable key columns: unique with nulls equal; otherwise a primary key
    assert constraints[qoe] == (
        "UNIQUE NULLS NOT DISTINCT (window_start_ms, window_kind, group_kind, title_id, "
        "device_type, country, cdn)"
    )
    assert constraints[sessions] == "PRIMARY KEY (user_id, device_id, session_start_ms)"
    assert constraints[alerts] == "PRIMARY KEY (alert_id)"
    assert constraints[scores] == "PRIMARY KEY (user_id)"
    assert constraints[tables["AttributionMetric"]] == (
        "UNIQUE NULLS NOT DISTINCT (window_start_ms, group_kind, row_name, rank, genre)"
    )


def test_replayed_records_update_rows_and_never_duplicate(server: PostgresServer) -> None:
    sink = _sink(server, "QoeMetric")
    table = sink.config.table.name
    first = [_metric(i) for i in range(1_000)]
    _send(sink, first)
    assert len(_rows(server, table)) == 1_000
    # a replay after a crash: the same records again, in another order and batching
    shuffled = first[:]
    random.Random(3).shuffle(shuffled)
    for start in range(0, 1_000, 300):
        sink.write([(None, v, 0) for v in shuffled[start : start + 300]])
    sink.flush()
    # then updated results for some keys, the same key twice in one flush (last wins)
    _send(sink, [_metric(i, plays_started=-1) for i in range(0, 1_000, 7)]
          + [_metric(i, plays_started=10_000 + i) for i in range(0, 1_000, 7)])  # fmt: skip
    sink.close()
    rows = _rows(server, table, "ORDER BY plays_started")
    assert len(rows) == 1_000
    want = {i: _metric(i, plays_started=10_000 + i) if i % 7 == 0 else _metric(i)
            for i in range(1_000)}  # fmt: skip
    assert sorted(rows, key=lambda r: (r["window_start_ms"], r["cdn"], r["group_kind"])) == sorted(
        want.values(), key=lambda r: (r["window_start_ms"], r["cdn"], r["group_kind"])
    )
    assert sink.rows_written == 1_000 + 1_000 + 143 and sink.retries == 0


def test_json_columns_round_trip(server: PostgresServer) -> None:
    sink = _sink(server, "PersonalizationScore")
    value = {
        "user_id": "u1",
        "updated_ms": 5,
        "model_version": "m1",
        "top_titles": [{"title_id": "t1", "score": 0.5, "genre": None}],
        "genre_affinity": {"drama": 0.25},
    }
    _send(sink, [value])
    _send(sink, [{**value, "top_titles": [], "genre_affinity": {"comedy": 1.0}}])
    sink.close()
    (row,) = _rows(server, sink.config.table.name)
    assert row == {**value, "top_titles": [], "genre_affinity": {"comedy": 1.0}}


def test_a_refused_flush_writes_nothing_and_keeps_the_records(server: PostgresServer) -> None:
    sink = _sink(server, "QoeMetric")
    good = [_metric(i) for i in range(10)]
    bad = _metric(99, plays_started="not a number")
    sink.write([(None, v, 0) for v in [*good, bad]])
    with pytest.raises(ConnectorError, match="refused") as err:
        sink.flush()
    assert "InvalidTextRepresentation" in str(err.value)
    assert _rows(server, sink.config.table.name) == []  # one transaction: all or nothing
    assert len(sink._queue) == 11
    with pytest.raises(ConnectorError, match="lacks field 'window_end_ms'"):
        PostgresSink(sink.config).config.table.rows([{"window_start_ms": 1}])
    sink.close()


def test_flush_rides_out_a_stopped_server_and_reconnects(server: PostgresServer) -> None:
    sink = _sink(server, "QoeMetric")
    _send(sink, [_metric(i) for i in range(20)])  # connected, table created
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            server.start()

    sink._sleep = sleep
    server.stop()
    _send(sink, [_metric(i, plays_started=1_000) for i in range(20, 40)])
    sink.close()
    assert sink.retries == 3 and sink.reconnects == 1
    assert waits[0] < waits[1] < waits[2]  # exponential backoff (jitter is ±20%)
    assert len(_rows(server, sink.config.table.name)) == 40


def test_flush_gives_up_after_its_budget_and_keeps_the_records(server: PostgresServer) -> None:
    sink = _sink(server, "QoeAlert", max_attempts=3, backoff_initial_s=0.01)
    server.stop()
    sink.write([(None, ALERT, 0)])
    with pytest.raises(ConnectorError, match="not written after 3 attempts; last error: "):
        sink.flush()
    assert sink.retries == 2
    server.start()
    sink.flush()  # the records stayed queued
    sink.close()
    assert [r["alert_id"] for r in _rows(server, sink.config.table.name)] == ["a1"]


def test_declared_ddl_and_columns_added_to_the_schema(
    server: PostgresServer, tmp_path: Path
) -> None:
    table = _table()
    # an existing table from an older schema: fewer columns, a declared key constraint
    ddl = tmp_path / "scores.sql"
    ddl.write_text(
        f'CREATE TABLE IF NOT EXISTS "{table}" (user_id text PRIMARY KEY, updated_ms bigint,'
        " extra text DEFAULT 'kept')"
    )
    sink = _sink(server, "PersonalizationScore", table=table, ddl_file=str(ddl))
    value = {"user_id": "u", "updated_ms": 1, "model_version": "m", "top_titles": [],
             "genre_affinity": {}}  # fmt: skip
    _send(sink, [value])
    sink.close()
    assert _rows(server, table) == [{**value, "extra": "kept"}]


def test_create_never_needs_an_existing_table(server: PostgresServer) -> None:
    sink = _sink(server, "QoeAlert", create="never")
    sink.write([(None, ALERT, 0)])
    with pytest.raises(ConnectorError, match="does not exist"):
        sink.flush()
    sink.close()


def test_urls_and_defaults(postgres: PostgresServer) -> None:
    sink = make_external_sink(postgres.url, "qoe-metrics", "QoeMetric", {})
    assert isinstance(sink, PostgresSink)
    cfg = sink.config
    assert cfg.table.name == "qoe_metrics" and cfg.table.key == DEFAULT_KEYS["QoeMetric"]
    assert cfg.create and cfg.backoff.max_attempts == 10
    url = (
        "postgresql://u:secret@db.example:5433/analytics?table=dash.scores&key=user_id"
        "&sslmode=require&max_attempts=4&create=never"
    )
    cfg = config_from_url(url, "s", "PersonalizationScore")
    assert (cfg.table.namespace, cfg.table.name, cfg.table.key) == ("dash", "scores", ("user_id",))
    assert cfg.table.qualified == '"dash"."scores"'
    assert cfg.backoff.max_attempts == 4 and not cfg.create
    assert cfg.conninfo == "postgresql://u:secret@db.example:5433/analytics?sslmode=require"
    assert "secret" not in repr(cfg) and "secret" not in cfg.where
    for url, schema, message in [
        (postgres.url, "", "needs the sink's Avro schema"),
        (postgres.url, "Nope", "no schema named 'Nope'"),
        (postgres.url, "PlaybackEvent", "no default natural key"),
        (postgres.url + "?key=user_id,nope", "PersonalizationScore", "not fields"),
        (postgres.url + "?key=top_titles", "PersonalizationScore", "arrays, maps or records"),
        (postgres.url + "?create=maybe", "QoeAlert", "create must be auto or never"),
        (postgres.url + "?max_attempts=0", "QoeAlert", "max_attempts must be >= 1"),
        ("postgres://127.0.0.1:5432", "QoeAlert", "names no database"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_url(url, "s", schema)


def test_the_key_constraint_of_a_table_of_non_null_keys() -> None:
    table = Table.from_avro(load_schema("SessionSummary"), "s", DEFAULT_KEYS["SessionSummary"])
    assert not table.nullable_key
    assert 'PRIMARY KEY ("user_id", "device_id", "session_start_ms")' in table.create_sql()
    assert table.upsert_sql().endswith(
        'ON CONFLICT ("user_id", "device_id", "session_start_ms") DO UPDATE SET '
        + ", ".join(
            f'"{f["name"]}" = EXCLUDED."{f["name"]}"'
            for f in load_schema("SessionSummary")["fields"]
            if f["name"] not in DEFAULT_KEYS["SessionSummary"]
        )
    )
