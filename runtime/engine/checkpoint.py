"""Where a checkpoint is taken: outputs, state changes and input offsets commit together.

The worker takes a checkpoint every ``checkpoint_interval_ms``, when partitions are
revoked and on shutdown. :meth:`Checkpointer.take` runs these steps, in this order:

1. **Write outputs**: what the sinks, the repartitioning steps and the dead-letter
   output collected since the last batch (see :mod:`runtime.engine.outputs`).
2. **Write state changes**: each store's changes since the last checkpoint go to its
   step's compacted changelog topic, to the partition of the store's task.
3. **Anything to commit?** With no record read and nothing written since the last
   commit, the stores take their (empty) checkpoint and nothing is committed.
4. **Flush external sinks**: idempotent upserts are durable before the transaction
   commits; records a sink gave up on become dead letters of this checkpoint.
5. **Name the checkpoint**: per task the next sequence number, one random id for this
   commit, and per input partition a :class:`CheckpointMeta` (sequence number, id,
   event-time progress, wall clock) that travels as the offset's metadata.
6. **Commit** outputs, changelog records and input offsets with their metadata: one
   Kafka transaction with the exactly-once transport; with at-least-once the
   outputs are flushed before the offsets commit. A commit that lost a race with a
   rebalance (:class:`~runtime.api.errors.CheckpointAborted`) stops here: nothing of
   it is visible, and the worker rewinds (see :mod:`runtime.engine.recovery`).
7. **Mark local state** of every task whose offsets this commit carried with the
   checkpoint it now holds.
8. **Checkpoint local state** (RocksDB): only now, after Kafka took the commit, so
   local state never runs ahead of Kafka. A task whose local checkpoint equals the
   committed one reuses it on restart; otherwise it restores from the changelog.
9. **Count**: checkpoints, duration, changed records.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from runtime.api.errors import CheckpointAborted, InvariantError
from runtime.engine.outputs import OutputWriter
from runtime.engine.ports import Transport
from runtime.engine.stats import CHECKPOINT_BOUNDS_S, Histogram, Phases
from runtime.engine.task import Task
from runtime.engine.topics import changelog_topic
from runtime.state.base import StateStore

__all__ = ["STORE_META", "CheckpointMeta", "Checkpointer", "Outcome"]

# The worker's logger: checkpoint lines read as they always did.
log = logging.getLogger("shoal.worker")

#: The store bookkeeping entry naming the committed checkpoint the store holds.
STORE_META = "shoal.checkpoint"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class CheckpointMeta:
    """What a checkpoint commits with each input partition's offset (as JSON metadata).

    Attributes:
        seq: the task's checkpoint sequence number (1, 2, ...; 0: none yet).
        id: a random id of the commit: sequence numbers alone repeat across workers.
        max_ts: the partition's highest event time so far.
        wm: the partition's watermark.
        at: wall clock of the commit (epoch ms), so ``shoal status`` can tell its age
            from Kafka alone.
    """

    seq: int
    id: str = ""
    max_ts: int | None = None
    wm: int | None = None
    at: int | None = None

    @property
    def name(self) -> str:
        """``seq.id``: names one commit (what a store records of it)."""
        return f"{self.seq}.{self.id}"

    def to_json(self) -> str:
        """The offset metadata text.

        >>> CheckpointMeta(3, "ab12", 1000, 900, 5000).to_json()
        '{"seq":3,"id":"ab12","max_ts":1000,"wm":900,"at":5000}'
        """
        fields = {"seq": self.seq, "id": self.id, "max_ts": self.max_ts, "wm": self.wm}
        return json.dumps({**fields, "at": self.at}, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> CheckpointMeta | None:
        """The metadata of a committed offset; ``None`` when it is not ours (or empty).

        >>> CheckpointMeta.parse('{"seq":3,"id":"ab12","max_ts":1000,"wm":900,"at":5}')
        CheckpointMeta(seq=3, id='ab12', max_ts=1000, wm=900, at=5)
        >>> CheckpointMeta.parse("") is None and CheckpointMeta.parse("{}") is None
        True
        """
        if not text or not text.startswith("{"):
            return None
        try:
            meta = json.loads(text)
        except ValueError:
            return None
        if not isinstance(meta, dict) or "seq" not in meta:
            return None
        try:
            seq = int(meta["seq"])
        except (TypeError, ValueError):
            return None
        return cls(
            seq=seq,
            id=str(meta.get("id", "")),
            max_ts=_int_or_none(meta.get("max_ts")),
            wm=_int_or_none(meta.get("wm")),
            at=_int_or_none(meta.get("at")),
        )


def store_mark(meta: CheckpointMeta | None) -> bytes:
    """What a store records of the committed checkpoint it holds (``None``: none)."""
    if meta is None:
        return json.dumps({"seq": 0}).encode()
    return json.dumps({"seq": meta.seq, "id": meta.id}).encode()


def stored_checkpoint(store: StateStore) -> str | None:
    """``seq.id`` of the checkpoint a store holds (``None``: it holds none).

    A mark that does not read as one names no checkpoint that Kafka could hold, so the
    store is not reused.
    """
    raw = store.get_meta(STORE_META)
    if not raw:
        return None
    try:
        mark = json.loads(raw)
        return f"{mark['seq']}.{mark.get('id', '')}"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "?"


class Outcome(Enum):
    """How a checkpoint pass ended."""

    COMMITTED = "committed"
    NOTHING_TO_COMMIT = "nothing to commit"
    ABORTED = "aborted"


class Checkpointer:
    """Takes a worker's checkpoints and keeps their sequence numbers and statistics.

    Args:
        transport: writes changelog records and commits.
        outputs: writes outputs (step 1) and flushes external sinks (step 4).
        app: names changelog topics (the consumer group).
        clock: processing clock in epoch ms.
        phases: where to add the time checkpoints spend (the worker's; default: own).
    """

    def __init__(
        self,
        transport: Transport,
        outputs: OutputWriter,
        app: str,
        clock: Callable[[], int],
        phases: Phases | None = None,
    ) -> None:
        self.transport = transport
        self.outputs = outputs
        self.app = app
        self.clock = clock
        #: Task id -> sequence number of the checkpoint its state is at.
        self.seq: dict[int, int] = {}
        self.committed = 0
        self.failures = 0
        self.last_seconds = 0.0
        self.last_records = 0
        #: Where checkpoints spend their time (``emit``, ``state``, ``commit``).
        self.phases = phases if phases is not None else Phases()
        #: Wall clock of the last checkpoint pass (committed, or nothing to commit).
        self.last_pass_ms = clock()
        self.durations = Histogram(CHECKPOINT_BOUNDS_S)

    def take(
        self,
        tasks: Mapping[int, Task],
        positions: Mapping[tuple[str, int], int],
        task_of: Callable[[int], int],
        source_of: Mapping[str, str],
        dirty: bool,
    ) -> Outcome:
        """Run the commit steps of the module docstring.

        Args:
            tasks: the worker's tasks by id.
            positions: next offset to read per input partition (negative: none read).
            task_of: the task id that owns a partition number.
            source_of: topic -> the source (or internal source) it feeds.
            dirty: whether records were read or outputs written since the last commit.
        """
        t0 = time.monotonic()
        phases = self.phases
        t = time.perf_counter()
        # 1. outputs
        dirty = self.outputs.write(tasks.values()) or dirty
        t, phases.emit = time.perf_counter(), phases.emit + time.perf_counter() - t
        # 2. state changes, to the changelog partition of each store's task
        prepared: list[StateStore] = []
        changed = 0
        for tid, task in tasks.items():
            for store in task.stores:
                changes = store.prepare_checkpoint()
                changed += len(changes)
                prepared.append(store)
                if changes:
                    dirty = True
                    topic = changelog_topic(self.app, store.name)
                    for raw_key, raw_value in changes:
                        self.transport.write(topic, raw_key, raw_value, None, None, tid)
        self.last_pass_ms = self.clock()
        # 3. anything to commit?
        if not dirty:
            for store in prepared:
                store.commit_checkpoint()
            phases.state += time.perf_counter() - t
            return Outcome.NOTHING_TO_COMMIT
        t, phases.state = time.perf_counter(), phases.state + time.perf_counter() - t
        # 4. external sinks
        self.outputs.flush_external()
        # 5. name it
        offsets, next_seq, ckpt_id = self._name(tasks, positions, task_of, source_of)
        # 6. commit
        try:
            self.transport.commit(offsets)
        except CheckpointAborted as exc:
            log.warning("%s; rewinding to the last committed checkpoint", exc)
            self.failures += 1
            phases.commit += time.perf_counter() - t
            return Outcome.ABORTED
        t, phases.commit = time.perf_counter(), phases.commit + time.perf_counter() - t
        self.seq.update(next_seq)
        # 7. mark local state, only of tasks whose offsets this commit carried: a store
        # marked with a checkpoint that Kafka does not hold for it could be taken for it later
        for tid, seq in next_seq.items():
            for store in tasks[tid].stores:
                store.put_meta(STORE_META, store_mark(CheckpointMeta(seq, ckpt_id)))
        # 8. local state
        for store in prepared:
            store.commit_checkpoint()
        phases.state += time.perf_counter() - t
        # 9. count
        self.committed += 1
        self.last_seconds = time.monotonic() - t0
        self.durations.observe(self.last_seconds)
        self.last_records = changed
        return Outcome.COMMITTED

    def _name(
        self,
        tasks: Mapping[int, Task],
        positions: Mapping[tuple[str, int], int],
        task_of: Callable[[int], int],
        source_of: Mapping[str, str],
    ) -> tuple[dict[tuple[str, int], tuple[int, str]], dict[int, int], str]:
        """Offsets with their metadata, the tasks' next sequence numbers, the commit's id."""
        now_ms = self.clock()
        offsets: dict[tuple[str, int], tuple[int, str]] = {}
        next_seq: dict[int, int] = {}
        ckpt_id = secrets.token_hex(6)
        for (topic, partition), pos in positions.items():
            if pos < 0:
                continue  # nothing read and nothing committed yet
            tid = task_of(partition)
            task = tasks.get(tid)
            if task is None:
                raise InvariantError(f"{topic}[{partition}] is read but task {tid} is gone")
            seq = next_seq.setdefault(tid, self.seq.get(tid, 0) + 1)
            max_ts, wm = task.partition_progress(source_of[topic], partition)
            meta = CheckpointMeta(seq, ckpt_id, max_ts, wm, now_ms)
            offsets[(topic, partition)] = (pos, meta.to_json())
        return offsets, next_seq, ckpt_id
