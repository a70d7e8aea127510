"""Calls from other threads into the worker thread, bounded so that none can hold the loop.

State stores and the worker's bookkeeping belong to the worker thread; the HTTP
service reads them by handing a function to :meth:`CallQueue.submit`, which the
worker runs between two batches (:meth:`CallQueue.serve`). Three bounds keep a
flood of requests from stalling the job:

* **pending:** at most ``max_pending`` calls wait; one more is refused at once with
  :class:`~runtime.api.errors.WorkerBusy` (the service answers 503) instead of
  queueing behind the others;
* **per loop iteration:** ``serve`` runs at most ``per_step`` calls and stops early
  once ``budget_s`` of wall time is spent, so records keep flowing between calls;
* **deadlines:** a call carries the monotonic time after which nobody waits for its
  answer; one that is past it, or whose future was cancelled, is dropped unrun.

Each call is expected to be cheap (a snapshot of counters, a bounded key lookup):
the budget is checked between calls, not inside one.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from runtime.api.errors import WorkerBusy

__all__ = ["CallLimits", "CallQueue", "CallStats"]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Bounds of the calls into one worker.

    Attributes:
        max_pending: calls waiting at once; more are refused.
        per_step: calls run per loop iteration at most.
        budget_s: wall time per loop iteration after which no further call starts.
    """

    max_pending: int = 64
    per_step: int = 8
    budget_s: float = 0.02


@dataclass(slots=True)
class CallStats:
    """What happened to calls so far (read by metrics and tests)."""

    served: int = 0
    refused: int = 0
    expired: int = 0
    failed: int = 0


@dataclass(slots=True)
class _Call(Generic[S]):
    fn: Callable[[S], Any]
    future: Future[Any]
    deadline: float | None


class CallQueue(Generic[S]):
    """A bounded queue of calls served on the thread that owns ``S`` (the worker).

    Args:
        limits: the bounds (see :class:`CallLimits`).
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self, limits: CallLimits = CallLimits(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.stats = CallStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: collections.deque[_Call[S]] = collections.deque()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, fn: Callable[[S], Any], deadline: float | None = None) -> Future[Any]:
        """Queue ``fn`` to run on the owning thread (thread-safe).

        Args:
            fn: called with the owner; its result (or exception) completes the future.
            deadline: ``time.monotonic()`` after which the call is dropped unrun
                (``None``: it always runs).

        Returns:
            The future of the call's result.

        Raises:
            WorkerBusy: ``max_pending`` calls are already waiting.
        """
        call: _Call[S] = _Call(fn, Future(), deadline)
        with self._lock:
            if len(self._pending) >= self.limits.max_pending:
                self.stats.refused += 1
                raise WorkerBusy(
                    f"the worker has {self.limits.max_pending} calls pending; try again"
                )
            self._pending.append(call)
        return call.future

    def serve(self, owner: S) -> int:
        """Run the calls due now, within this iteration's bounds (owning thread only).

        Returns:
            How many calls ran.
        """
        limits = self.limits
        clock = self._clock
        started = clock()
        ran = 0
        while ran < limits.per_step:
            with self._lock:
                if not self._pending:
                    break
                call = self._pending.popleft()
            now = clock()
            if call.deadline is not None and now > call.deadline:
                self.stats.expired += 1
                call.future.cancel()
                continue
            if not call.future.set_running_or_notify_cancel():
                self.stats.expired += 1  # the caller gave up and cancelled it
                continue
            ran += 1
            try:
                call.future.set_result(call.fn(owner))
                self.stats.served += 1
            except Exception as exc:
                self.stats.failed += 1
                call.future.set_exception(exc)
            if clock() - started >= limits.budget_s:
                break
        return ran
