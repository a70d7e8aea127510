"""Redis sink: latest values as hashes, top-N as sorted sets, pipelined transactions.

A flush turns the queued records into one replacement per hash key (the latest
record of each key wins) and sends them in chunks; each chunk is one pipelined
``MULTI``/``EXEC`` transaction that, per record, deletes and rewrites the hash
(``DEL``, ``HSET``, ``EXPIRE``) and its sorted set (``DEL``, ``ZADD``, ``EXPIRE``).
Redis runs a transaction without interleaving other clients' commands, so a reader
sees a user's old top titles or the new ones, never a half-written set.

Replays never duplicate anything: a record replaces the keys its key fields name,
so writing it again after a crash (the worker flushes before it commits a
checkpoint) leaves Redis as writing it once.

Failures: connection errors, timeouts, a server still loading its data or a
read-only replica are transient: the sink drops its connections, waits with
exponential backoff (:class:`~connectors.redis.config.Backoff`), reconnects and
sends the chunk again. Other errors are permanent. When it gives up, ``flush``
raises :class:`ConnectorError` and keeps every queued record, so the worker does
not commit past them.

Durability is the server's: a flush returns when Redis has applied the writes, and
they survive a restart of Redis when it runs with ``appendonly yes`` (the test
server also uses ``appendfsync always``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.redis.config import HashWrite, RedisConfig
from runtime.api.errors import ConnectorError
from runtime.api.io import Undelivered
from runtime.api.redact import redact_text

__all__ = ["RedisSink"]

log = logging.getLogger(__name__)

_TRANSIENT: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # refused, reset, and BusyLoadingError (still loading)
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a failover made our server a replica for a moment
    redis.exceptions.TryAgainError,
)


class RedisSink:
    """An ``ExternalSink`` that writes records as Redis hashes and sorted sets.

    Args:
        config: server, key layout and retry budget.
        sleep: waits between attempts (injectable for tests).
        rng: jitter source.

    Attributes:
        keys_written: hashes replaced by successful transactions.
        retries: attempts that failed transiently and were retried.
    """

    def __init__(
        self,
        config: RedisConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._queue: list[Any] = []
        self._client: redis.Redis | None = None
        self.keys_written = 0
        self.retries = 0

    def __repr__(self) -> str:
        return f"RedisSink({self.config.where!r}, queued={len(self._queue)})"

    def write(self, records: Sequence[tuple[Any, Any, int]]) -> None:
        """Queue ``(key, value, event_time_ms)`` records; the value is what is stored."""
        self._queue.extend(value for _, value, _ in records)

    def flush(self) -> None:
        """Write every queued record, retrying transient failures with backoff.

        Raises:
            ConnectorError: a chunk could not be written within the retry budget or
                Redis refused it; every queued record stays queued.
        """
        if not self._queue:
            return
        writes = self.config.layout.plan(self._queue)
        step = self.config.chunk
        for start in range(0, len(writes), step):
            self._send(writes[start : start + step])
        self._queue.clear()

    def drain_undelivered(self) -> list[Undelivered]:
        """Nothing: this sink keeps what it could not write queued and raises instead."""
        return []

    def close(self) -> None:
        """Close the connections (queued records are not written)."""
        self._disconnect()

    # -- internals ----------------------------------------------------------------------
    def _send(self, chunk: list[HashWrite]) -> None:
        backoff = self.config.backoff
        last = ""
        for attempt in range(1, backoff.max_attempts + 1):
            try:
                self._transaction(chunk)
            except _TRANSIENT as exc:
                # redis-py errors may echo the URL, password included
                last = redact_text(f"{type(exc).__name__}: {exc}")
                self._disconnect()
            except redis.RedisError as exc:
                raise ConnectorError(
                    f"{self.config.where}: write of {len(chunk)} keys refused: "
                    + redact_text(f"{type(exc).__name__}: {exc}")
                ) from exc
            else:
                self.keys_written += len(chunk)
                return
            if attempt < backoff.max_attempts:
                self.retries += 1
                wait = backoff.delay_s(attempt, self._rng)
                log.warning(
                    "%s: write attempt %d failed (%s); retrying in %.2fs",
                    self.config.where, attempt, last, wait,
                )  # fmt: skip
                self._sleep(wait)
        raise ConnectorError(
            f"{self.config.where}: {len(chunk)} keys not written after "
            f"{backoff.max_attempts} attempts; last error: {last}"
        )

    def _transaction(self, chunk: list[HashWrite]) -> None:
        ttl = self.config.layout.ttl_s
        pipe = self._connection().pipeline(transaction=True)
        for w in chunk:
            pipe.delete(w.key)
            if w.fields:
                # the client's stubs want a Mapping of its own key type (invariant in keys)
                fields: dict[Any, Any] = dict(w.fields)
                pipe.hset(w.key, mapping=fields)
                if ttl:
                    pipe.expire(w.key, ttl)
            if w.members is not None:
                pipe.delete(w.top_key)
                if w.members:
                    pipe.zadd(w.top_key, w.members)
                    if ttl:
                        pipe.expire(w.top_key, ttl)
        pipe.execute()

    def _connection(self) -> redis.Redis:
        if self._client is None:
            timeout = self.config.timeout_s
            # No retries inside redis-py: this sink's backoff decides, and counts them.
            self._client = redis.Redis.from_url(
                self.config.url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
