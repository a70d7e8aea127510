"""The worker's HTTP service: a Starlette app over a :class:`WorkerHandle`.

Endpoints (``{job}`` must be the worker's job; unknown names answer 404 with a JSON
``{"error": ...}`` that says what exists):

==================================  ==================================================
``GET /``                           the live page (static HTML, JS and CSS of this package)
``GET /metrics``                    Prometheus text exposition of the injected registry
``GET /health``                     JSON; 200 when healthy, 503 otherwise (never needs a token)
``GET /topology``                   JSON: steps, edges, counters, panels the page can show
``GET /streams/{job}/{step}``       Server-Sent Events of the step's output;
                                    ``filter=`` (see ``runtime.service.filters``),
                                    ``sample=`` (0.1 or 1/10), ``limit=`` (records),
                                    ``recent=`` (first replay up to N kept records of the
                                    step, for the steps that keep some: see HISTORY)
``GET /state/{job}/{step}/{key}``   JSON: the key's state in a stateful step; 404 if none
``GET /filters?filter=&sample=``    JSON: whether a tap's parameters parse (400 and the
                                    reason if not): ``EventSource`` cannot read a 400 body
==================================  ==================================================

With a token, every endpoint but ``/health`` needs ``Authorization: Bearer <token>``.
A browser cannot send that header from a page (nor from ``EventSource``), so
``GET /?token=<token>`` answers with a cookie holding a digest of the token
(HttpOnly, SameSite=Strict) and a redirect to ``/``; the cookie then stands for
the header. Every endpoint only reads, so the cookie cannot be used to change anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.api.errors import ConfigError
from runtime.service.filters import compile_filter
from runtime.service.handle import WorkerHandle
from runtime.service.jsonable import to_jsonable
from runtime.service.metrics import CONTENT_TYPE, CollectorRegistry, WorkerCollector, render
from runtime.service.sampling import Sampler, parse_sample
from runtime.service.sse import SSEResponse, stream
from runtime.service.taps import TooManySubscribers
from runtime.service.topology import find_panels, topology

__all__ = ["COOKIE", "make_app"]

#: Cookie that stands for the bearer token in a browser.
COOKIE = "shoal_session"
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}
_OPEN_PATHS = frozenset({"/health"})
#: Page panels whose step keeps its last records: how many, and which. A page opened
#: now shows the alerts, sessions and per-CDN QoE of the last minutes, not an empty panel.
HISTORY: dict[str, tuple[int, str | None]] = {
    "alerts": (500, None),
    "sessions": (100, None),
    "qoe": (1000, 'window_kind == "tumbling_1m" and group_kind == "cdn"'),
}
_MAX_LIMIT = 10**9


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"shoal-page-session", hashlib.sha256).hexdigest()


class BearerAuth:
    """ASGI middleware: the token check of every endpoint but ``/health``.

    Args:
        app: the wrapped app.
        token: the bearer token clients must send.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self._cookie = _cookie_value(token).encode()

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token):
            return True
        raw = headers.get(b"cookie")
        if raw:
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(raw.decode("latin-1"))
            except Exception:
                return False
            morsel = cookie.get(COOKIE)
            if morsel is not None:
                return hmac.compare_digest(morsel.value.encode(), self._cookie)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and scope.get("query_string"):
            request = Request(scope)
            given = request.query_params.get("token")
            if given is not None:
                if hmac.compare_digest(given.encode(), self._token):
                    response: Response = Response(status_code=303, headers={"location": "/"})
                    response.set_cookie(
                        COOKIE,
                        self._cookie.decode(),
                        httponly=True,
                        samesite="strict",
                        path="/",
                    )
                else:
                    response = _error(401, "wrong token")
                await response(scope, receive, send)
                return
        if not self._authorized(scope):
            response = _error(
                401,
                "this service needs a bearer token: send 'Authorization: Bearer <token>' "
                "(a browser: open /?token=<token> once)",
            )
            response.headers["www-authenticate"] = 'Bearer realm="shoal"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Endpoints:
    """Request handlers over one worker handle."""

    def __init__(self, handle: WorkerHandle, registry: CollectorRegistry, keepalive_s: float):
        self.handle = handle
        self.registry = registry
        self.keepalive_s = keepalive_s
        package = resources.files("runtime.service") / "static"
        self.static = {name: (package / name).read_bytes() for name in _STATIC}

    def _check_job(self, job: str) -> JSONResponse | None:
        if job != self.handle.job_name:
            return _error(
                404,
                f"unknown job {job!r}: this worker runs {self.handle.job_name!r}",
                job=self.handle.job_name,
            )
        return None

    def _unknown_step(self, step: str) -> JSONResponse:
        return _error(
            404,
            f"unknown step {step!r} in job {self.handle.job_name!r}",
            steps=[s.name for s in self.handle.steps],
        )

    async def index(self, request: Request) -> Response:
        return Response(
            self.static["index.html"],
            media_type=_STATIC["index.html"],
            headers={"cache-control": "no-cache"},
        )

    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static or name == "index.html":
            return _error(404, f"no static file {name!r}")
        return Response(
            self.static[name], media_type=_STATIC[name], headers={"cache-control": "no-cache"}
        )

    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(render, self.registry)
        return Response(body, media_type=CONTENT_TYPE)

    async def health(self, request: Request) -> Response:
        ok, body = await run_in_threadpool(self.handle.health)
        return JSONResponse(body, status_code=200 if ok else 503)

    async def topology(self, request: Request) -> Response:
        snap = await run_in_threadpool(self.handle.snapshot)
        return JSONResponse(topology(self.handle, snap))

    async def state(self, request: Request) -> Response:
        job, step, key = (request.path_params[p] for p in ("job", "step", "key"))
        bad = self._check_job(job)
        if bad is not None:
            return bad
        info = self.handle.step(step)
        if info is None:
            return self._unknown_step(step)
        if not info.stateful:
            return _error(
                404,
                f"step {step!r} keeps no state (it is a {info.kind} step)",
                stateful_steps=[s.name for s in self.handle.steps if s.stateful],
            )
        entries = await run_in_threadpool(self.handle.query_state, step, key)
        if entries is None:
            return _error(503, "the worker did not answer in time; try again")
        if not entries:
            return _error(404, f"no state for key {key!r} in step {step!r}", key=key)
        return JSONResponse(
            to_jsonable(
                {"job": job, "step": step, "kind": info.kind, "key": key, "entries": entries}
            )
        )

    async def check_filter(self, request: Request) -> Response:
        params = request.query_params
        try:
            compile_filter(params.get("filter"))
            sample = parse_sample(params.get("sample"))
            limit = _parse_limit(params.get("limit"))
        except ConfigError as exc:
            return _bad_request(exc)
        return JSONResponse(
            {
                "ok": True,
                "filter": params.get("filter") or None,
                "sample": str(sample),
                "limit": limit,
            }
        )

    async def streams(self, request: Request) -> Response | SSEResponse:
        job, step = request.path_params["job"], request.path_params["step"]
        bad = self._check_job(job)
        if bad is not None:
            return bad
        if self.handle.step(step) is None:
            return self._unknown_step(step)
        params = request.query_params
        text = params.get("filter")
        try:
            predicate = compile_filter(text)
            sample = parse_sample(params.get("sample"))
            limit = _parse_limit(params.get("limit"))
            recent = _parse_count("recent", params.get("recent"), 100_000) or 0
        except ConfigError as exc:
            return _bad_request(exc)
        try:
            sub = self.handle.taps.subscribe(
                step, predicate, Sampler(sample), limit, asyncio.get_running_loop(), recent
            )
        except TooManySubscribers as exc:
            return _error(503, str(exc))
        opening = {
            "job": job,
            "step": step,
            "filter": text or None,
            "sample": str(sample),
            "limit": limit,
            "replayed": sub.replayed,
        }
        body = stream(self.handle.taps, sub, opening, limit, self.keepalive_s)
        return SSEResponse(body, sub)


