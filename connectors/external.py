"""Sinks outside Kafka, chosen by the scheme of a binding's URL.

``--bind NAME=URL`` binds a sink to one of them instead of a topic:

* ``webhook+http://host/path`` (or ``webhook+https://``): signed JSON POSTs per record;
  the HMAC secret comes from the ``secret`` query parameter or, better, from the
  environment variable named by ``secret_env`` (default ``SHOAL_WEBHOOK_SECRET``).

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


FACTORIES: dict[str, Factory] = {
    "webhook+http": _webhook,
    "webhook+https": _webhook,
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


