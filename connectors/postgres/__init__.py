"""PostgreSQL sink: idempotent, batched upserts of a job's results by natural key.

Bind a sink with ``--bind NAME=postgres://USER@HOST:PORT/DATABASE?table=...&key=...``
(see :mod:`connectors.postgres.config` for the parameters and the default key of
each schema, :mod:`connectors.postgres.sink` for why replays never duplicate rows).
"""

from connectors.postgres.config import DEFAULT_KEYS, Backoff, PostgresConfig, config_from_url
from connectors.postgres.sink import PostgresSink
from connectors.postgres.table import Column, Table

__all__ = [
    "DEFAULT_KEYS",
    "Backoff",
    "Column",
    "PostgresConfig",
    "PostgresSink",
    "Table",
    "config_from_url",
]
