"""A sink's table: columns derived from its Avro schema, the natural key, and the SQL.

Avro types map to PostgreSQL types column by column:

=====================================  ==========================================
Avro                                   PostgreSQL
=====================================  ==========================================
``boolean``                            ``boolean``
``int`` / ``long``                     ``integer`` / ``bigint``
``float`` / ``double``                 ``real`` / ``double precision``
``string``, ``enum``                   ``text``
``bytes``, ``fixed``                   ``bytea``
``long`` + ``timestamp-millis/micros`` ``timestamptz``
``int`` + ``date``                     ``date``
``bytes`` + ``decimal``                ``numeric``
``string`` + ``uuid``                  ``uuid``
``array``, ``map``, ``record``         ``jsonb``
``["null", T]``                        T, NULL allowed
other unions                           ``jsonb``
=====================================  ==========================================

Columns of non-null types are ``NOT NULL``. The natural key becomes the table's
``PRIMARY KEY``, or, when a key column is nullable (QoE metrics grouped by fewer
dimensions leave the others null), a ``UNIQUE NULLS NOT DISTINCT`` constraint
(PostgreSQL 15+), so two rows whose keys differ only in nulls still conflict.

This module builds SQL text only; it does not talk to a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import ConfigError, ConnectorError

__all__ = ["Column", "Table", "quote_ident"]

_PRIMITIVES = {
    "boolean": "boolean",
    "int": "integer",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "string": "text",
    "bytes": "bytea",
}
_LOGICAL = {
    "timestamp-millis": "timestamptz",
    "timestamp-micros": "timestamptz",
    "date": "date",
    "decimal": "numeric",
    "uuid": "uuid",
}
_MISSING = object()


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"a""b"`` for ``a"b``)."""
    if not name or "\x00" in name:
        raise ConfigError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Column:
    """One column: name, SQL type, whether NULL is allowed, whether values go as JSON.

    ``default`` is the Avro field default used when a record lacks the field
    (``_MISSING`` when the field has none).
    """

    name: str
    sql_type: str
    nullable: bool
    json: bool
    default: Any = _MISSING

    def ddl(self) -> str:
        """The column's definition in ``CREATE TABLE``."""
        return f"{quote_ident(self.name)} {self.sql_type}" + ("" if self.nullable else " NOT NULL")


class _Types:
    """Resolves Avro types (named types too) to columns."""

    def __init__(self) -> None:
        self.named: dict[str, str] = {}  # full or short name -> "record" | "enum" | "fixed"

    def remember(self, schema: Mapping[str, Any]) -> None:
        name = schema.get("name")
        if isinstance(name, str):
            kind = str(schema["type"])
            self.named[name] = kind
            self.named[name.rsplit(".", 1)[-1]] = kind
            namespace = schema.get("namespace")
            if namespace:
                self.named[f"{namespace}.{name}"] = kind

    def column(self, avro: Any) -> tuple[str, bool, bool]:
        """(SQL type, nullable, as JSON) of an Avro type."""
        if isinstance(avro, list):
            branches = [b for b in avro if b != "null"]
            nullable = len(branches) < len(avro)
            if len(branches) == 1:
                sql, inner_nullable, as_json = self.column(branches[0])
                return sql, nullable or inner_nullable, as_json
            self._walk_all(branches)
            return "jsonb", nullable, True
        if isinstance(avro, dict):
            kind = avro.get("type")
            logical = avro.get("logicalType")
            if logical in _LOGICAL and kind in ("int", "long", "string", "bytes", "fixed"):
                return _LOGICAL[logical], False, False
            if kind in ("record", "error"):
                self.remember(avro)
                self._walk_all([f["type"] for f in avro.get("fields", [])])
                return "jsonb", False, True
            if kind in ("array", "map"):
                self._walk_all([avro.get("items"), avro.get("values")])
                return "jsonb", False, True
            if kind == "enum":
                self.remember(avro)
                return "text", False, False
            if kind == "fixed":
                self.remember(avro)
                return "bytea", False, False
            return self.column(kind)
        if avro == "null":
            return "text", True, False
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro], False, False
        kind = self.named.get(str(avro))
        if kind == "enum":
            return "text", False, False
        if kind == "fixed":
            return "bytea", False, False
        if kind in ("record", "error"):
            return "jsonb", False, True
        raise ConfigError(f"unknown Avro type {avro!r}")

    def _walk_all(self, types: Sequence[Any]) -> None:
        for t in types:
            if isinstance(t, (dict, list)):
                self.column(t)


