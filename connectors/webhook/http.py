"""HTTP POSTs with one deadline per attempt and a cap on the answer read.

The one place ``httpcore2`` (the transport under ``httpx2``) is imported. A timeout
per socket read is not enough for a webhook: a receiver that trickles one byte a
second never lets a read time out and would hold the worker forever. So every
attempt has a deadline for the whole exchange (connect, TLS, send, answer): the
network streams below cut each read and write to the time left, and raise a
timeout once none is left. Only the first ``max_body`` bytes of an answer are read;
the connection is then dropped, so a receiver that answers with an endless body is
cut too.

Not thread-safe: one :class:`DeadlinePoster` serves one thread (the worker's).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore2

from runtime.api.errors import ConnectorError

__all__ = ["DeadlinePoster", "Reply"]

_WRITE_SLICE = 16 * 1024  # bytes per socket write, so a slow reader cannot stretch one


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status, headers (lower-case names) and the first bytes of the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool


class _Deadline:
    """The monotonic time the current attempt must end by (``None``: no attempt running)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.at: float | None = None

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The socket timeout to use: ``timeout`` cut to the time left; raise if none."""
        if self.at is None:
            return timeout
        left = self.at - self.clock()
        if left <= 0:
            raise error("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        while view:
            chunk = bytes(view[:_WRITE_SLICE])
            self._inner.write(chunk, self._deadline.left(timeout, httpcore2.WriteTimeout))
            view = view[len(chunk) :]

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        left = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        inner = self._inner.start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore2.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, left, socket_options), self._deadline
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlinePoster:
    """POSTs through a connection pool, each attempt bounded by a deadline.

    Args:
        deadline_s: the longest one attempt may take, from connect to the last byte read.
        max_body: at most this many bytes of an answer are read.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        deadline_s: float,
        max_body: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline_s = deadline_s
        self.max_body = max_body
        self._deadline = _Deadline(clock)
        # Endpoints and proxies come from config, never from the process environment.
        self._pool = httpcore2.ConnectionPool(
            network_backend=_DeadlineBackend(self._deadline),
            max_connections=4,
            retries=0,
        )

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """One attempt: send ``body``, read the status and at most ``max_body`` bytes.

        Raises:
            ConnectorError: the connection failed, the deadline passed or the answer
                was not HTTP (the message names the kind of failure, e.g. ``ReadTimeout``).
        """
        clock = self._deadline.clock
        self._deadline.at = clock() + self.deadline_s
        extensions = {
            "timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.deadline_s)
        }
        try:
            with self._pool.stream(
                "POST",
                url,
                headers=[*headers.items(), ("Content-Length", str(len(body)))],
                content=body,
                extensions=extensions,
            ) as response:
                got = bytearray()
                truncated = False
                for chunk in response.iter_stream():
                    got += chunk
                    if len(got) > self.max_body:
                        # Leaving the block early closes the connection: the rest is never read.
                        truncated = True
                        break
                return Reply(
                    status=response.status,
                    headers={
                        k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in response.headers
                    },
                    body=bytes(got[: self.max_body]),
                    truncated=truncated,
                )
        except (httpcore2.TimeoutException, httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
            detail = str(exc) or "no detail"
            raise ConnectorError(f"{type(exc).__name__}: {detail}") from exc
        except httpcore2.UnsupportedProtocol as exc:
            raise ConnectorError(f"UnsupportedProtocol: {exc}") from exc
        finally:
            self._deadline.at = None

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()
