"""Serve a worker's HTTP service with uvicorn on a background thread of the worker process.

The worker loop keeps the main thread; uvicorn runs its own event loop on a daemon
thread (it installs no signal handlers off the main thread, so Ctrl-C still reaches
the worker). The socket is bound here, before the thread starts, so port 0 picks a
free port and :attr:`ServiceHandle.url` is known at once.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import uvicorn

from runtime.api.errors import ConfigError
from runtime.service.app import make_app
from runtime.service.handle import ServedWorker, WorkerHandle
from runtime.service.metrics import CollectorRegistry, register_standard
from runtime.service.sse import IDLE_TIMEOUT_S

__all__ = [
    "MIN_TOKEN_BYTES",
    "ServiceConfig",
    "ServiceHandle",
    "is_loopback",
    "parse_address",
    "start_service",
]

log = logging.getLogger("shoal.service")

#: Where ``shoal run --http`` listens when given only a port.
DEFAULT_HOST = "127.0.0.1"
#: Shortest bearer token accepted for a bind beyond loopback, in bytes.
MIN_TOKEN_BYTES = 32


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` -> ``(host, port)``; port 0 means any free one.

    Raises:
        ConfigError: not an address with a port in 0..65535.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text.strip()
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"--http: expected HOST:PORT (e.g. 127.0.0.1:8088), got {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--http: port must be 0..65535, got {port}")
    return host, port


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Where and how the service listens (the token never shows in ``repr``).

    Raises:
        ConfigError: a bind beyond loopback without a token, or with one shorter
            than :data:`MIN_TOKEN_BYTES` bytes (the message never shows the token).
    """

    host: str = DEFAULT_HOST
    port: int = 0
    token: str | None = field(default=None, repr=False)
    keepalive_s: float = 15.0
    idle_timeout_s: float = IDLE_TIMEOUT_S

    def __post_init__(self) -> None:
        if is_loopback(self.host):
            return
        if not self.token:
            raise ConfigError(
                f"refusing to serve on {self.host}: binding beyond loopback needs a bearer "
                "token (--http-token, or SHOAL_HTTP_TOKEN)"
            )
        size = len(self.token.encode())
        if size < MIN_TOKEN_BYTES:
            raise ConfigError(
                f"refusing to serve on {self.host}: the bearer token is {size} bytes, at "
                f"least {MIN_TOKEN_BYTES} are needed beyond loopback (e.g. the output of "
                "'openssl rand -hex 32')"
            )


class ServiceHandle:
    """A running service: its address, and ``stop()``."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, handle: WorkerHandle, url: str
    ) -> None:
        self._server = server
        self._thread = thread
        self.worker_handle = handle
        self.url = url

    def __repr__(self) -> str:
        return f"ServiceHandle(url={self.url!r})"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close live taps, stop accepting and wait for the server thread."""
        self.worker_handle.close()
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout_s)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


@runtime_checkable
class RunsAWorker(Protocol):
    """What runs a worker (``runtime.runner.KafkaRunner``): the worker and its id."""

    @property
    def worker(self) -> ServedWorker:
        """The worker it runs."""
        ...

    @property
    def worker_id(self) -> str:
        """The worker's id (the ``worker`` label of its metrics)."""
        ...


def _worker_of(runner_or_worker: RunsAWorker | ServedWorker) -> tuple[ServedWorker, str]:
    """The worker to serve, and its id (``""`` for a bare worker)."""
    if isinstance(runner_or_worker, RunsAWorker):
        return runner_or_worker.worker, runner_or_worker.worker_id
    if isinstance(runner_or_worker, ServedWorker):
        return runner_or_worker, ""
    raise ConfigError(
        f"cannot serve {type(runner_or_worker).__name__}: expected a runner or a worker"
    )


def start_service(
    runner_or_worker: RunsAWorker | ServedWorker,
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    *,
    registry: CollectorRegistry | None = None,
    group: str | None = None,
    keepalive_s: float = 15.0,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
    start_timeout_s: float = 10.0,
) -> ServiceHandle:
    """Start the HTTP service of a worker (or of a ``KafkaRunner``'s worker).

    Args:
        runner_or_worker: a ``KafkaRunner`` or a ``Worker``; its loop must run for
            metrics, health and state to answer (they are read between batches).
        host: address to bind; anything but loopback needs ``token``.
        port: port to bind; 0 picks a free one (see the handle's ``url``).
        token: bearer token every endpoint but ``/health`` requires.
        registry: the Prometheus registry to use (default: a new one).
        group: the job's consumer group, named by ``/status`` (default: the job's name).
        keepalive_s: quiet time after which SSE streams send a keepalive comment.
        idle_timeout_s: a tap whose reader takes nothing this long is disconnected.
        start_timeout_s: how long to wait for the server to start.

    Raises:
        ConfigError: a non-loopback host without a token (or with one shorter than
            :data:`MIN_TOKEN_BYTES`), or the address is taken.
    """
    config = ServiceConfig(
        host=host, port=port, token=token, keepalive_s=keepalive_s, idle_timeout_s=idle_timeout_s
    )
    worker, worker_id = _worker_of(runner_or_worker)
    handle = WorkerHandle(worker, worker_id=worker_id, group=group)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        register_standard(registry)  # process, platform and GC families
    app = make_app(
        handle,
        registry,
        token=config.token,
        keepalive_s=config.keepalive_s,
        idle_timeout_s=config.idle_timeout_s,
    )
    sock = _bind(config.host, config.port)
    bound_host, bound_port = sock.getsockname()[:2]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="shoal-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ConfigError(f"the HTTP service on {config.host}:{bound_port} did not start")
        time.sleep(0.01)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    log.info("serving %s on %s", handle.job_name, url)
    return ServiceHandle(server, thread, handle, url)
