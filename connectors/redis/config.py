"""Settings of a Redis sink, its key layout, and how a binding URL turns into them.

Key layout (what a dashboard reads):

* every record is a **hash** ``<prefix>:<key>``: ``<key>`` is the values of the key
  fields joined by ``:`` (a null part is empty), its fields are the record's
  fields: strings as they are, numbers as decimal text, booleans ``true``/``false``,
  arrays, maps and records as JSON; null fields are left out. A write replaces the
  whole hash, so a field that became null disappears.
* with ``top`` set (default for ``PersonalizationScore``), the record's array field
  ``top`` also becomes a **sorted set** ``<prefix>:<key>:top`` of
  ``member`` -> ``score`` (a user's titles by score: ``ZREVRANGE ... WITHSCORES``),
  replaced as a whole.
* with ``ttl``, both keys expire ``ttl`` seconds after their last write.

URL: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]?PARAMS`` (``rediss://`` for TLS).
Parameters of the sink (the rest go to redis-py, e.g. ``socket_timeout``):

* ``prefix``: default the sink's name (``personalization-scores``).
* ``key``: comma-separated key fields; default per schema (:data:`DEFAULTS`).
* ``ttl``: seconds; ``0`` for none; default per schema.
* ``top``, ``member``, ``score``: the sorted set's array field and the member and
  score fields of its items; ``top=`` (empty) turns the sorted set off.
* ``chunk``: records per ``MULTI``/``EXEC`` transaction (default 500).
* ``max_attempts``, ``backoff_initial_s``, ``backoff_max_s``: retry budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connectors.retry import Backoff
from runtime.api.errors import ConfigError, ConnectorError

__all__ = ["DEFAULTS", "Backoff", "HashWrite", "Layout", "RedisConfig", "config_from_url"]

_DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Layout:
    """How records map to keys.

    Args:
        prefix: first part of every key.
        key: fields whose values name a record's hash.
        ttl_s: expiry of the keys after each write (``None``: never).
        top: array field written as a sorted set (``None``: no sorted set).
        member: field of a ``top`` item that is the member.
        score: field of a ``top`` item that is the score.

    Raises:
        ConfigError: on an empty key or a negative TTL.
    """

    prefix: str
    key: tuple[str, ...]
    ttl_s: int | None = None
    top: str | None = None
    member: str = "title_id"
    score: str = "score"

    def __post_init__(self) -> None:
        if not self.key:
            raise ConfigError("a Redis sink needs at least one key field (key=...)")
        if self.ttl_s is not None and self.ttl_s < 1:
            raise ConfigError(f"ttl must be positive seconds, got {self.ttl_s!r}")

    def plan(self, values: Sequence[Any]) -> list[HashWrite]:
        """One write per hash key, the latest value of each key.

        Raises:
            ConnectorError: a value is not a dict, lacks a key field, or its ``top``
                is not a list of items with member and score.
        """
        out: dict[str, HashWrite] = {}
        for value in values:
            if not isinstance(value, Mapping):
                raise ConnectorError(
                    f"redis {self.prefix!r}: records must be dicts, got {type(value).__name__}"
                )
            try:
                parts = [value[k] for k in self.key]
            except KeyError as exc:
                raise ConnectorError(
                    f"redis {self.prefix!r}: record lacks key field {exc}"
                ) from exc
            name = ":".join([self.prefix, *("" if p is None else str(p) for p in parts)])
            fields = {k: _field(v) for k, v in value.items() if v is not None}
            members = self._members(value) if self.top is not None else None
            out.pop(name, None)
            out[name] = HashWrite(name, fields, members)
        return list(out.values())

    def _members(self, value: Mapping[str, Any]) -> dict[str, float]:
        items = value.get(self.top or "") or []
        try:
            return {str(i[self.member]): float(i[self.score]) for i in items}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConnectorError(
                f"redis {self.prefix!r}: field {self.top!r} must be a list of items with "
                f"{self.member!r} and a numeric {self.score!r}: {exc!r}"
            ) from exc


@dataclass(frozen=True, slots=True)
class HashWrite:
    """The replacement of one hash (and its sorted set, when ``members`` is not None)."""

    key: str
    fields: dict[str, str | bytes]
    members: dict[str, float] | None

    @property
    def top_key(self) -> str:
        """The sorted set's key."""
        return f"{self.key}:top"


