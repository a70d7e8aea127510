"""One place that hides secrets wherever a setting, URL or message is shown.

Every log line, error message, ``repr``, start-up line and HTTP answer that may carry a
client setting or an endpoint URL passes it through here first:

* :func:`is_secret_key` - setting names that hold secrets (``sasl.password``,
  ``ssl.key.password``, ``basic.auth.user.info``, anything with ``secret``, ``password``,
  ``token``, ``credential`` or ``jaas`` in its name, ``SHOAL_*`` variables alike);
* :func:`redact_settings` - a copy of a mapping with those values replaced;
* :func:`redact_url` - the password of a URL's user info and secret-looking query
  parameters (``secret=``, ``token=``, ``password=``, ``sig=`` ...) replaced;
* :func:`redact_text` - both of the above inside free text (an exception message that
  echoes a URL or a ``key=value`` setting).

>>> redact_url("postgres://shoal:hunter2@db:5432/qoe?table=t")
'postgres://shoal:***@db:5432/qoe?table=t'
>>> redact_url("webhook+https://hooks.example/x?secret=abc&team=qoe")
'webhook+https://hooks.example/x?secret=***&team=qoe'
>>> redact_settings({"bootstrap.servers": "b:9093", "sasl.password": "pw"})
{'bootstrap.servers': 'b:9093', 'sasl.password': '***'}
>>> redact_text("connect failed: redis://:pw@127.0.0.1:6379/0 sasl.password=pw")
'connect failed: redis://:***@127.0.0.1:6379/0 sasl.password=***'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_key", "redact_settings", "redact_text", "redact_url"]

MASK = "***"

_SECRET_WORDS = ("password", "secret", "token", "credential", "jaas", "passwd", "apikey")
# Whole setting names that hold secrets without one of the words above in them.
_SECRET_NAMES = frozenset(
    {
        "basic.auth.user.info",
        "bearer.auth.token",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
        "ssl.keystore.key",
        "ssl.keystore.pem",
        "ssl_key_pem",
        "api.key",
        "api_key",
        "sig",
        "signature",
        "pw",
        "pwd",
    }
)
# scheme://user:password@host  (the password part, up to the last @ before the host)
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@?#]*:)[^\s@/?#]*(?=@)")
# a whole URL inside free text (up to white space or a quote)
_URL = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'"<>]+""")
# name=value pairs in queries or free text whose name is a secret
_PAIR = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<eq>\s*[=:]\s*)"
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s&,;"')]+)"""
)


def is_secret_key(name: str) -> bool:
    """True when a setting, header, variable or query parameter of this name holds a secret.

    >>> is_secret_key("sasl.password"), is_secret_key("SHOAL_KAFKA_SASL_PASSWORD")
    (True, True)
    >>> is_secret_key("bootstrap.servers")
    False
    """
    low = name.lower()
    if low in _SECRET_NAMES or any(low.endswith("." + n) for n in _SECRET_NAMES):
        return True
    squashed = low.replace("_", "").replace(".", "").replace("-", "")
    return any(word in squashed for word in _SECRET_WORDS)


def redact_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` with secret values masked and URLs redacted."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if is_secret_key(str(name)):
            out[name] = MASK
        elif isinstance(value, str):
            out[name] = redact_url(value) if "://" in value else value
        else:
            out[name] = value
    return out


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and secret query values masked."""
    text = _URL_USERINFO.sub(lambda m: m.group("head") + MASK, url)
    head, sep, query = text.partition("?")
    if not sep:
        return text
    return head + sep + _mask_pairs(query)


def redact_text(text: str) -> str:
    """Free text with URL passwords and ``secret=value`` pairs masked.

    URLs are redacted as a whole first: a URL that is itself the value of a pair
    (``sink=postgres://...?password=...``) would otherwise hide its query from the pairs.

    >>> redact_text("binding 'out=redis://h:6379/0?password=pw&db=1'")
    "binding 'out=redis://h:6379/0?password=***&db=1'"
    """
    return _mask_pairs(_URL.sub(lambda m: redact_url(m.group(0)), text))


def _mask_pairs(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group("value") == MASK or not is_secret_key(m.group("name")):
            return m.group(0)
        return m.group("name") + m.group("eq") + MASK

    return _PAIR.sub(one, text)