@dataclass(frozen=True, slots=True)
class Table:
    """Where and how a sink's records are stored.

    Args:
        name: table name.
        columns: one per Avro field, in schema order.
        key: natural key columns (the conflict target of upserts).
        namespace: PostgreSQL schema of the table (``None``: the search path).
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    namespace: str | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not self.key:
            raise ConfigError(f"table {self.name!r}: the natural key needs at least one column")
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ConfigError(
                f"table {self.name!r}: key columns {unknown} are not fields of the schema "
                f"(fields: {', '.join(names)})"
            )
        if len(set(self.key)) != len(self.key):
            raise ConfigError(f"table {self.name!r}: key {list(self.key)} repeats a column")
        json_keys = [c.name for c in self.columns if c.name in self.key and c.json]
        if json_keys:
            raise ConfigError(
                f"table {self.name!r}: key columns {json_keys} are arrays, maps or records"
            )

    @staticmethod
    def from_avro(
        schema: Mapping[str, Any], name: str, key: Sequence[str], namespace: str | None = None
    ) -> Table:
        """The table of an Avro record schema: one column per field.

        Raises:
            ConfigError: the schema is not a record, or the key names unknown fields.
        """
        if schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
            raise ConfigError(f"table {name!r}: the sink's schema must be an Avro record")
        types = _Types()
        types.remember(schema)
        columns = []
        for f in schema["fields"]:
            sql, nullable, as_json = types.column(f["type"])
            columns.append(Column(f["name"], sql, nullable, as_json, f.get("default", _MISSING)))
        return Table(name, tuple(columns), tuple(key), namespace)

    # -- SQL ----------------------------------------------------------------------------
    @property
    def qualified(self) -> str:
        """The quoted, schema-qualified table name."""
        table = quote_ident(self.name)
        return f"{quote_ident(self.namespace)}.{table}" if self.namespace else table

    @property
    def staging(self) -> str:
        """The quoted name of this session's temporary staging table."""
        return quote_ident(f"shoal_stage_{self.name}")

    @property
    def nullable_key(self) -> bool:
        """Whether a key column allows NULL (needs ``UNIQUE NULLS NOT DISTINCT``)."""
        return any(c.nullable for c in self.columns if c.name in self.key)

    def create_sql(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` with columns and the natural key constraint."""
        keys = ", ".join(quote_ident(k) for k in self.key)
        if self.nullable_key:
            constraint = quote_ident(f"{self.name}_natural_key")
            key_ddl = f"CONSTRAINT {constraint} UNIQUE NULLS NOT DISTINCT ({keys})"
        else:
            key_ddl = f"PRIMARY KEY ({keys})"
        body = ",\n  ".join([*(c.ddl() for c in self.columns), key_ddl])
        return f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  {body}\n)"

    def add_column_sql(self, column: Column) -> str:
        """Adds a column the table lacks (a field added to the schema later): nullable."""
        return (
            f"ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS "
            f"{quote_ident(column.name)} {column.sql_type}"
        )

    def staging_sql(self) -> str:
        """A session's staging table: the target's columns, emptied at each commit."""
        return (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.staging} "
            f"(LIKE {self.qualified}) ON COMMIT DELETE ROWS"
        )

    def copy_sql(self) -> str:
        """``COPY`` of the rows into the staging table."""
        return f"COPY {self.staging} ({self._column_list()}) FROM STDIN"

    def upsert_sql(self) -> str:
        """Moves the staged rows into the table; a row whose key exists replaces it."""
        cols = self._column_list()
        keys = ", ".join(quote_ident(k) for k in self.key)
        rest = [quote_ident(c.name) for c in self.columns if c.name not in self.key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
            if rest
            else "DO NOTHING"
        )
        return (
            f"INSERT INTO {self.qualified} ({cols}) SELECT {cols} FROM {self.staging} "
            f"ON CONFLICT ({keys}) {action}"
        )

    def _column_list(self) -> str:
        return ", ".join(quote_ident(c.name) for c in self.columns)

    # -- rows ---------------------------------------------------------------------------
    def rows(self, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows in column order, one per natural key: the last value of a key wins.

        Raises:
            ConnectorError: a value is not a dict or lacks a field without a default.
        """
        names = [c.name for c in self.columns]
        positions = [i for i, c in enumerate(self.columns) if c.name in self.key]
        as_json = [i for i, c in enumerate(self.columns) if c.json]
        out: dict[tuple[Any, ...], list[Any]] = {}
        for value in values:
            try:  # the hot path: a dict with every field
                row = [value[n] for n in names]
            except (KeyError, TypeError):
                row = self._row_with_defaults(value)
            for i in as_json:
                if row[i] is not None:
                    row[i] = json.dumps(row[i], separators=(",", ":"), sort_keys=True)
            k = tuple([row[i] for i in positions])
            out.pop(k, None)  # keep the latest write last
            out[k] = row
        return [tuple(row) for row in out.values()]

    def _row_with_defaults(self, value: Any) -> list[Any]:
        if not isinstance(value, Mapping):
            raise ConnectorError(
                f"table {self.name!r}: records must be dicts, got {type(value).__name__}"
            )
        row = []
        for c in self.columns:
            v = value.get(c.name, c.default)
            if v is _MISSING:
                raise ConnectorError(
                    f"table {self.name!r}: record lacks field {c.name!r}, which has no default"
                )
            row.append(v)
        return row
