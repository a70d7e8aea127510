"""Settings of a PostgreSQL sink, and how a binding URL turns into them.

URL: ``postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE?PARAMS`` (``postgresql://``
too). Parameters of the sink (the rest go to libpq, e.g. ``sslmode``,
``connect_timeout``, ``application_name``):

* ``table``: ``NAME`` or ``SCHEMA.NAME``; default: the sink's name with every
  character other than letters, digits and ``_`` turned into ``_``
  (``qoe-metrics`` -> ``qoe_metrics``).
* ``key``: comma-separated natural key columns; default per schema, see
  :data:`DEFAULT_KEYS`.
* ``create``: ``auto`` (default: create the table from the sink's Avro schema if it
  is missing and add columns the schema gained) or ``never`` (the table must exist).
* ``ddl_file``: a file of SQL run instead of the derived ``CREATE TABLE``
  (declared DDL; make it idempotent, e.g. ``CREATE TABLE IF NOT EXISTS``). Its table
  needs a unique constraint on the key columns.
* ``max_attempts``, ``backoff_initial_s``, ``backoff_max_s``: the retry budget of a
  flush (see :class:`Backoff`).

A password is better left out of the URL: libpq reads ``PGPASSWORD`` or a
``~/.pgpass`` file itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connectors.postgres.table import Table
from connectors.retry import Backoff
from runtime.api.errors import ConfigError
from schemas import SchemaNotFoundError, load_schema

__all__ = ["DEFAULT_KEYS", "Backoff", "PostgresConfig", "config_from_url"]

#: Natural key of each output schema: the fields that name one result.
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    # one window of one group; dimensions not grouped by are null
    "QoeMetric": (
        "window_start_ms",
        "window_kind",
        "group_kind",
        "title_id",
        "device_type",
        "country",
        "cdn",
    ),
    # one session of a user on a device (a late event re-emits it with a new revision)
    "SessionSummary": ("user_id", "device_id", "session_start_ms"),
    # one incident: its row goes from 'fired' to 'resolved'
    "QoeAlert": ("alert_id",),
    # a user's current scores
    "PersonalizationScore": ("user_id",),
    # one impression window of one (row, rank) or one genre
    "AttributionMetric": ("window_start_ms", "group_kind", "row_name", "rank", "genre"),
}

_SINK_PARAMS = ("table", "key", "create", "ddl_file")
_BACKOFF_PARAMS = ("max_attempts", "backoff_initial_s", "backoff_max_s")


_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """Where and how a PostgreSQL sink writes.

    Args:
        conninfo: libpq connection URI (may hold a password: hidden in ``repr``).
        table: the table, its columns and natural key.
        create: create the table (and missing columns) when needed.
        ddl: declared DDL run instead of the derived ``CREATE TABLE``.
        backoff: retry budget of a flush.
        connect_timeout_s: timeout of one connection attempt.
    """

    conninfo: str = field(repr=False)
    table: Table
    create: bool = True
    ddl: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    connect_timeout_s: float = 5.0

    @property
    def where(self) -> str:
        """``host:port/database table`` for messages, without credentials."""
        parts = urlsplit(self.conninfo)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgres://{host}{port}{parts.path} table {self.table.name}"


def config_from_url(
    url: str, sink: str, schema: str, avro: Mapping[str, Any] | None = None
) -> PostgresConfig:
    """The settings of sink ``sink`` (Avro schema ``schema``) bound to ``url``.

    Args:
        url: the binding URL (see the module docstring).
        sink: the sink's name.
        schema: the record name the sink writes.
        avro: that record's schema as JSON, when the job has it (its own schemas);
            default: the built-in schema of that name.

    Raises:
        ConfigError: the URL, the schema or a parameter is invalid.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"sink {sink!r}: not a postgres:// URL: {parts.scheme}://...")
    if not parts.path.strip("/"):
        raise ConfigError(f"sink {sink!r}: the postgres URL names no database (.../DATABASE)")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    ours = {k: params.pop(k) for k in (*_SINK_PARAMS, *_BACKOFF_PARAMS) if k in params}
    if not schema:
        raise ConfigError(
            f"sink {sink!r}: a PostgreSQL sink needs the sink's Avro schema "
            '(declare it in the job: .sink(name, Avro("Record")))'
        )
    if avro is None:
        try:
            avro = load_schema(schema)
        except SchemaNotFoundError as exc:
            raise ConfigError(f"sink {sink!r}: {exc}") from exc

    namespace, _, name = ours.get("table", "").rpartition(".")
    name = name or re.sub(r"[^A-Za-z0-9_]", "_", sink)
    if "key" in ours:
        key = tuple(k.strip() for k in ours["key"].split(",") if k.strip())
    elif schema in DEFAULT_KEYS:
        key = DEFAULT_KEYS[schema]
    else:
        raise ConfigError(
            f"sink {sink!r}: schema {schema!r} has no default natural key: "
            "add key=COLUMN[,COLUMN...] to the URL"
        )
    try:
        table = Table.from_avro(avro, name, key, namespace or None)
    except ConfigError as exc:
        raise ConfigError(f"sink {sink!r}: {exc}") from exc

    create = ours.get("create", "auto")
    if create not in ("auto", "never"):
        raise ConfigError(f"sink {sink!r}: create must be auto or never, got {create!r}")
    ddl = None
    if "ddl_file" in ours:
        try:
            ddl = Path(ours["ddl_file"]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"sink {sink!r}: cannot read ddl_file: {exc}") from exc
    try:
        backoff = Backoff(
            max_attempts=int(ours.get("max_attempts", _BACKOFF.max_attempts)),
            initial_s=float(ours.get("backoff_initial_s", _BACKOFF.initial_s)),
            max_s=float(ours.get("backoff_max_s", _BACKOFF.max_s)),
        )
        timeout = float(params.get("connect_timeout", 5))
    except ValueError as exc:
        raise ConfigError(f"sink {sink!r}: invalid number in the postgres URL: {exc}") from exc
    conninfo = urlunsplit(
        ("postgresql", parts.netloc, parts.path, urlencode(params), parts.fragment)
    )
    return PostgresConfig(
        conninfo=conninfo,
        table=table,
        create=create == "auto",
        ddl=ddl,
        backoff=backoff,
        connect_timeout_s=timeout,
    )
