"""Sinks outside Kafka, chosen by the scheme of a binding's URL.

``--bind NAME=URL`` binds a sink to one of them instead of a topic:

* ``webhook+http://host/path`` (or ``webhook+https://``): JSON POSTs per record, signed
  by the Standard Webhooks convention (``connectors.webhook``). The secret
  (``whsec_<base64>``) comes from the environment variable named by ``secret_env``
  (default ``SHOAL_WEBHOOK_SECRET``; better: it stays out of command lines and process
  lists) or from a ``secret=`` query parameter. Optional parameters: ``deadline_s``
  (one attempt, default 10), ``max_response_bytes`` (default 65536), ``max_attempts``,
  ``backoff_initial_s``, ``backoff_max_s``; any other parameter stays in the URL posted to.

* ``postgres://user@host:port/db?table=...&key=...`` (or ``postgresql://``): upserts by
  natural key into a table created from the sink's Avro schema (``connectors.postgres``).
* ``redis://host:port/db?prefix=...&key=...&ttl=...`` (or ``rediss://``): hashes of the
  latest values, top-N as sorted sets (``connectors.redis``).

More schemes register themselves in ``FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from runtime.api.errors import ConfigError
from runtime.api.io import ExternalSink
from runtime.api.redact import redact_text, redact_url

#: ``(url, sink name, schema name, environment, the schema as JSON or None)``.
Factory = Callable[[str, str, str, Mapping[str, str], Mapping[str, Any] | None], ExternalSink]


_WEBHOOK_PARAMS = ("secret", "secret_env", "deadline_s", "max_response_bytes")
_BACKOFF_PARAMS = ("max_attempts", "backoff_initial_s", "backoff_max_s")


def _webhook(
    url: str, sink: str, schema: str, env: Mapping[str, str], avro: Mapping[str, Any] | None
) -> ExternalSink:
    from connectors.retry import Backoff
    from connectors.webhook.signing import parse_secret
    from connectors.webhook.sink import WebhookConfig, WebhookSink

    parts = urlsplit(url.removeprefix("webhook+"))
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    ours = {k: params.pop(k) for k in (*_WEBHOOK_PARAMS, *_BACKOFF_PARAMS) if k in params}
    variable = ours.get("secret_env", "SHOAL_WEBHOOK_SECRET")
    secret = ours.get("secret") or env.get(variable)
    if not secret:
        raise ConfigError(
            f"sink {sink!r}: a webhook needs a Standard Webhooks secret (whsec_<base64>): "
            f"set {variable} (or secret=... in the URL)"
        )
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))
    try:
        base = Backoff(max_attempts=6, initial_s=0.5, max_s=30.0)
        backoff = Backoff(
            max_attempts=int(ours.get("max_attempts", base.max_attempts)),
            initial_s=float(ours.get("backoff_initial_s", base.initial_s)),
            max_s=float(ours.get("backoff_max_s", base.max_s)),
        )
        config = WebhookConfig(
            url=target,
            # base64 holds '+', which a query decodes to ' ' unless it was written %2B
            secret=parse_secret(secret.replace(" ", "+")),
            deadline_s=float(ours.get("deadline_s", 10.0)),
            max_response_bytes=int(ours.get("max_response_bytes", 64 * 1024)),
            backoff=backoff,
        )
    except ValueError as exc:
        raise ConfigError(
            f"sink {sink!r}: invalid number in the webhook URL: {redact_text(str(exc))}"
        ) from exc
    except ConfigError as exc:
        raise ConfigError(f"sink {sink!r}: {redact_text(str(exc))}") from exc
    return WebhookSink(config)


def _postgres(
    url: str, sink: str, schema: str, env: Mapping[str, str], avro: Mapping[str, Any] | None
) -> ExternalSink:
    from connectors.postgres import PostgresSink, config_from_url

    return PostgresSink(config_from_url(url, sink, schema, avro))


def _redis(
    url: str, sink: str, schema: str, env: Mapping[str, str], avro: Mapping[str, Any] | None
) -> ExternalSink:
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
    url: str,
    sink: str,
    schema: str,
    env: Mapping[str, str] | None = None,
    avro: Mapping[str, Any] | None = None,
) -> ExternalSink:
    """The external sink for ``url``.

    Args:
        url: the binding URL; its scheme picks the sink.
        sink: the sink's name.
        schema: the record name the sink writes (``""``: none).
        env: the environment (secrets); default ``os.environ``.
        avro: the record's schema as JSON (a job's own schemas); default: the
            built-in one of that name.

    Raises:
        ConfigError: the scheme is unknown or its settings are incomplete.
    """
    import os

    scheme = url.split("://", 1)[0].lower()
    factory = FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(f"{s}://" for s in FACTORIES))
        raise ConfigError(
            f"sink {sink!r}: unknown sink URL scheme in {redact_url(url)!r} (known: {known})"
        )
    try:
        return factory(url, sink, schema, dict(os.environ) if env is None else env, avro)
    except ConfigError as exc:
        # Messages of the factories may quote the URL: never with its secrets.
        raise ConfigError(redact_text(str(exc))) from exc


__all__ = ["FACTORIES", "is_external", "make_external_sink"]
