"""Sinks outside Kafka, chosen by the scheme of a binding's URL.

``--bind NAME=URL`` binds a sink to one of them instead of a topic:

* ``webhook+http://host/path`` (or ``webhook+https://``): signed JSON POSTs per record;
  the HMAC secret comes from the ``secret`` query parameter or, better, from the
  environment variable named by ``secret_env`` (default ``SHOAL_WEBHOOK_SECRET``).

* ``postgres://user@host:port/db?table=...&key=...`` (or ``postgresql://``): upserts by
  natural key into a table created from the sink's Avro schema (``connectors.postgres``).
* ``redis://host:port/db?prefix=...&key=...&ttl=...`` (or ``rediss://``): hashes of the
  latest values, top-N as sorted sets (``connectors.redis``).

More schemes register themselves in ``FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

from runtime.api.errors import ConfigError
from runtime.api.io import ExternalSink

Factory = Callable[[str, str, str, Mapping[str, str]], ExternalSink]


def _webhook(url: str, sink: str, schema: str, env: Mapping[str, str]) -> ExternalSink:
    from connectors.webhook.sink import WebhookConfig, WebhookSink

    parts = urlsplit(url.removeprefix("webhook+"))
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    secret = query.pop("secret", None) or env.get(query.pop("secret_env", "SHOAL_WEBHOOK_SECRET"))
    if not secret:
        raise ConfigError(
            f"sink {sink!r}: a webhook needs an HMAC secret: set SHOAL_WEBHOOK_SECRET "
            "(or secret_env=VAR in the URL)"
        )
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return WebhookSink(WebhookConfig(url=target, secret=secret.encode()))


def _postgres(url: str, sink: str, schema: str, env: Mapping[str, str]) -> ExternalSink:
    from connectors.postgres import PostgresSink, config_from_url

    return PostgresSink(config_from_url(url, sink, schema))


def _redis(url: str, sink: str, schema: str, env: Mapping[str, str]) -> ExternalSink:
    from connectors.redis import RedisSink, config_from_url

    return RedisSink(config_from_url(url, sink, schema))


FACTORIES: dict[str, Factory] = {
    "webhook+http": _webhook,
    "webhook+https": _webhook,
    "postgres": _postgres,
    "postgresql": _postgres,
    "redis": _redis,
    "rediss": _redis,
}


def is_external(target: str) -> bool:
    """Whether a binding target is a URL of an external sink (not a topic)."""
    return "://" in target


def make_external_sink(
    url: str, sink: str, schema: str, env: Mapping[str, str] | None = None
) -> ExternalSink:
    """The external sink for ``url``.

    Raises:
        ConfigError: the scheme is unknown or its settings are incomplete.
    """
    import os

    scheme = url.split("://", 1)[0].lower()
    factory = FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(f"{s}://" for s in FACTORIES))
        raise ConfigError(f"sink {sink!r}: unknown sink URL scheme {scheme!r} (known: {known})")
    return factory(url, sink, schema, dict(os.environ) if env is None else env)


__all__ = ["FACTORIES", "is_external", "make_external_sink"]


