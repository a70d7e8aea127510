"""The columnar path: a source, a ``key_by`` and a window step run as one, per batch.

A job that says what it reads with field expressions lets the engine skip Python
per record. When a source's event time is a field, its only step is a ``key_by`` on
a field (in process, no repartition), whose only step is a tumbling or hopping window
with a built-in aggregate (``Count``, or ``Sum``, ``Min``, ``Max``, ``Mean`` of a field
or of the record itself), the native fold (``native/src/fold.rs``) reads event times,
keys and numbers of a whole decoded batch, finds late records and groups the rest by
``(key, window)``; then each window the batch touches is read, folded and written
once, as the row path does (:meth:`runtime.engine.windowing.logic.WindowLogic.add`).

It gives exactly what the row path gives, or it does not run: a batch with anything
the fold cannot do exactly (a bad or out-of-range event time, a missing field, a key
that is neither a string nor an int, a number of another type, an accumulator it does
not know) goes down the row path whole, which dead-letters or fails as always; so do
batches while a live tap watches the source or the ``key_by``. Everything else about
the steps (counters, watermarks, late side outputs, firing, early updates, state
layout) stays as it is, so the two paths mix freely within a job and across batches.

``SHOAL_COLUMNAR=0`` turns it off; without the native extension it is off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.api.aggregates import Count, Max, Mean, Min, Sum
from runtime.api.expressions import path_of
from runtime.api.graph import KeyByNode, SourceNode
from runtime.api.job import Job
from runtime.engine.operators import KeyByOperator, Operator, Rec
from runtime.engine.watermarks import NO_WATERMARK
from runtime.engine.windowing import MISSING
from runtime.engine.windowing.hopping import HoppingAssigner
from runtime.engine.windowing.tumbling import TumblingAssigner
from runtime.engine.windows import WindowOperator

if TYPE_CHECKING:
    from runtime.engine.watermarks import WatermarkTracker

try:  # built by `make` from native/ (pip install ./native)
    from shoal_native import WindowFold as _WindowFold
except ImportError:  # pragma: no cover - depends on the machine
    _WindowFold = None

__all__ = ["AVAILABLE", "ColumnarWindow", "enabled", "plan"]

#: Whether the native fold is installed.
AVAILABLE: bool = _WindowFold is not None and hasattr(_WindowFold, "group")

_KINDS: dict[type, str] = {Count: "count", Sum: "sum", Min: "min", Max: "max", Mean: "mean"}


def enabled() -> bool:
    """Whether eligible steps take the columnar path: the fold is installed and not
    turned off (``SHOAL_COLUMNAR=0``)."""
    return AVAILABLE and os.environ.get("SHOAL_COLUMNAR", "1") != "0"


class ColumnarWindow:
    """A source's ``key_by`` and window steps, run per batch by the native fold.

    Attributes:
        batches: batches it ran (the rest went down the row path).
    """

    def __init__(
        self, source: Operator, keyer: Operator, window: WindowOperator, fold: Any
    ) -> None:
        self.source = source
        self.keyer = keyer
        self.window = window
        self.fold = fold
        self.batches = 0

    def run(
        self,
        node: SourceNode,
        tracker: WatermarkTracker,
        partition: int,
        values: list[Any],
        origins: Sequence[Any],
        now: int,
    ) -> bool:
        """Run a batch of decoded values; ``False`` (having changed nothing) when it
        must take the row path."""
        task = self.source.task
        if task.taps and (self.source.name in task.taps or self.keyer.name in task.taps):
            return False
        strategy = node.watermarks
        bound = strategy.max_future_ms
        hi = now + bound if bound is not None else 2**62
        win = self.window
        logic = win.logic
        wm = win.watermark
        grouped = self.fold.group(
            values, strategy.min_valid_ms, hi, bound is not None and strategy.future == "clamp", wm
        )
        if grouped is None:
            return False
        max_ts, late_at, groups = grouped
        # A window that has not ended has state only if it is scheduled to fire at its
        # end (every stored window is, from its creation or the restore's reschedule):
        # the others are new, and neither read nor looked up again at the checkpoint.
        pending = win.index.by_time
        nothing: frozenset[Any] = frozenset()
        stored = [
            i for i, sk in enumerate(groups) if sk[2] <= wm or sk in pending.get(sk[2], nothing)
        ]
        found: list[Any] = [MISSING] * len(groups)
        fresh = [True] * len(groups)
        if stored:
            store = logic.store
            keys = [groups[i] for i in stored]
            get_many = getattr(store, "get_many", None)  # a StateStore reads them in one go
            loaded = get_many(keys, MISSING) if get_many else [store.get(k, MISSING) for k in keys]
            for i, value in zip(stored, loaded, strict=True):
                found[i] = value
                fresh[i] = False
        create = logic.agg.create
        accs = self.fold.fold([create() if a is MISSING else a for a in found])
        if accs is None:
            return False
        self.batches += 1
        n = len(values)
        # What the row path's steps would have counted and seen.
        if max_ts != NO_WATERMARK:
            tracker.observe(node.name, partition, max_ts, now)
        else:
            tracker.touch(node.name, partition, now)
        self.source.counters.records_out += n
        self.keyer.counters.records_in += n
        self.keyer.counters.records_out += n
        win.counters.records_in += n
        schedule, touched, put = logic.schedule, logic.touched, logic.store.put
        put_new = getattr(logic.store, "put_new", put)
        retain = logic.assigner.retain_ms
        complete = []
        for sk, acc, was, new in zip(groups, accs, found, fresh, strict=True):
            end = sk[2]
            if was is MISSING:
                if end > wm:
                    schedule(end, sk)
                if retain:
                    schedule(end + retain, sk)
            if new:
                put_new(sk, acc)
            else:
                put(sk, acc)
            if end <= wm:
                complete.append((sk, acc))
            elif touched is not None:
                touched.add(sk)
        if late_at:
            late: list[Rec] = [(k, values[i], t, origins[i]) for i, k, t in late_at]
            win.counters.late += len(late)
            for child in win.late_children:
                child.process(late)
        if complete:
            complete.sort(key=lambda item: (item[0][1], item[0][2]))
            win.emit(win.records([(sk[0], sk[1], sk[2], acc) for sk, acc in complete]))
        return True


def plan(source: Operator, node: SourceNode, job: Job) -> ColumnarWindow | None:
    """The columnar plan of a source's steps, or ``None`` when they do not fit it.

    Args:
        source: the source's operator.
        node: the source's node.
        job: the job (to read the ``key_by``'s expression).
    """
    if not enabled():
        return None
    ts_path = path_of(node.timestamp)
    if ts_path is None or len(source.children) != 1:
        return None
    keyer = source.children[0]
    if type(keyer) is not KeyByOperator or len(keyer.children) != 1:
        return None
    win = keyer.children[0]
    if type(win) is not WindowOperator or win.logic.defer_complete:
        return None
    key_node = {n.name: n for n in job.nodes}.get(keyer.name)
    key_path = path_of(key_node.fn) if isinstance(key_node, KeyByNode) else None
    if key_path is None:
        return None
    assigner = win.logic.assigner
    if type(assigner) is TumblingAssigner:
        size = slide = assigner.size
    elif type(assigner) is HoppingAssigner:
        size, slide = assigner.size, assigner.slide
    else:
        return None
    agg = win.agg
    kind = _KINDS.get(type(agg))
    if kind is None:
        return None
    of = getattr(agg, "of", None)
    value_path = None if of is None else path_of(of)
    if of is not None and value_path is None:
        return None
    fold = _WindowFold(
        list(ts_path),
        list(key_path),
        None if value_path is None else list(value_path),
        kind,
        size,
        slide,
        assigner.lateness_ms,
    )
    return ColumnarWindow(source, keyer, win, fold)
