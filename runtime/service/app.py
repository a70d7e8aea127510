"""The worker's HTTP service: a Starlette app over a :class:`WorkerHandle`.

Endpoints (``{job}`` must be the worker's job; unknown names answer 404 with a JSON
``{"error": ...}`` that says what exists):

==================================  ==================================================
``GET /``                           the live page (static HTML, JS and CSS of this package)
``GET /metrics``                    Prometheus text exposition of the injected registry
``GET /health``                     JSON; 200 when healthy, 503 otherwise (never needs a
                                    token; with one set, only an authorised caller sees
                                    more than ``{"status": ...}``)
``GET /status``                     JSON: this worker's tasks, partitions, lag, watermarks,
                                    checkpoints and counters, its job and group, and the
                                    ``shoal status`` command line for the whole job
                                    (see ``runtime.service.status``)
``GET /topology``                   JSON: steps, edges, counters, panels the page can show
``GET /streams/{job}/{step}``       Server-Sent Events of the step's output;
                                    ``filter=`` (see ``runtime.service.filters``; its
                                    cost limits are checked first: 400 naming the limit),
                                    ``sample=`` (0.1 or 1/10), ``limit=`` (records),
                                    ``recent=`` (first replay up to N kept records of the
                                    step, for the steps that keep some: see HISTORY);
                                    503 when 64 taps are open, 429 when this client
                                    address holds 8; a reader that takes nothing for
                                    the idle timeout (30 s) is disconnected
``GET /state/{job}/{step}/{key}``   JSON: the key's state in a stateful step, looked up
                                    by key (no scan), at most 1,000 entries
                                    (``truncated`` says when there are more); 404 if
                                    none, 400 for a key that is not UTF-8 or is over
                                    1 KB, 503 at once when the worker has too many
                                    calls pending or did not answer in time
``GET /filters?filter=&sample=``    JSON: whether a tap's parameters parse (400 and the
                                    reason if not): ``EventSource`` cannot read a 400 body
==================================  ==================================================

Errors are JSON ``{"error": ...}``, never a traceback. Calls into the worker thread
are bounded (see ``runtime.engine.calls``): a flood of requests gets 503s, the job
keeps its pace.

With a token, every endpoint but ``/health`` needs ``Authorization: Bearer <token>``.
A browser cannot send that header from a page (nor from ``EventSource``), so
``GET /?token=<token>`` answers with a cookie holding a digest of the token
(HttpOnly, SameSite=Strict, 12 h Max-Age, and Secure when served over TLS, directly
or behind a proxy that sends ``X-Forwarded-Proto: https``) and a redirect to ``/``;
the cookie then stands for the header. Every endpoint only reads, so the cookie
cannot be used to change anything. Without a token (loopback only), a request whose
``Host`` is not a loopback name gets 403: a page of another site cannot reach the
service by rebinding its own name to 127.0.0.1. See ``runtime.service.guard``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from runtime.api.errors import ConfigError, WorkerBusy
from runtime.service.filters import FilterSyntaxError, compile_filter
from runtime.service.guard import AUTHORIZED, COOKIE, BearerAuth, LoopbackHosts, error_response
from runtime.service.handle import MAX_ENTRIES, MAX_KEY_BYTES, WorkerHandle
from runtime.service.jsonable import to_jsonable
from runtime.service.metrics import CONTENT_TYPE, CollectorRegistry, WorkerCollector, render
from runtime.service.sampling import Sampler, parse_sample
from runtime.service.sse import IDLE_TIMEOUT_S, SSEResponse, stream
from runtime.service.status import worker_status
from runtime.service.taps import TooManyFromClient, TooManySubscribers
from runtime.service.topology import find_panels, topology

__all__ = ["COOKIE", "BearerAuth", "make_app"]

log = logging.getLogger("shoal.service")

_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}
#: Page panels whose step keeps its last records: how many, and which. A page opened
#: now shows the alerts, sessions and per-CDN QoE of the last minutes, not an empty panel.
HISTORY: dict[str, tuple[int, str | None]] = {
    "alerts": (500, None),
    "sessions": (100, None),
    "qoe": (1000, 'window_kind == "tumbling_1m" and group_kind == "cdn"'),
    "attribution": (400, None),
}
_MAX_LIMIT = 10**9


_error = error_response


class _Endpoints:
    """Request handlers over one worker handle."""

    def __init__(
        self,
        handle: WorkerHandle,
        registry: CollectorRegistry,
        keepalive_s: float,
        idle_timeout_s: float,
    ) -> None:
        self.handle = handle
        self.registry = registry
        self.keepalive_s = keepalive_s
        self.idle_timeout_s = idle_timeout_s
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
        if not request.scope.get(AUTHORIZED, True):
            body = {"status": body["status"]}  # the details are for those with the token
        return JSONResponse(body, status_code=200 if ok else 503)

    async def status(self, request: Request) -> Response:
        snap = await run_in_threadpool(self.handle.snapshot)
        return JSONResponse(worker_status(self.handle, snap, time.time_ns() // 1_000_000))

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
        bad = _check_key(request, key)
        if bad is not None:
            return bad
        try:
            answer = await self.handle.query_state(step, key)
        except ConfigError as exc:
            return _error(400, str(exc))
        except WorkerBusy as exc:
            return _error(503, str(exc))
        if answer is None:
            return _error(503, "the worker did not answer in time; try again")
        if not answer.entries:
            return _error(404, f"no state for key {key!r} in step {step!r}", key=key)
        return JSONResponse(
            to_jsonable(
                {
                    "job": job,
                    "step": step,
                    "kind": info.kind,
                    "key": key,
                    "entries": answer.entries,
                    "limit": MAX_ENTRIES,
                    "truncated": answer.truncated,
                }
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
        client = request.client.host if request.client is not None else None
        try:
            sub = self.handle.taps.subscribe(
                step,
                predicate,
                Sampler(sample),
                limit,
                asyncio.get_running_loop(),
                recent,
                client=client,
            )
        except TooManyFromClient as exc:
            return _error(429, str(exc))
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
        return SSEResponse(body, sub, self.handle.taps, self.idle_timeout_s)


def _check_key(request: Request, key: str) -> JSONResponse | None:
    """400 for a key that is not UTF-8 or too long to look up (else ``None``)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the key is not valid UTF-8 (percent-encode UTF-8 bytes)")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return _error(400, "the key is not valid UTF-8 (percent-encode UTF-8 bytes)")
    if size > MAX_KEY_BYTES:
        return _error(400, f"the key is {size} bytes; at most {MAX_KEY_BYTES} are looked up")
    return None


