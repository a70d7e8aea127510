"""The window operator: keyed window aggregation over any assigner, for both engines.

Semantics (see ``runtime.api.windows``):

* A window ``[start, end)`` fires once the watermark reaches ``end``; its result
  is emitted with event time ``end - 1``.
* A record is *late* when the last of its windows (the last the assigner gives;
  for sessions, the one the record opens) ended at least ``allowed_lateness`` before
  the watermark (``end + lateness <= wm``); late records go to the late side output
  and are counted, never dropped silently.
* A record that lands in a window that already fired, but within allowed lateness,
  updates the window and re-emits its result. Of a record's windows, one that ended
  ``allowed_lateness`` or more before the watermark is gone and does not get it.
* A window's state is forgotten when the watermark reaches ``end + retain_ms`` of its
  assigner (``allowed_lateness``; sessions: ``gap - 1 + allowed_lateness``, until when
  a record that is not late can still overlap them).
* Merging kinds (sessions): a record's window merges with every window of its key
  it ``joins``, accumulators combined with ``AggregateFunction.merge``. When a late
  record bridges windows that were already emitted, every absorbed window whose
  start differs from the merged one is re-emitted with result ``None`` (a
  retraction), then the merged window. A window whose running result went out as an
  early update counts as emitted.

Aggregation is the job's ``AggregateFunction`` alone (``create``/``add``/``merge``/
``result``); this module never looks into accumulators, so ``aggregate``, ``reduce``
and ``collect`` windows all run here.

State, through a key-value view (:class:`WindowStore`; the native engine passes its
state store, Flink a view of the current key's keyed state):

===========  =====================  ===============================================
kinds        state key              value
===========  =====================  ===============================================
not merging  ``(key, start, end)``  the window's accumulator
merging      ``key``                the key's windows: a list of
                                    :class:`~runtime.state.records.WindowState`,
                                    by start
===========  =====================  ===============================================

Firing times go to a scheduler (``schedule(at, item)``: call :meth:`WindowLogic.fire`
with ``item`` once the watermark reaches ``at``; items are state keys). Before
``(key, start, end)`` keys, windows that do not merge were stored under ``(key,
start)``, and merging windows as ``[start, end, acc, status]`` lists:
:meth:`WindowLogic.reschedule` rewrites both forms when it rebuilds the schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.api.errors import StateError
from runtime.api.functions import AggregateFunction
from runtime.engine.operators import Rec
from runtime.engine.windowing.assigner import WindowAssigner
from runtime.state.records import WindowState

__all__ = ["MISSING", "Changes", "Emission", "WindowLogic", "WindowStore"]

MISSING: Any = object()
"""The accumulator of a retraction (its result is ``None``), and a missing state value."""

Emission = tuple[Any, int, int, Any]
"""``(key, start, end, accumulator)`` of a window result; :data:`MISSING` retracts it."""


def _start(window: WindowState) -> int:
    return window.start


class WindowStore(Protocol):
    """The state a window operator reads and writes (a ``StateStore`` is one)."""

    def get(self, key: Any, default: Any = None) -> Any:
        """The value under ``key``, else ``default``."""
        ...

    def put(self, key: Any, value: Any) -> None:
        """Set ``key``."""
        ...

    def delete(self, key: Any) -> None:
        """Remove ``key``."""
        ...

    def pop(self, key: Any, default: Any = None) -> Any:
        """Remove ``key`` and return its value, else ``default``."""
        ...

    def items(self) -> Iterable[tuple[Any, Any]]:
        """Every ``(key, value)``."""
        ...


@dataclass(slots=True)
class Changes:
    """What a batch of records did to a window step, in the order it is emitted."""

    late: list[Rec] = field(default_factory=list)
    failed: list[tuple[Exception, Rec]] = field(default_factory=list)
    retracted: list[Emission] = field(default_factory=list)
    results: list[Emission] = field(default_factory=list)


class WindowLogic:
    """Keyed windows of one step: one assigner, one aggregate, one store.

    Args:
        assigner: the window kind (see :mod:`runtime.engine.windowing.assigner`).
        aggregate: the step's aggregate function.
        store: the step's state (see the module docstring for its layout).
        schedule: ``schedule(at, item)`` asks for ``fire`` with ``item`` once the
            watermark reaches ``at`` (at a time already reached: at the next firing).
        defer_complete: results of windows a batch changed after they were complete go
            out at their next firing (``schedule`` at their end) instead of with the
            batch: Flink stamps a result with the time of the timer that emits it.
    """

    def __init__(
        self,
        assigner: WindowAssigner,
        aggregate: AggregateFunction[Any, Any, Any],
        store: WindowStore,
        schedule: Callable[[int, Any], None],
        *,
        defer_complete: bool = False,
    ) -> None:
        self.assigner = assigner
        self.agg = aggregate
        self.store = store
        self.schedule = schedule
        self.defer_complete = defer_complete
        self.lateness = assigner.lateness_ms
        #: State keys changed since the last early update (only with early updates).
        self.touched: set[Any] | None = set() if assigner.early_every_ms is not None else None
        self.merging = assigner.merging
        # The default merge rule (overlap) inlined: a call per window per record costs.
        self._overlap_joins = type(assigner).joins is WindowAssigner.joins

    # -- records ----------------------------------------------------------------------
    def add(self, batch: Iterable[Rec], watermark_ms: int) -> Changes:
        """Fold ``(key, value, ts, origin)`` records into their windows.

        Records that are late, and records whose aggregate raised, come back in
        ``late`` and ``failed``; results of complete windows the batch changed (unless
        deferred) and retractions in ``results`` and ``retracted``.
        """
        if self.merging:
            return self._add_merging(batch, watermark_ms)
        return self._add_fixed(batch, watermark_ms)

    def _add_fixed(self, batch: Iterable[Rec], wm: int) -> Changes:
        # One state read and one write per window per batch: accumulators of the
        # windows the batch touches are folded in ``held`` and stored at the end.
        changes = Changes()
        late, failed = changes.late, changes.failed
        assign = self.assigner.assign
        lateness, retain = self.lateness, self.assigner.retain_ms
        get = self.store.get
        create, add = self.agg.create, self.agg.add
        schedule, touched = self.schedule, self.touched
        complete: set[tuple[Any, int, int]] = set()
        held: dict[tuple[Any, int, int], Any] = {}
        hold = held.get
        for rec in batch:
            k, v, t, _ = rec
            windows = assign(t)
            if windows[-1][1] + lateness <= wm:
                late.append(rec)
                continue
            try:
                for start, end in windows:
                    if end + lateness <= wm:
                        continue  # this window is gone
                    sk = (k, start, end)
                    acc = hold(sk, MISSING)
                    if acc is MISSING:
                        acc = get(sk, MISSING)
                        if acc is MISSING:
                            acc = create()
                            if end > wm:  # else it is emitted with the batch, not again later
                                schedule(end, sk)
                            if retain:
                                schedule(end + retain, sk)
                    held[sk] = add(acc, v)
                    if end <= wm:
                        complete.add(sk)
                    elif touched is not None:
                        touched.add(sk)
            except Exception as exc:
                failed.append((exc, rec))
        if held:
            put = self.store.put
            for sk, acc in held.items():
                put(sk, acc)
        if complete:
            ordered = sorted(complete, key=lambda sk: (sk[1], sk[2]))
            if self.defer_complete:
                for sk in ordered:
                    schedule(sk[2], sk)
            else:
                changes.results = [(k, s, e, held[(k, s, e)]) for k, s, e in ordered]
        return changes

    def _add_merging(self, batch: Iterable[Rec], wm: int) -> Changes:
        changes = Changes()
        late, failed, retracted = changes.late, changes.failed, changes.retracted
        assigner, agg = self.assigner, self.agg
        assign, joins, overlap = assigner.assign, assigner.joins, self._overlap_joins
        lateness, retain = self.lateness, assigner.retain_ms
        get, put = self.store.get, self.store.put
        create, add, merge = agg.create, agg.add, agg.merge
        schedule, touched = self.schedule, self.touched
        complete: set[Any] = set()
        for rec in batch:
            k, v, t, _ = rec
            ((lo, hi),) = assign(t)
            if hi + lateness <= wm:
                late.append(rec)
                continue
            try:
                windows: list[WindowState] | None = get(k, None)
                hit: list[WindowState] = []
                if windows:
                    for w in windows:
                        if (
                            (w.start < hi and w.end > lo)
                            if overlap
                            else joins(w.start, w.end, lo, hi)
                        ):
                            hit.append(w)
                else:
                    windows = []
                if not hit:
                    windows.append(WindowState(lo, hi, add(create(), v)))
                    if len(windows) > 1:
                        windows.sort(key=_start)
                else:
                    # The key's windows are disjoint and sorted, so the first hit starts
                    # first and the last ends last; the merged window keeps the first's
                    # place (nothing else lies between the windows it absorbs).
                    first = hit[0]
                    acc = first.acc
                    for w in hit[1:]:
                        acc = merge(acc, w.acc)
                    first.acc = add(acc, v)
                    lo = min(lo, first.start)
                    hi = max(hi, hit[-1].end)
                    # Only a result under the merged start needs updating; other
                    # emitted starts are retracted.
                    for w in hit:
                        if w.emitted and w.start != lo:
                            retracted.append((k, w.start, w.end, MISSING))
                    first.emitted = first.emitted and first.start == lo
                    first.start, first.end, first.pending = lo, hi, True
                    if len(hit) > 1:
                        absorbed = {id(w) for w in hit[1:]}
                        windows = [w for w in windows if id(w) not in absorbed]
                put(k, windows)
                schedule(hi, k)
                schedule(hi + retain, k)
                if hi <= wm:
                    complete.add(k)
                elif touched is not None:
                    touched.add(k)
            except Exception as exc:
                failed.append((exc, rec))
        if complete and not self.defer_complete:
            # (deferred: ``schedule(hi, k)`` above already asks for the firing)
            changes.results = self._fire_keys(sorted(complete, key=repr), wm)
        return changes

    # -- event time -------------------------------------------------------------------
    def fire(self, due: Iterable[tuple[int, Iterable[Any]]], watermark_ms: int) -> list[Emission]:
        """Results of the windows due, and purge what is expired.

        Args:
            due: ``(at, items)`` pairs, ``at`` ascending: the items scheduled at ``at``
                (an item that is not due at ``at`` is left alone).
            watermark_ms: the watermark, at least every ``at``.
        """
        if self.merging:
            keys: set[Any] = set()
            for _, items in due:
                keys.update(items)
            if not keys:
                return []
            if self.touched:
                self.touched.difference_update(keys)
            return self._fire_keys(sorted(keys, key=repr), watermark_ms)
        out: list[Emission] = []
        append = out.append
        get, delete = self.store.get, self.store.delete
        retain = self.assigner.retain_ms
        take = get if retain else self.store.pop  # kept for lateness, else removed
        touched = self.touched
        for at, items in due:
            for sk in items:
                end = sk[2]
                if at == end:
                    acc = take(sk, MISSING)
                    if acc is not MISSING:
                        append((sk[0], sk[1], end, acc))
                    if touched:
                        touched.discard(sk)
                elif at >= end + retain:
                    delete(sk)
        return out

    def resume(self, due: Iterable[tuple[int, Iterable[Any]]], watermark_ms: int) -> list[Emission]:
        """After a restore at ``watermark_ms``: settle what was scheduled by then.

        Windows that do not merge and ended by then fired before the checkpoint:
        their firing is not repeated (a window kept for allowed lateness would be
        emitted twice); what expired is purged. Merging windows carry their own
        ``pending`` flag, so firing them emits only what was never emitted.
        """
        if self.merging:
            return self.fire(due, watermark_ms)
        retain, delete = self.assigner.retain_ms, self.store.delete
        for _, items in due:
            for sk in items:
                if sk[2] + retain <= watermark_ms:
                    delete(sk)
        return []

    def _fire_keys(self, keys: Iterable[Any], wm: int) -> list[Emission]:
        """Emit complete windows of merging ``keys`` not emitted as they are; purge old."""
        get, put, delete = self.store.get, self.store.put, self.store.delete
        retain = self.assigner.retain_ms
        out: list[Emission] = []
        for k in keys:
            windows: list[WindowState] | None = get(k, None)
            if not windows:
                continue
            changed = False
            for w in windows:
                if w.end <= wm and w.pending:
                    out.append((k, w.start, w.end, w.acc))
                    w.emitted, w.pending = True, False
                    changed = True
            alive = [w for w in windows if w.end + retain > wm]
            if not alive:
                delete(k)
            elif changed or len(alive) != len(windows):
                put(k, alive)
        return out

    # -- processing time --------------------------------------------------------------
    def early(self, items: Iterable[Any], watermark_ms: int) -> list[Emission]:
        """Running results of the open windows under ``items`` (state keys)."""
        out: list[Emission] = []
        get, put = self.store.get, self.store.put
        if not self.merging:
            for sk in items:
                acc = get(sk, MISSING)
                if acc is not MISSING:
                    out.append((sk[0], sk[1], sk[2], acc))
            return out
        for k in items:
            windows: list[WindowState] | None = get(k, None)
            if not windows:
                continue
            for w in windows:
                if w.end > watermark_ms:
                    out.append((k, w.start, w.end, w.acc))
                    # Now emitted: if a merge moves its start, the old start is retracted.
                    w.emitted = True
            put(k, windows)
        return out

    def take_touched(self) -> set[Any]:
        """The state keys changed since the last call (for early updates)."""
        touched = self.touched
        if not touched:
            return set()
        self.touched = set()
        return touched

    # -- restore ----------------------------------------------------------------------
    def reschedule(self) -> None:
        """Schedule every stored window again (after a restore); rewrite older forms.

        Raises:
            StateError: a window stored in the older form does not fit this step's
                windows (its spec changed).
        """
        store, schedule, retain = self.store, self.schedule, self.assigner.retain_ms
        legacy: list[tuple[Any, Any]] = []
        if self.merging:
            for k, windows in store.items():
                if windows and type(windows[0]) is not WindowState:
                    legacy.append((k, windows))
                    continue
                for w in windows:
                    schedule(w.end, k)
                    schedule(w.end + retain, k)
            for k, old in legacy:
                try:
                    windows = sorted(
                        (WindowState.from_legacy(w) for w in old), key=lambda w: w.start
                    )
                except (TypeError, ValueError) as exc:
                    raise StateError(f"stored windows of key {k!r}: {exc}") from exc
                store.put(k, windows)
                for w in windows:
                    schedule(w.end, k)
                    schedule(w.end + retain, k)
            return
        for sk, acc in store.items():
            if len(sk) == 2:
                legacy.append((sk, acc))
                continue
            schedule(sk[2], sk)
            if retain:
                schedule(sk[2] + retain, sk)
        for (k, start), acc in legacy:
            ends = [e for s, e in self.assigner.assign(start) if s == start]
            if len(ends) != 1:
                raise StateError(
                    f"stored window of key {k!r} starting at {start} does not fit the step's "
                    "windows (was the window spec changed?)"
                )
            sk = (k, start, ends[0])
            store.delete((k, start))
            store.put(sk, acc)
            schedule(ends[0], sk)
            if retain:
                schedule(ends[0] + retain, sk)
