"""Where streams join on the native engine: the interval join step of a task.

Semantics (the job API's ``KeyedStream.join``), with ``lower``/``upper`` the bounds,
``L`` the allowed lateness and ``wm`` the watermark a batch arrives at (the one before
the batch, as for windows; it is the join's stage watermark, the minimum over every
input partition of that stage, so never ahead of either side):

* A left record at ``l`` and a right record at ``r`` of the same key *pair* when
  ``l + lower <= r <= l + upper``. The pair is emitted when the second of the two is
  processed, with event time ``max(l, r)``; in one batch, records are taken in order,
  so a pair within a batch is emitted once too.
* A record is *late* when ``ts + L < wm``: it joins nothing, goes to the late side
  output of its side and counts as late (``in = processed + late + dead_lettered``).
  This is Flink's rule for its interval join (``ts < wm``) widened by ``L``.
* A record that is not late is kept while a record that is not late may still pair
  with it: a left record until ``wm > l + upper + L``, a right record until ``wm > r -
  lower + L`` (each side's last partner time plus lateness). Proof that no pair of
  records that are not late is missed: when the second record (say right, at ``wm``)
  arrives, ``r + L >= wm`` and ``r <= l + upper``, so ``l + upper + L >= wm`` and the left
  record is still kept; the other way round with ``l <= r - lower``.
* ``how="left"``: a left record that paired with nothing is emitted once as
  ``output(key, left, None)``, with its own event time, when it is dropped
  (``wm > l + upper + L``). No record that is not late can pair with it after that.
  Downstream windows see it ``upper + L`` behind the watermark: give them that much
  allowed lateness to count it.

State (in the step's store, so it is checkpointed through the changelog with
everything else):

===============================  ==================================================
state key                        value
===============================  ==================================================
``(key, "L")`` / ``(key, "R")``  the side's kept records of ``key``, sorted by event
                                 time (arrival order among equal times): a list of
                                 ``[ts, value, matched]``; ``matched`` is kept for
                                 left joins (has the left record paired yet)
``(TIMER, at, key)``             ``1``: drop the expired records of ``key`` once the
                                 watermark reaches ``at``
===============================  ==================================================

A cleanup timer fires when the watermark reaches it, so a record that expired as it
arrived (``upper < 0``) is dropped at the next watermark move; after a restore, timers
the checkpoint still held fire at the first watermark move too (their drops and any
left-join output were not committed, so nothing goes out twice).

Record keys come first, as in every stateful step, so queryable state finds a key's
entries by key. One list per key and side makes a lookup one read (a prefix scan would read every
pending change on RocksDB); a key with very many records in its interval costs a
rewrite of its list per record. Cleanup timers are kept in the store, their heap in
memory is rebuilt from it after a restore. A value that the state codec cannot store
(or a key that cannot be a state key) dead-letters its record before it is kept, so
a checkpoint never fails on it.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtime.api.errors import InvariantError
from runtime.engine.context import TaskContext
from runtime.engine.operators import Batch, Operator
from runtime.state.codec import encode_value
from runtime.state.serde import encode_key

if TYPE_CHECKING:
    from runtime.state.base import StateStore

__all__ = ["LEFT", "RIGHT", "SIDES", "TIMER", "JoinInput", "JoinOperator"]

LEFT, RIGHT = 0, 1
SIDES = ("left", "right")
_TAGS = ("L", "R")
TIMER = "\x00timer:join"


def _ts(entry: list[Any]) -> int:
    ts: int = entry[0]
    return ts


class JoinInput(Operator):
    """One input of a join step: hands its parent's batches to the join, as its side."""

    def __init__(self, join: JoinOperator, side: int) -> None:
        super().__init__(f"{join.name}.{SIDES[side]}", join.task)
        self.join = join
        self.side = side

    def process(self, batch: Batch) -> None:
        """Join the batch as this input's side."""
        self.join.process_side(self.side, batch)