def _field(v: Any) -> str | bytes:
    if isinstance(v, (str, bytes)):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)


#: Key fields, TTL and sorted set per output schema.
DEFAULTS: dict[str, dict[str, Any]] = {
    # group first, window start last: SCAN qoe-metrics:tumbling_1m:cdn:* lists a group
    "QoeMetric": {
        "key": (
            "window_kind",
            "group_kind",
            "title_id",
            "device_type",
            "country",
            "cdn",
            "window_start_ms",
        ),
        "ttl_s": _DAY_S,
    },
    "SessionSummary": {"key": ("user_id", "device_id", "session_start_ms"), "ttl_s": 7 * _DAY_S},
    "QoeAlert": {"key": ("alert_id",), "ttl_s": 7 * _DAY_S},
    "PersonalizationScore": {
        "key": ("user_id",),
        "top": "top_titles",
        "member": "title_id",
        "score": "score",
    },
}


_BACKOFF = Backoff()
_BACKOFF_PARAMS = ("max_attempts", "backoff_initial_s", "backoff_max_s")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where and how a Redis sink writes.

    Args:
        url: redis-py connection URL (may hold a password: hidden in ``repr``).
        layout: keys, TTL and sorted set.
        chunk: records per ``MULTI``/``EXEC`` transaction.
        backoff: retry budget of one transaction.
        timeout_s: connect and socket timeout.
    """

    url: str = field(repr=False)
    layout: Layout
    chunk: int = 500
    backoff: Backoff = field(default_factory=Backoff)
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ConfigError(f"redis chunk must be >= 1, got {self.chunk!r}")

    @property
    def where(self) -> str:
        """``redis://host:port/db prefix`` for messages, without credentials."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path} prefix {self.layout.prefix}"


def config_from_url(url: str, sink: str, schema: str) -> RedisConfig:
    """The settings of sink ``sink`` (schema name ``schema``, may be empty) bound to ``url``.

    Raises:
        ConfigError: the URL or a parameter is invalid, or no key is known.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"sink {sink!r}: not a redis:// URL: {parts.scheme}://...")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    names = ("prefix", "key", "ttl", "top", "member", "score", "chunk")
    ours = {k: params.pop(k) for k in (*names, *_BACKOFF_PARAMS) if k in params}
    defaults = DEFAULTS.get(schema, {})
    if "key" in ours:
        key = tuple(k.strip() for k in ours["key"].split(",") if k.strip())
    elif "key" in defaults:
        key = defaults["key"]
    else:
        raise ConfigError(
            f"sink {sink!r}: no default key for schema {schema or 'None'!r}: "
            "add key=FIELD[,FIELD...] to the redis URL"
        )
    try:
        ttl = int(ours["ttl"]) if "ttl" in ours else defaults.get("ttl_s")
        top = ours["top"] if "top" in ours else defaults.get("top")
        layout = Layout(
            prefix=ours.get("prefix") or sink,
            key=key,
            ttl_s=ttl or None,
            top=top or None,
            member=ours.get("member", defaults.get("member", "title_id")),
            score=ours.get("score", defaults.get("score", "score")),
        )
        backoff = Backoff(
            max_attempts=int(ours.get("max_attempts", _BACKOFF.max_attempts)),
            initial_s=float(ours.get("backoff_initial_s", _BACKOFF.initial_s)),
            max_s=float(ours.get("backoff_max_s", _BACKOFF.max_s)),
        )
        chunk = int(ours.get("chunk", 500))
        timeout = float(params.get("socket_timeout", 5))
    except ValueError as exc:
        raise ConfigError(f"sink {sink!r}: invalid number in the redis URL: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"sink {sink!r}: {exc}") from exc
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))
    return RedisConfig(url=target, layout=layout, chunk=chunk, backoff=backoff, timeout_s=timeout)
