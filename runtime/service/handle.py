"""The service's view of a running worker: consistent snapshots, state reads and taps.

State stores and the worker's bookkeeping belong to the worker thread, so every
read goes through ``worker.call`` and runs between two batches; that queue is
bounded (a full one answers 503 at once) and a call nobody waits for any more is
dropped unrun (see :mod:`runtime.engine.calls`). State reads are also bounded here:
at most :attr:`WorkerHandle.max_state_queries` wait at once, each key is at most
:data:`MAX_KEY_BYTES` and each answer at most :data:`MAX_ENTRIES` entries. A snapshot is
shared by the requests that arrive within :attr:`WorkerHandle.max_age_s` (a scrape,
the page's topology poll and a health check cost one call together). When the
worker does not answer within the timeout, the last snapshot is served marked
``responsive=False`` and ``/health`` reports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from runtime.api.errors import ConfigError, WorkerBusy
from runtime.api.graph import SinkNode, SourceNode
from runtime.api.job import Job
from runtime.engine.context import Tap
from runtime.engine.queryable import MAX_ENTRIES, StateLookup
from runtime.engine.stats import WorkerStats
from runtime.engine.watermarks import NO_WATERMARK
from runtime.service.jsonable import to_jsonable
from runtime.service.taps import TapHub

__all__ = [
    "MAX_ENTRIES",
    "MAX_KEY_BYTES",
    "NO_WATERMARK",
    "ServedWorker",
    "Snapshot",
    "StateAnswer",
    "StepInfo",
    "WorkerHandle",
    "key_candidates",
]

#: Longest key ``/state`` looks up, in UTF-8 bytes (longer: 400).
MAX_KEY_BYTES = 1024
# Decimal integers that fit a state key (at most 255 bytes): ASCII digits only.
_INT_KEY = re.compile(r"-?[0-9]{1,600}")

#: Node kinds that keep keyed state (queryable through ``/state``).
STATEFUL_KINDS = frozenset({"window", "process", "join", "table"})


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A step of the job graph, as the topology view shows it."""

    name: str
    kind: str
    parents: tuple[str, ...]
    schema: str | None

    @property
    def stateful(self) -> bool:
        """Whether the step keeps keyed state."""
        return self.kind in STATEFUL_KINDS


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the worker reported at ``time_ms`` (wall clock, epoch ms): its own
    :class:`~runtime.engine.stats.WorkerStats`, and whether it answered at all."""

    time_ms: int
    responsive: bool = True
    stats: WorkerStats = field(default_factory=WorkerStats)


@runtime_checkable
class ServedWorker(Protocol):
    """The worker as the service sees it (``runtime.engine.worker.Worker`` is one)."""

    @property
    def job(self) -> Job:
        """The job it runs."""
        ...

    @property
    def taps(self) -> dict[str, Tap]:
        """Step -> live tap; the service adds and removes taps in place."""
        ...

    @property
    def failed(self) -> bool:
        """Whether its loop failed."""
        ...

    def call(
        self, fn: Callable[[ServedWorker], Any], deadline: float | None = None
    ) -> concurrent.futures.Future[Any]:
        """Run ``fn(worker)`` on the worker thread between two batches."""
        ...

    def snapshot(self) -> WorkerStats:
        """What the worker reports about itself (on the worker thread)."""
        ...

    def query_state(self, step: str, key: Any, limit: int = MAX_ENTRIES) -> StateLookup:
        """Entries of a stateful step for ``key`` (on the worker thread)."""
        ...


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def take_snapshot(worker: ServedWorker) -> Snapshot:
    """Read everything the service reports; runs on the worker thread."""
    return Snapshot(time_ms=_wall_ms(), stats=worker.snapshot())


@dataclass(frozen=True, slots=True)
class StateAnswer:
    """The JSON-safe entries of one key, and whether more than :data:`MAX_ENTRIES` exist."""

    entries: list[dict[str, Any]]
    truncated: bool = False


def key_candidates(text: str) -> list[Any]:
    """The state keys a key in a URL may stand for.

    ``u-17`` is the string; ``title|tv|DE|cdn-a`` is also the tuple of its parts (how
    tuple keys are written as message keys); ``42`` is also the int (ASCII digits only:
    ``²`` is a digit to Python but no number).

    Raises:
        ConfigError: the key is longer than :data:`MAX_KEY_BYTES` or not valid text.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError("the key is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise ConfigError(f"the key is {size} bytes; at most {MAX_KEY_BYTES} are looked up")
    out: list[Any] = [text]
    if "|" in text:
        out.append(tuple(text.split("|")))
    if _INT_KEY.fullmatch(text):
        out.append(int(text))
    return out


def _entry(kind: str, tid: int, state_key: Any, value: Any) -> dict[str, Any]:
    if (
        kind == "process"
        and isinstance(state_key, tuple)
        and len(state_key) == 2
        and isinstance(state_key[1], str)
        and isinstance(value, tuple)
        and len(value) == 2
    ):
        return {
            "task": tid,
            "name": state_key[1],
            "value": to_jsonable(value[0]),
            "written_ms": value[1],
        }
    if (
        kind == "window"
        and isinstance(state_key, tuple)
        and len(state_key) == 3
        and isinstance(state_key[1], int)
        and isinstance(state_key[2], int)
    ):
        return {
            "task": tid,
            "window_start_ms": state_key[1],
            "window_end_ms": state_key[2],
            "value": to_jsonable(value),
        }
    return {"task": tid, "state_key": to_jsonable(state_key), "value": to_jsonable(value)}


class WorkerHandle:
    """Thread-safe access to one worker for the HTTP service.

    Args:
        worker: the running worker.
        timeout_s: how long a request waits for the worker thread.
        max_age_s: snapshots younger than this are shared between requests.
        worker_id: the worker's id (the ``worker`` label of its metrics).
        group: the job's consumer group (default: the job's name), named by ``/status``.
        max_checkpoint_age_s: ``/health`` fails when the last checkpoint pass is older.
        max_state_queries: state reads waiting for the worker at once; more are
            refused (503), which keeps room in the worker's call queue for snapshots.
        taps: the hub of live taps (default: one over the worker's taps).
    """

    def __init__(
        self,
        worker: ServedWorker,
        *,
        worker_id: str = "",
        group: str | None = None,
        timeout_s: float = 3.0,
        max_age_s: float = 0.25,
        max_checkpoint_age_s: float = 60.0,
        max_state_queries: int = 16,
        taps: TapHub | None = None,
    ) -> None:
        self.worker = worker
        self.job_name: str = worker.job.name
        self.worker_id = worker_id
        self.group: str = group or self.job_name
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.max_checkpoint_age_s = max_checkpoint_age_s
        self.steps: list[StepInfo] = [
            StepInfo(
                name=n.name,
                kind=n.kind,
                parents=tuple(p.name for p in n.parents),
                schema=(n.schema or None) if isinstance(n, SourceNode | SinkNode) else None,
            )
            for n in worker.job.nodes
        ]
        self._by_name = {s.name: s for s in self.steps}
        self.taps = taps if taps is not None else TapHub(worker.taps, [s.name for s in self.steps])
        self.max_state_queries = max_state_queries
        self._state_queries = 0
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._last_at = 0.0
        self._pending: concurrent.futures.Future[Snapshot] | None = None
        self.started_ms = _wall_ms()

    def step(self, name: str) -> StepInfo | None:
        """The step called ``name``, if the job has it."""
        return self._by_name.get(name)

    def snapshot(self) -> Snapshot:
        """A recent snapshot (shared when younger than ``max_age_s``)."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last_at < self.max_age_s:
                return self._last
            pending = self._pending
            if pending is None or pending.done():
                try:
                    pending = self._pending = self.worker.call(
                        take_snapshot, time.monotonic() + self.timeout_s
                    )
                except WorkerBusy:
                    return self._stale()
        try:
            snap = pending.result(timeout=self.timeout_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return self._stale()
        with self._lock:
            if self._last is None or snap.time_ms >= self._last.time_ms:
                self._last, self._last_at = snap, time.monotonic()
        return snap

    def _stale(self) -> Snapshot:
        last = self._last
        if last is None:
            return Snapshot(
                time_ms=_wall_ms(),
                responsive=False,
                stats=WorkerStats(failed=bool(self.worker.failed)),
            )
        stats = replace(last.stats, failed=bool(self.worker.failed))
        return replace(last, responsive=False, stats=stats)

    async def query_state(self, step: str, key: str) -> StateAnswer | None:
        """The state entries of ``step`` for ``key``, as JSON-safe dicts (event loop side).

        The request waits without holding a thread; a request that gives up cancels
        its call, which the worker then drops unrun.

        Returns:
            ``None`` when the worker did not answer in time.

        Raises:
            ConfigError: the key cannot be looked up (see :func:`key_candidates`).
            WorkerBusy: too many state reads or calls are pending.
        """
        info = self._by_name[step]
        candidates = key_candidates(key)

        def read(worker: ServedWorker) -> StateAnswer:
            # Runs on the worker thread: values are copied to JSON before they leave it.
            found = StateLookup()
            for candidate in candidates:
                found = worker.query_state(step, candidate)
                if found.entries:
                    break
            return StateAnswer(
                [_entry(info.kind, tid, k, v) for tid, k, v in found.entries], found.truncated
            )

        with self._lock:
            if self._state_queries >= self.max_state_queries:
                raise WorkerBusy(
                    f"{self.max_state_queries} state reads are already waiting; try again"
                )
            self._state_queries += 1
        try:
            future = self.worker.call(read, time.monotonic() + self.timeout_s)
        except BaseException:
            self._release_state_query(None)
            raise
        future.add_done_callback(self._release_state_query)
        try:
            answer: StateAnswer = await asyncio.wait_for(
                asyncio.wrap_future(future), self.timeout_s
            )
        except TimeoutError:
            future.cancel()
            return None
        except asyncio.CancelledError:
            future.cancel()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the request itself is going away
            return None  # the worker dropped the call: its deadline had passed
        return answer

    def _release_state_query(self, _: object) -> None:
        with self._lock:
            self._state_queries -= 1

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the worker is healthy, and the details ``/health`` shows."""
        snap = self.snapshot()
        now = _wall_ms()
        age = (
            None
            if snap.stats.last_checkpoint_ms is None
            else (now - snap.stats.last_checkpoint_ms) / 1000
        )
        problems = []
        if snap.stats.failed:
            problems.append("the worker loop failed")
        if not snap.responsive:
            problems.append(f"the worker did not answer within {self.timeout_s:g}s")
        if age is not None and age > self.max_checkpoint_age_s:
            problems.append(f"no checkpoint for {age:.0f}s")
        body = {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
            "job": self.job_name,
            "tasks": [
                {
                    "task": tid,
                    "watermark_ms": wm if wm != NO_WATERMARK else None,
                    "partitions": [f"{t}[{p}]" for t, p in snap.stats.partitions.get(tid, [])],
                }
                for tid, wm in sorted(snap.stats.watermarks.items())
            ],
            "checkpoints": snap.stats.checkpoints,
            "last_checkpoint_age_s": None if age is None else round(age, 3),
            "records_read": snap.stats.records_read,
            "uptime_s": round((now - self.started_ms) / 1000, 1),
        }
        return not problems, body

    def close(self) -> None:
        """End every live tap."""
        self.taps.close()