def _bad_request(exc: ConfigError) -> JSONResponse:
    extra = {"column": exc.column} if isinstance(exc, FilterSyntaxError) else {}
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
                "/status",
                "/topology",
                "/streams/{job}/{step}",
                "/state/{job}/{step}/{key}",
                "/filters",
            ],
        )
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _error(status, str(detail))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Logged with its traceback here; the client sees one line, never the traceback.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error")


def make_app(
    worker_handle: WorkerHandle,
    registry: CollectorRegistry,
    token: str | None = None,
    *,
    keepalive_s: float = 15.0,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> ASGIApp:
    """The ASGI app of a worker's service.

    Args:
        worker_handle: the worker to serve.
        registry: where the worker's collector is registered and ``/metrics`` reads
            from (inject one per worker; the global registry is never used).
        token: when set, every endpoint but ``/health`` needs it as a bearer token;
            when not, only requests whose ``Host`` names loopback are answered.
        keepalive_s: quiet time after which an SSE stream sends a keepalive comment.
        idle_timeout_s: a tap whose reader takes nothing this long is disconnected.
    """
    registry.register(WorkerCollector(worker_handle))
    for panel, feed in find_panels(worker_handle.steps).items():
        if feed is not None and panel in HISTORY and feed["step"] is not None:
            size, keep = HISTORY[panel]
            worker_handle.taps.keep_history(feed["step"], size, compile_filter(keep))
    ep = _Endpoints(worker_handle, registry, keepalive_s, idle_timeout_s)
    routes = [
        Route("/", ep.index),
        Route("/static/{name}", ep.static_file),
        Route("/metrics", ep.metrics),
        Route("/health", ep.health),
        Route("/status", ep.status),
        Route("/topology", ep.topology),
        Route("/filters", ep.check_filter),
        Route("/streams/{job}/{step}", ep.streams),
        Route("/state/{job}/{step}/{key:path}", ep.state),
    ]
    app: ASGIApp = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _not_found, Exception: _internal_error},
    )
    return BearerAuth(app, token) if token else LoopbackHosts(app)
