"""Who may call the service: a bearer token (or its page cookie), or loopback names only.

Two ASGI middlewares, one of which wraps the app (see ``make_app``):

* :class:`BearerAuth` (a token is set): every endpoint but ``/health`` needs
  ``Authorization: Bearer <token>`` or the page's session cookie; ``/health``
  answers everyone, but only an authorised caller sees more than its status.
* :class:`LoopbackHosts` (no token, so the service is bound to loopback): the
  ``Host`` header must name loopback (``127.0.0.1``, ``localhost``, ``[::1]``, any
  port), else 403. A page of another site that rebinds its own name to 127.0.0.1
  sends its own name as ``Host``, so it cannot read the service.

Headers are read by hand with length caps: the standard library's cookie parser
is quadratic on hostile input, and a request must never cost more than its size.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "AUTHORIZED",
    "COOKIE",
    "MAX_COOKIE_BYTES",
    "SESSION_MAX_AGE_S",
    "BearerAuth",
    "LoopbackHosts",
    "cookie_value",
    "find_cookie",
    "loopback_host",
]

#: Cookie that stands for the bearer token in a browser.
COOKIE = "shoal_session"
#: How long the page's session cookie lives.
SESSION_MAX_AGE_S = 12 * 3600
#: Cookie headers longer than this are ignored (as if absent).
MAX_COOKIE_BYTES = 4096
#: Scope key set by :class:`BearerAuth`: whether the caller showed the token.
AUTHORIZED = "shoal.authorized"
_OPEN_PATHS = frozenset({"/health"})
_LOOPBACK_NAMES = frozenset({b"127.0.0.1", b"localhost", b"[::1]"})
_MAX_HOST_BYTES = 300


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    """A JSON ``{"error": message, ...}`` response."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def cookie_value(token: str) -> str:
    """What the session cookie holds for ``token``: a digest, never the token."""
    return hmac.new(token.encode(), b"shoal-page-session", hashlib.sha256).hexdigest()


def find_cookie(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of cookie ``name`` in the request's ``Cookie`` headers, if any.

    Headers together longer than :data:`MAX_COOKIE_BYTES` are ignored: a browser's
    cookies for this service are a few dozen bytes.
    """
    raw = [value for key, value in headers if key == b"cookie"]
    if not raw or sum(len(v) for v in raw) > MAX_COOKIE_BYTES:
        return None
    for header in raw:
        for pair in header.split(b";"):
            key, sep, value = pair.partition(b"=")
            if sep and key.strip() == name:
                return value.strip().strip(b'"')
    return None


def loopback_host(host: bytes | None) -> bool:
    """Whether a ``Host`` header names loopback: 127.0.0.1, localhost or [::1], any port."""
    if not host or len(host) > _MAX_HOST_BYTES:
        return False
    host = host.strip().lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        if end < 0:
            return False
        name, rest = host[: end + 1], host[end + 1 :]
    else:
        name, sep, port = host.partition(b":")
        rest = sep + port
    if rest and not (rest[:1] == b":" and rest[1:].isdigit() and len(rest) <= 6):
        return False
    return name in _LOOPBACK_NAMES


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


def served_over_tls(scope: Scope) -> bool:
    """Whether the client reached us over TLS (directly, or through a proxy that says so)."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    forwarded = _header(scope, b"x-forwarded-proto") or b""
    return forwarded[:16].split(b",")[0].strip().lower() == b"https"


class LoopbackHosts:
    """ASGI middleware: answer 403 unless ``Host`` names loopback (the no-token mode).

    Args:
        app: the wrapped app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not loopback_host(_header(scope, b"host")):
            response = error_response(
                403,
                "this service answers only to a loopback Host (127.0.0.1, localhost, [::1]); "
                "serve with --http-token to reach it under another name",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BearerAuth:
    """ASGI middleware: the token check of every endpoint but ``/health``.

    Args:
        app: the wrapped app.
        token: the bearer token clients must send.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self._cookie = cookie_value(token).encode()

    def _authorized(self, scope: Scope) -> bool:
        headers = list(scope.get("headers") or ())
        auth = next((v for k, v in headers if k == b"authorization"), b"")
        scheme, _, given = auth[:1024].partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token):
            return True
        session = find_cookie(headers, COOKIE.encode())
        return session is not None and hmac.compare_digest(session, self._cookie)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorized = self._authorized(scope)
        scope[AUTHORIZED] = authorized
        if scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and scope.get("query_string"):
            given = Request(scope).query_params.get("token")
            if given is not None:
                await self._login(given, scope)(scope, receive, send)
                return
        if not authorized:
            response = error_response(
                401,
                "this service needs a bearer token: send 'Authorization: Bearer <token>' "
                "(a browser: open /?token=<token> once)",
            )
            response.headers["www-authenticate"] = 'Bearer realm="shoal"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _login(self, given: str, scope: Scope) -> Response:
        if not hmac.compare_digest(given.encode(), self._token):
            return error_response(401, "wrong token")
        response = Response(status_code=303, headers={"location": "/"})
        response.set_cookie(
            COOKIE,
            self._cookie.decode(),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=served_over_tls(scope),
            path="/",
        )
        return response
