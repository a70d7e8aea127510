"""Server-Sent Events of a live tap: the wire format and the streaming response.

Each kept record is one ``message`` event whose data is
``{"key": ..., "value": ..., "event_time_ms": ...}``. Other events:

* ``open`` first: the job, the step, the filter and sampling in force, and how many
  of the records that follow are ``replayed`` from the step's recent history;
* ``dropped`` when the subscriber's queue overflowed: ``{"dropped": total}``;
* ``end`` when ``limit`` records were sent, just before the stream closes.

A comment line (``: keepalive``) goes out when nothing happened for
``keepalive_s``, so proxies keep the connection and a gone client is noticed.
A client that accepts nothing for ``idle_timeout_s`` (a write stays blocked because
it never reads) is disconnected: its tap ends and its slot is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from runtime.service.jsonable import dumps
from runtime.service.taps import Subscription, TapHub

__all__ = ["IDLE_TIMEOUT_S", "SSEResponse", "event", "record_event", "stream"]

log = logging.getLogger("shoal.service.sse")

_BATCH = 500
#: Default time a tap's reader may accept nothing before it is disconnected.
IDLE_TIMEOUT_S = 30.0


def event(name: str | None, data: Any) -> str:
    """One SSE event (``name`` ``None`` is the default ``message`` event)."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {dumps(data)}\n\n"


def record_event(key: Any, value: Any, event_time_ms: int) -> str:
    """The event of one tapped record."""
    return (
        f'data: {{"key":{dumps(key)},"value":{dumps(value)},"event_time_ms":{event_time_ms}}}\n\n'
    )


async def stream(
    hub: TapHub,
    sub: Subscription,
    opening: dict[str, Any],
    limit: int | None,
    keepalive_s: float,
) -> AsyncIterator[str]:
    """The text of the SSE stream of ``sub`` until its limit, a close, or the hub stops."""
    yield "retry: 3000\n" + event("open", opening)
    sent = 0
    reported_drops = 0
    try:
        while True:
            records = sub.drain(_BATCH)
            if records:
                if limit is not None:
                    records = records[: limit - sent]
                sent += len(records)
                yield "".join(record_event(k, v, t) for k, v, t in records)
                if limit is not None and sent >= limit:
                    yield event("end", {"sent": sent, "dropped": sub.dropped})
                    return
                continue  # more may be queued
            if sub.dropped != reported_drops:
                reported_drops = sub.dropped
                yield event("dropped", {"dropped": reported_drops})
            if sub.closed:
                return
            if not await sub.wait(keepalive_s):
                yield ": keepalive\n\n"
    finally:
        hub.unsubscribe(sub)


class SSEResponse:
    """An ASGI response that streams a tap and notices a client that went away.

    A task waits for ``http.disconnect`` and closes the subscription, which wakes the
    stream so it ends and unsubscribes at once, whatever the server's ASGI version.
    A write that the client does not take within ``idle_timeout_s`` ends the
    response unfinished (the server then closes the connection).

    Args:
        body: the stream's text (see :func:`stream`).
        sub: the subscription it reads.
        hub: the hub that counts idle disconnects.
        idle_timeout_s: how long one write may wait for the client.
    """

    def __init__(
        self,
        body: AsyncIterator[str],
        sub: Subscription,
        hub: TapHub | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.body = body
        self.sub = sub
        self.hub = hub
        self.idle_timeout_s = idle_timeout_s

    async def _send(self, send: Any, message: dict[str, Any]) -> None:
        await asyncio.wait_for(send(message), self.idle_timeout_s)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.sub.close()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await self._send(
                send,
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                },
            )
            async for chunk in self.body:
                await self._send(
                    send, {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                )
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            # The client took nothing for the idle timeout: end its tap now.
            self.sub.close()
            if self.hub is not None:
                self.hub.idle_disconnects += 1
            log.info(
                "tap of step %r: the client read nothing for %gs; disconnected",
                self.sub.step,
                self.idle_timeout_s,
            )
        except OSError:
            pass  # the client went away mid-write
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if isinstance(self.body, AsyncGenerator):
                await self.body.aclose()
            if self.hub is not None:
                self.hub.unsubscribe(self.sub)  # also when the body never started