def _bad_request(exc: ConfigError) -> JSONResponse:
    column = getattr(exc, "column", None)
    extra = {"column": column} if column is not None else {}
    return _error(400, str(exc), **extra)


def _parse_limit(text: str | None) -> int | None:
    return _parse_count("limit", text, _MAX_LIMIT)


def _parse_count(name: str, text: str | None, most: int) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a positive integer, got {text!r}") from None
    if not 1 <= value <= most:
        raise ConfigError(f"{name}: expected 1..{most}, got {value}")
    return value


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _error(
            404,
            f"no such endpoint {request.url.path!r}",
            endpoints=[
                "/",
                "/metrics",
                "/health",
                "/topology",
                "/streams/{job}/{step}",
                "/state/{job}/{step}/{key}",
                "/filters",
            ],
        )
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _error(status, str(detail))


def make_app(
    worker_handle: WorkerHandle,
    registry: CollectorRegistry,
    token: str | None = None,
    *,
    keepalive_s: float = 15.0,
) -> ASGIApp:
    """The ASGI app of a worker's service.

    Args:
        worker_handle: the worker to serve.
        registry: where the worker's collector is registered and ``/metrics`` reads
            from (inject one per worker; the global registry is never used).
        token: when set, every endpoint but ``/health`` needs it as a bearer token.
        keepalive_s: quiet time after which an SSE stream sends a keepalive comment.
    """
    registry.register(WorkerCollector(worker_handle))
    for panel, feed in find_panels(worker_handle.steps).items():
        if feed is not None and panel in HISTORY and feed["step"] is not None:
            size, keep = HISTORY[panel]
            worker_handle.taps.keep_history(feed["step"], size, compile_filter(keep))
    ep = _Endpoints(worker_handle, registry, keepalive_s)
    routes = [
        Route("/", ep.index),
        Route("/static/{name}", ep.static_file),
        Route("/metrics", ep.metrics),
        Route("/health", ep.health),
        Route("/topology", ep.topology),
        Route("/filters", ep.check_filter),
        Route("/streams/{job}/{step}", ep.streams),
        Route("/state/{job}/{step}/{key:path}", ep.state),
    ]
    app: ASGIApp = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    if token:
        app = BearerAuth(app, token)
    return app
