"""Live taps: fan a step's output batches out to SSE subscribers without slowing the job.

The engine calls the tap of a step (``worker.taps[step]``) on the worker thread with
every output batch. The hub installs one callback per step that has subscribers and
removes it when the last one leaves, so untapped steps cost nothing.

On the worker thread the callback only hands the batch (a shallow copy) to the hub's
queue: no filter runs there. A pump thread takes batches from that queue and, per
subscriber, filters and samples them into the subscriber's own bounded queue. The
job's cost of any number of taps is one list copy per batch; the pump's own share of
the interpreter is bounded too (it rests ``1/max_share - 1`` times as long as it
worked), so costly filters can take at most that share. What cannot keep up is
thinned, never waited for:

* batches beyond ``max_pending_records`` waiting for the pump are dropped, oldest
  first, and counted as dropped for every subscriber of their step;
* a subscriber that reads slower than records come loses its oldest queued
  records (counted too; the SSE stream reports the count);
* a reader that accepts nothing for the idle timeout is disconnected (see
  :mod:`runtime.service.sse`).

Subscriptions are bounded in total (``max_subscribers``) and per client address
(``max_per_client``). The subscriber side runs on the service's event loop and is
woken through ``loop.call_soon_threadsafe`` only when it is waiting.

A few low-volume steps (the page's alerts and sessions, see ``make_app``) also keep
their last records (``keep_history``), so a page that opens now can show what happened
just before: a subscription asks for them with ``recent``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

from runtime.api.errors import ConfigError, ShoalError
from runtime.service.filters import Predicate
from runtime.service.sampling import Sampler

__all__ = ["Subscription", "TapHub", "TooManyFromClient", "TooManySubscribers"]

log = logging.getLogger("shoal.service.taps")

TapRecord = tuple[Any, Any, int]
"""What a subscriber receives: ``(key, value, event_time_ms)``."""


class TooManySubscribers(ShoalError):
    """The hub already serves its maximum number of subscribers (the service answers 503)."""


class TooManyFromClient(TooManySubscribers):
    """One client address already holds its maximum of taps (the service answers 429)."""


class Subscription:
    """One subscriber of one step: a bounded queue filled on the worker thread.

    Args:
        step: the tapped step.
        predicate: the filter (``None``: every record).
        sampler: thins the matching records.
        limit: records after which the subscription stops accepting (``None``: no limit).
        capacity: queued records kept at most; older ones are dropped beyond it.
        loop: the event loop the reader waits on.
    """

    def __init__(
        self,
        step: str,
        predicate: Predicate | None,
        sampler: Sampler,
        limit: int | None,
        capacity: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.step = step
        self._predicate = predicate
        self._sampler = sampler
        self._limit = limit
        self._queue: deque[TapRecord] = deque(maxlen=capacity)
        self._capacity = capacity
        self._loop = loop
        self._event = asyncio.Event()
        self._waiting = False
        self.accepted = 0  # records queued so far (worker thread writes)
        self.dropped = 0  # records pushed out of a full queue (worker thread writes)
        self.errors = 0
        self.replayed = 0  # records queued from the step's history before going live
        self.closed = False
        self.client: str | None = None

    def preload(self, records: list[TapRecord], most: int) -> int:
        """Queue up to ``most`` of the newest matching ``records`` (before it goes live)."""
        keep = self._predicate
        matching = [r for r in records if keep is None or keep(*r)]
        kept = [r for r in matching if self._sampler.keep()][-most:] if most > 0 else []
        if self._limit is not None:
            kept = kept[: self._limit]
        self._queue.extend(kept)
        self.accepted += len(kept)
        return len(kept)

    # -- pump thread --
    def offer(self, batch: list[Any]) -> None:
        """Filter, sample and queue a batch (called on the hub's pump thread; never raises)."""
        if self.closed:
            return
        limit = self._limit
        if limit is not None and self.accepted >= limit:
            return
        keep = self._predicate
        sample = self._sampler.keep
        queue = self._queue
        added = 0
        try:
            for k, v, t, _ in batch:
                if keep is not None and not keep(k, v, t):
                    continue
                if not sample():
                    continue
                if len(queue) == self._capacity:
                    self.dropped += 1
                queue.append((k, v, t))
                added += 1
                if limit is not None and self.accepted + added >= limit:
                    break
        except Exception:  # one broken tap must not stop the others
            self.errors += 1
            log.exception("tap of step %r failed on a batch", self.step)
        if added:
            self.accepted += added
            self._wake()

    def _wake(self) -> None:
        if self._waiting:
            self._waiting = False
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # the loop is closed: the service is stopping
                self.closed = True

    # -- event loop --
    def drain(self, most: int) -> list[TapRecord]:
        """Take up to ``most`` queued records, oldest first."""
        out: list[TapRecord] = []
        queue = self._queue
        while queue and len(out) < most:
            try:
                out.append(queue.popleft())
            except IndexError:
                break
        return out

    @property
    def exhausted(self) -> bool:
        """Whether the limit was reached (nothing more will be queued)."""
        return self._limit is not None and self.accepted >= self._limit

    async def wait(self, timeout: float) -> bool:
        """Wait until records are queued or the subscription closes (True), or ``timeout``."""
        self._event.clear()
        self._waiting = True
        if self._queue or self.closed:
            self._waiting = False
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._waiting = False
        return True

    def lose(self, records: int) -> None:
        """Count ``records`` that never reached this subscriber (the pump fell behind)."""
        if records and not self.closed:
            self.dropped += records

    def close(self) -> None:
        """Stop accepting records and wake the reader (thread-safe)."""
        self.closed = True
        self._waiting = True
        self._wake()


class TapHub:
    """Subscriptions per step, the callbacks that feed them and the pump that filters.

    Args:
        taps: the worker's ``taps`` mapping (step -> callback), changed in place; the
            engine reads it with single dict look-ups, which are atomic.
        steps: names of the steps that can be tapped.
        max_subscribers: subscriptions served at once, over all steps.
        max_per_client: subscriptions one client address may hold at once.
        capacity: queue size of each subscription.
        max_pending_records: records of batches waiting for the pump at most; older
            batches are dropped beyond it.
        max_share: the part of its time the pump may work (0 < share <= 1).
        background: run the pump on its own thread (``False``: the owner calls
            :meth:`pump` itself, as tests do).

    Raises:
        ConfigError: ``max_share`` is not in (0, 1].
    """

    def __init__(
        self,
        taps: MutableMapping[str, Callable[[str, list[Any]], None]],
        steps: list[str],
        *,
        max_subscribers: int = 64,
        max_per_client: int = 8,
        capacity: int = 10_000,
        max_pending_records: int = 50_000,
        max_share: float = 0.25,
        background: bool = True,
    ) -> None:
        if not 0.0 < max_share <= 1.0:
            raise ConfigError(f"taps: max_share must be in (0, 1], got {max_share}")
        self._taps = taps
        self.steps = list(steps)
        self.max_subscribers = max_subscribers
        self.max_per_client = max_per_client
        self.capacity = capacity
        self.max_pending_records = max_pending_records
        self.max_share = max_share
        self._background = background
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[Subscription, ...]] = {}
        self._clients: dict[str, int] = {}
        self._closed = False
        # Batches handed over by the worker thread, waiting for the pump.
        self._pending: deque[tuple[str, list[Any]]] = deque()
        self._pending_records = 0
        self._overflow: dict[str, int] = {}
        self._wakeup = threading.Condition(threading.Lock())
        self._pump_thread: threading.Thread | None = None
        # Steps that keep their last records, and the lock that orders their history
        # against new subscriptions (no record both replayed and sent live).
        self._history: dict[str, deque[TapRecord]] = {}
        self._history_keep: dict[str, Predicate | None] = {}
        self._history_lock = threading.Lock()
        # Totals of subscriptions that ended, per step (for metrics).
        self.ended_sent: dict[str, int] = {}
        self.ended_dropped: dict[str, int] = {}
        #: Records of batches dropped before the pump reached them, in total.
        self.overflow_records = 0
        #: Batches the pump has filtered, in total.
        self.pumped_batches = 0
        #: Taps disconnected because their reader accepted nothing for the idle timeout.
        self.idle_disconnects = 0

    def keep_history(self, step: str, size: int, keep: Predicate | None = None) -> None:
        """Keep the last ``size`` records of ``step`` for subscribers that ask for them.

        Args:
            step: the step.
            size: records kept at most (the oldest go first).
            keep: which records are kept (default: all).

        Raises:
            KeyError: unknown step.
        """
        if step not in self.steps:
            raise KeyError(step)
        self._start_pump()
        with self._lock, self._history_lock:
            self._history[step] = deque(self._history.get(step, ()), maxlen=size)
            self._history_keep[step] = keep
            self._taps[step] = self._dispatch

    def history_size(self, step: str) -> int:
        """How many records of ``step`` are kept (0: none)."""
        hist = self._history.get(step)
        return (hist.maxlen or 0) if hist is not None else 0

    def subscribe(
        self,
        step: str,
        predicate: Predicate | None,
        sampler: Sampler,
        limit: int | None,
        loop: asyncio.AbstractEventLoop,
        recent: int = 0,
        client: str | None = None,
    ) -> Subscription:
        """Start a subscription to ``step``'s output.

        Args:
            step: the step.
            predicate: the filter.
            sampler: thins the matching records.
            limit: records after which the subscription ends.
            loop: the event loop the reader waits on.
            recent: queue up to this many of the step's kept records first (the newest
                that match); see :meth:`keep_history`.
            client: the client's address, counted against ``max_per_client``.

        Raises:
            KeyError: unknown step.
            TooManyFromClient: this client holds ``max_per_client`` taps already.
            TooManySubscribers: the hub is full (or stopping).
        """
        if step not in self.steps:
            raise KeyError(step)
        sub = Subscription(step, predicate, sampler, limit, self.capacity, loop)
        sub.client = client
        self._start_pump()
        with self._lock:
            if self._closed or sum(len(s) for s in self._subs.values()) >= self.max_subscribers:
                raise TooManySubscribers(f"at most {self.max_subscribers} live taps at once")
            if client is not None and self._clients.get(client, 0) >= self.max_per_client:
                raise TooManyFromClient(
                    f"at most {self.max_per_client} live taps per client address at once"
                )
            with self._history_lock:
                hist = self._history.get(step)
                if hist is not None and recent > 0:
                    sub.replayed = sub.preload(list(hist), recent)
                self._subs[step] = (*self._subs.get(step, ()), sub)
            if client is not None:
                self._clients[client] = self._clients.get(client, 0) + 1
            self._taps[step] = self._dispatch
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """End a subscription; the step's callback goes when its last subscriber does."""
        sub.close()
        with self._lock:
            rest = tuple(s for s in self._subs.get(sub.step, ()) if s is not sub)
            if len(rest) == len(self._subs.get(sub.step, ())):
                return
            self.ended_sent[sub.step] = self.ended_sent.get(sub.step, 0) + sub.accepted
            self.ended_dropped[sub.step] = self.ended_dropped.get(sub.step, 0) + sub.dropped
            if sub.client is not None:
                left = self._clients.get(sub.client, 0) - 1
                if left > 0:
                    self._clients[sub.client] = left
                else:
                    self._clients.pop(sub.client, None)
            if rest:
                self._subs[sub.step] = rest
            else:
                self._subs.pop(sub.step, None)
                if sub.step not in self._history:
                    self._taps.pop(sub.step, None)

    # -- worker thread --
    def _dispatch(self, step: str, batch: list[Any]) -> None:
        # The only work on the worker thread: copy the list (the engine may reuse it)
        # and queue it; the pump filters. Past the bound, the oldest batches go.
        with self._wakeup:
            self._pending.append((step, list(batch)))
            self._pending_records += len(batch)
            while self._pending_records > self.max_pending_records and len(self._pending) > 1:
                old_step, old = self._pending.popleft()
                self._pending_records -= len(old)
                self._overflow[old_step] = self._overflow.get(old_step, 0) + len(old)
            self._wakeup.notify()

    # -- pump --
    def pump(self, most: int | None = None) -> int:
        """Filter queued batches into the subscribers' queues (the pump thread's work).

        Args:
            most: batches to take at most (``None``: all queued now).

        Returns:
            How many batches were taken.
        """
        taken = 0
        while most is None or taken < most:
            with self._wakeup:
                overflow, self._overflow = self._overflow, {}
                item = self._pending.popleft() if self._pending else None
                if item is not None:
                    self._pending_records -= len(item[1])
            for step, lost in overflow.items():
                self.overflow_records += lost
                for sub in self._subs.get(step, ()):
                    sub.lose(lost)
            if item is None:
                break
            taken += 1
            self._offer(*item)
            self.pumped_batches += 1
        return taken

    def _offer(self, step: str, batch: list[Any]) -> None:
        hist = self._history.get(step)
        if hist is not None:
            keep = self._history_keep.get(step)
            try:
                kept = [(k, v, t) for k, v, t, _ in batch if keep is None or keep(k, v, t)]
            except Exception:  # a broken history filter must not stop the taps
                log.exception("history filter of step %r failed", step)
                kept = []
            with self._history_lock:
                hist.extend(kept)
                subs = self._subs.get(step, ())
        else:
            subs = self._subs.get(step, ())
        for sub in subs:
            sub.offer(batch)

    def _start_pump(self) -> None:
        if not self._background:
            return
        with self._lock:
            if self._pump_thread is not None or self._closed:
                return
            self._pump_thread = threading.Thread(
                target=self._run_pump, name="shoal-taps", daemon=True
            )
            self._pump_thread.start()

    def _run_pump(self) -> None:
        rest = 1.0 / self.max_share - 1.0
        while True:
            with self._wakeup:
                while not self._pending and not self._overflow and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    return
            started = time.monotonic()
            try:
                self.pump(most=1)
            except Exception:  # the pump must outlive any one bad batch
                log.exception("live taps: a batch could not be filtered")
            worked = time.monotonic() - started
            if rest > 0 and worked > 0:
                # Rest in proportion to the work: the pump's share of the interpreter
                # (and so what taps can take from the job) stays at most max_share.
                time.sleep(min(worked * rest, 1.0))

    def stats(self) -> dict[str, tuple[int, int, int]]:
        """Per tapped step: ``(subscribers, records queued, records dropped)`` in total."""
        with self._lock:
            live = {step: subs for step, subs in self._subs.items()}
        out: dict[str, tuple[int, int, int]] = {}
        for step in set(live) | set(self.ended_sent):
            subs = live.get(step, ())
            out[step] = (
                len(subs),
                self.ended_sent.get(step, 0) + sum(s.accepted for s in subs),
                self.ended_dropped.get(step, 0) + sum(s.dropped for s in subs),
            )
        return out

    def close(self) -> None:
        """Stop every subscription (the service is stopping), the pump and the callbacks."""
        with self._lock:
            self._closed = True
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            self.unsubscribe(sub)
        with self._lock:
            for step in list(self._history):
                self._taps.pop(step, None)
            self._history.clear()
            self._history_keep.clear()
        with self._wakeup:
            self._pending.clear()
            self._pending_records = 0
            self._wakeup.notify_all()
        thread = self._pump_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