class JoinOperator(Operator):
    """An interval join step (see the module docstring for its rules and state).

    Args:
        name: the step's name.
        task: the task it belongs to.
        lower_ms: lower bound of ``right.ts - left.ts``.
        upper_ms: upper bound of ``right.ts - left.ts``.
        lateness_ms: allowed lateness.
        outer: a left join (emit unmatched left records with ``None``).
        output: builds the emitted record from ``(key, left, right)``.
        store: the step's state store.
    """

    stateful = True

    def __init__(
        self,
        name: str,
        task: TaskContext,
        *,
        lower_ms: int,
        upper_ms: int,
        lateness_ms: int,
        outer: bool,
        output: Callable[[Any, Any, Any], Any],
        store: StateStore,
    ) -> None:
        super().__init__(name, task)
        self.lower = lower_ms
        self.upper = upper_ms
        self.lateness = lateness_ms
        self.outer = outer
        self.output = output
        self.store = store
        self.inputs = (JoinInput(self, LEFT), JoinInput(self, RIGHT))
        self.late_children: dict[str, list[Operator]] = {"left": [], "right": []}
        # (at, n, key): n breaks ties, so keys of different types are never compared.
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self.restore_index()

    def process(self, batch: Batch) -> None:
        """A join takes records through its inputs (``inputs[LEFT]``, ``inputs[RIGHT]``)."""
        raise InvariantError(f"join {self.name!r} got records without a side")

    # -- records --------------------------------------------------------------------
    def process_side(self, side: int, batch: Batch) -> None:
        """Join a batch of one side: late records out, the others paired and kept."""
        self.counters.records_in += len(batch)
        floor = self.watermark - self.lateness  # ts below it: late
        late: Batch = []
        out: Batch = []
        for rec in batch:
            key, value, ts, origin = rec
            if ts < floor:
                late.append(rec)
                continue
            try:
                partners = self._add(side, key, value, ts)
            except Exception as exc:
                self.fail(exc, rec)
                continue
            for other_ts, other in partners:
                if side == LEFT:
                    self._pair(out, key, value, other, max(ts, other_ts), origin)
                else:
                    self._pair(out, key, other, value, max(ts, other_ts), origin)
        if late:
            self.counters.late += len(late)
            for child in self.late_children[SIDES[side]]:
                child.process(late)
        self.emit(out)

    def _add(self, side: int, key: Any, value: Any, ts: int) -> list[tuple[int, Any]]:
        """Keep a record and return ``(ts, value)`` of the other side's records it pairs
        with. Nothing is changed when it raises (the record is dead-lettered)."""
        store = self.store
        own_key, other_key = (key, _TAGS[side]), (key, _TAGS[1 - side])
        encode_key(own_key)  # raises for a key state cannot hold
        encode_value(value)  # raises for a value state cannot hold
        if side == LEFT:
            lo, hi, expires = ts + self.lower, ts + self.upper, ts + self.upper
        else:
            lo, hi, expires = ts - self.upper, ts - self.lower, ts - self.lower
        others: list[list[Any]] | None = store.get(other_key)
        partners: list[tuple[int, Any]] = []
        if others:
            first = bisect_left(others, lo, key=_ts)
            last = bisect_right(others, hi, key=_ts)
            matching = others[first:last]
            partners = [(e[0], e[1]) for e in matching]
            if side == RIGHT and self.outer and any(not e[2] for e in matching):
                for e in matching:
                    e[2] = True
                store.put(other_key, others)
        own: list[list[Any]] = list(store.get(own_key) or ())
        own.insert(bisect_right(own, ts, key=_ts), [ts, value, bool(partners)])
        store.put(own_key, own)
        self._schedule(expires + self.lateness + 1, key)
        return partners

    def _pair(self, out: Batch, key: Any, left: Any, right: Any, ts: int, origin: Any) -> None:
        try:
            out.append((key, self.output(key, left, right), ts, origin))
        except Exception as exc:
            # A pair is not an input record: dead-lettered, not counted.
            pair = {"key": key, "left": left, "right": right}
            self.task.dead_letter(self.name, exc, origin, pair)

    # -- cleanup timers -------------------------------------------------------------
    def _schedule(self, at: int, key: Any) -> None:
        sk = (TIMER, at, key)
        if sk not in self.store:
            self.store.put(sk, 1)
            heapq.heappush(self._heap, (at, next(self._seq), key))

    def restore_index(self) -> None:
        """Rebuild the timer heap from state (after a restore)."""
        self._heap = [
            (sk[1], next(self._seq), sk[2])
            for sk, _ in self.store.items_with_prefix((TIMER,))
            if len(sk) == 3
        ]
        heapq.heapify(self._heap)

    def on_watermark(self, watermark_ms: int) -> None:
        """Drop the records no record that is not late can pair with any more; a left
        join emits the unmatched left ones among them."""
        heap, store = self._heap, self.store
        due: dict[Any, None] = {}
        while heap and heap[0][0] <= watermark_ms:
            at, _, key = heapq.heappop(heap)
            sk = (TIMER, at, key)
            if sk in store:
                store.delete(sk)
                due[key] = None
        out: Batch = []
        for key in due:
            self._expire(key, watermark_ms, out)
        self.emit(out)

    def _expire(self, key: Any, watermark_ms: int, out: Batch) -> None:
        floor = watermark_ms - self.lateness  # kept while its last partner time >= floor
        for side, reach in ((LEFT, self.upper), (RIGHT, -self.lower)):
            sk = (key, _TAGS[side])
            entries: list[list[Any]] | None = self.store.get(sk)
            if not entries:
                continue
            kept = [e for e in entries if e[0] + reach >= floor]
            if len(kept) == len(entries):
                continue
            if side == LEFT and self.outer:
                for ts, value, matched in entries:
                    if not matched and ts + reach < floor:
                        self._pair(out, key, value, None, ts, None)
            if kept:
                self.store.put(sk, kept)
            else:
                self.store.delete(sk)
