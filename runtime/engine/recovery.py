"""Where state is restored: local-state reuse, changelog replay, event-time progress
and rewinding, with errors that say where state does not decode.

A task that gets partitions is brought to its last committed checkpoint before it
processes anything (:func:`restore_task`):

1. **Which checkpoint**: the newest :class:`~runtime.engine.checkpoint.CheckpointMeta`
   committed with the offsets of the task's partitions (:func:`latest_checkpoint`).
2. **Reuse local state** when a store holds exactly that checkpoint (RocksDB written
   after the commit, see :mod:`runtime.engine.checkpoint`); its first entry is read
   so that state in an old format fails now (:func:`check_local_state`).
3. **Otherwise replay the changelog**: the store is cleared and the step's changelog
   partition of the task is read from the start (read_committed) into it, in
   batches (:func:`apply_changes`); the partitions of every task a worker opens at
   once are read together (:func:`restore_tasks`); a record this version cannot decode (corrupt, or
   written in the old format) fails the restore with one
   :class:`~runtime.api.errors.StateFormatError` naming the topic, partition and offset.
4. **Event-time progress** of each partition comes back from its offset's metadata
   (:func:`restore_progress`); once all of a new task's partitions are back, every
   stage takes up the watermark it had at the checkpoint before the first record
   (``Task.resume_event_time``): a record that was late then is late now, and a window
   that fired then (and is kept for allowed lateness) does not fire again.

A checkpoint that loses a race with a rebalance makes the worker **rewind**: it
reopens every task as above and moves the consumer back to the committed offsets
(:func:`seek_committed`); :class:`RewindGuard` checks that the first batch of each
partition really starts there.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runtime.api.errors import StateError, StateFormatError
from runtime.engine.checkpoint import STORE_META, CheckpointMeta, store_mark, stored_checkpoint
from runtime.engine.ports import ChangelogRead, Offsets, ReadsChangelogs
from runtime.engine.task import Task
from runtime.engine.topics import changelog_topic
from runtime.state.base import Change, StateStore
from runtime.state.serde import decode_key, decode_value

__all__ = [
    "Restored",
    "RewindGuard",
    "apply_changes",
    "check_local_state",
    "latest_checkpoint",
    "locate_bad_change",
    "restore_progress",
    "restore_task",
    "restore_tasks",
    "seek_committed",
]

# The worker's logger: restore lines read as they always did.
log = logging.getLogger("shoal.worker")

#: Changelog records applied to a store at once.
RESTORE_BATCH = 50_000
#: Chunks of changelog records fetched ahead while earlier ones are written.
PREFETCH_CHUNKS = 8
#: A long restore logs its progress every this many records.
RESTORE_PROGRESS_EVERY = 250_000

TopicPartition = tuple[str, int]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Restored:
    """What restoring one task did.

    Attributes:
        seq: the sequence number of the checkpoint the task's state is at (0: none).
        records: changelog records replayed.
        seconds: time spent.
    """

    seq: int
    records: int
    seconds: float


def latest_checkpoint(metadata: Iterable[str]) -> CheckpointMeta | None:
    """The newest checkpoint among the committed offsets' metadata of a task's partitions."""
    parsed = [m for m in (CheckpointMeta.parse(x) for x in metadata) if m is not None]
    return max(parsed, key=lambda m: m.seq, default=None)


def restore_task(
    task: Task,
    tid: int,
    last: CheckpointMeta | None,
    changelog: ChangelogRead | None,
    app: str,
) -> Restored:
    """Bring a new task's state to the committed checkpoint ``last`` (steps 2 and 3).

    Args:
        task: the task, just opened.
        tid: its id (the changelog partition).
        last: the checkpoint its partitions' offsets were committed with (``None``: none).
        changelog: reads a changelog partition from the start (``None``: no changelog).
        app: names changelog topics (the consumer group).

    Raises:
        StateFormatError: a changelog record or the reused local state does not decode.
    """
    return restore_tasks([(task, tid, last)], changelog, app)[tid]


@dataclass(slots=True)
class _Replay:
    """One store to fill from its changelog partition."""

    task: Task
    tid: int
    store: StateStore
    last: CheckpointMeta
    records: int = 0


def restore_tasks(
    tasks: Sequence[tuple[Task, int, CheckpointMeta | None]],
    changelog: ChangelogRead | None,
    app: str,
) -> dict[int, Restored]:
    """Bring new tasks' state to their committed checkpoints (steps 2 and 3), reading
    every changelog partition they replay together when the reader can
    (:class:`~runtime.engine.ports.ReadsChangelogs`).

    Args:
        tasks: ``(task, tid, last)``: each task just opened, its id (its changelog
            partition) and the checkpoint its partitions' offsets were committed with.
        changelog: reads changelog partitions from the start (``None``: no changelog).
        app: names changelog topics (the consumer group).

    Returns:
        What was done, per task id (``seconds`` is the time of the whole restore).

    Raises:
        StateFormatError: a changelog record or the reused local state does not decode.
    """
    t0 = time.monotonic()
    replays: dict[TopicPartition, _Replay] = {}
    for task, tid, last in tasks:
        for replay in _plan(task, tid, last, changelog is not None):
            replays[(changelog_topic(app, replay.store.name), tid)] = replay
    if replays and changelog is not None:
        _replay_all(replays, changelog, t0)
    for replay in replays.values():
        replay.store.put_meta(STORE_META, store_mark(replay.last))
        replay.store.checkpoint()
    took = time.monotonic() - t0
    out: dict[int, Restored] = {}
    for task, tid, last in tasks:
        if task.stores:
            task.reindex()
        records = sum(r.records for r in replays.values() if r.tid == tid)
        if records:
            log.warning(
                "task %s of %s restored %d changelog records in %.2fs",
                tid,
                task.job.name,
                records,
                took,
            )
        out[tid] = Restored(last.seq if last is not None else 0, records, took)
    return out


def _plan(task: Task, tid: int, last: CheckpointMeta | None, has_changelog: bool) -> list[_Replay]:
    """Reuse or clear each of the task's stores; the ones to replay."""
    seq = last.seq if last is not None else 0
    # Sequence numbers alone can repeat across workers; the id names one commit.
    ckpt = last.name if last is not None else None
    out: list[_Replay] = []
    for store in task.stores:
        local_ckpt = stored_checkpoint(store)
        log.info(
            "task %s store %s: local checkpoint %s, committed %s",
            tid,
            store.name,
            local_ckpt,
            ckpt,
        )
        if local_ckpt == ckpt and seq > 0:
            check_local_state(store)
            continue  # local state is exactly the committed checkpoint
        if local_ckpt is not None or len(store):
            store.clear()
        if last is not None and seq > 0 and has_changelog:
            out.append(_Replay(task, tid, store, last))
    return out


def _chunks(
    changelog: ChangelogRead, pairs: list[TopicPartition]
) -> Iterator[tuple[TopicPartition, list[tuple[bytes, bytes | None, int]]]]:
    """The partitions' records in chunks: all at once when the reader can, else one
    partition after another."""
    if isinstance(changelog, ReadsChangelogs):
        # Fetched ahead on a thread: the client waits for the broker without the
        # interpreter lock while the stores are written.
        yield from prefetched(changelog.read_many(pairs, RESTORE_BATCH), PREFETCH_CHUNKS)
        return
    for tp in pairs:
        chunk: list[tuple[bytes, bytes | None, int]] = []
        for record in changelog(*tp):
            chunk.append(record)
            if len(chunk) >= RESTORE_BATCH:
                yield tp, chunk
                chunk = []
        if chunk:
            yield tp, chunk


_END = object()


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, produced on a thread of their own at most ``depth`` ahead.

    An exception of ``items`` is raised here, where the item would have come; when the
    reader stops early, the thread stops and ``items`` is closed on it.
    """
    handoff: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        end: tuple[Any, BaseException | None] = (_END, None)
        try:
            for item in items:
                if not put((item, None)):
                    break
        except BaseException as exc:  # handed to the reader, raised there
            end = (_END, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            put(end)

    thread = threading.Thread(target=pump, name="shoal-restore-fetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = handoff.get()
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _replay_all(
    replays: dict[TopicPartition, _Replay], changelog: ChangelogRead, t0: float
) -> None:
    """Read the changelog partitions into their stores, logging progress."""
    pairs = sorted(replays)
    restored = 0
    reported = 0
    for tp, chunk in _chunks(changelog, pairs):
        replay = replays[tp]
        apply_changes(replay.store, [(k, v) for k, v, _ in chunk], [o for _, _, o in chunk], *tp)
        replay.records += len(chunk)
        restored += len(chunk)
        if restored - reported >= RESTORE_PROGRESS_EVERY:
            reported = restored
            log.warning(
                "restoring %d changelog partition(s) of %s: %d records so far (%.1fs)",
                len(pairs),
                replay.task.job.name,
                restored,
                time.monotonic() - t0,
            )


def restore_progress(task: Task, source: str, partition: int, metadata: str) -> None:
    """Apply a partition's event-time progress from its committed offset's metadata."""
    meta = CheckpointMeta.parse(metadata)
    if meta is not None:
        task.restore_progress(source, partition, meta.max_ts, meta.wm)


def seek_committed(offsets: Offsets, positions: dict[TopicPartition, int]) -> None:
    """Move the consumer back to ``positions`` (the committed offsets; partitions with
    none start at their beginning, which fills them in)."""
    unknown = [tp for tp, pos in positions.items() if pos < 0]
    positions.update(offsets.beginning(unknown))
    log.info("rewinding consumer to %s", sorted(positions.items()))
    offsets.seek(dict(positions))


class RewindGuard:
    """After a rewind, checks that each partition's first batch starts where the
    rewind pointed: a seek can be lost in a rebalance.

    Args:
        offsets: seeks again when a batch starts past the target.
    """

    def __init__(self, offsets: Offsets | None) -> None:
        self.offsets = offsets
        self._expect: dict[TopicPartition, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._expect)

    def expect(self, positions: dict[TopicPartition, int]) -> None:
        """The consumer was moved to ``positions``."""
        self._expect = {tp: [pos, 0] for tp, pos in positions.items()}

    def forget(self, tp: TopicPartition) -> None:
        """The partition is gone (revoked)."""
        self._expect.pop(tp, None)

    def accept(self, topic: str, partition: int, group: list[Any]) -> list[Any]:
        """The part of a batch that starts where the rewind pointed.

        Records before the target were already replayed; a batch that starts after it
        means the seek was lost, so seek again once. A second look at the same gap is
        accepted: offsets of a transactional input skip control records.
        """
        expect = self._expect.get((topic, partition))
        if expect is None:
            return group
        target, tries = expect
        first = group[0].offset()
        if first == target:
            del self._expect[(topic, partition)]
            return group
        if first < target:
            del self._expect[(topic, partition)]
            return [m for m in group if m.offset() >= target]
        if tries < 2 and self.offsets is not None:
            log.warning(
                "%s[%s]: expected offset %s after rewinding, got %s; seeking again",
                topic,
                partition,
                target,
                first,
            )
            expect[1] = tries + 1
            self.offsets.seek({(topic, partition): target})
            return []
        del self._expect[(topic, partition)]
        return group


def apply_changes(
    store: StateStore, changes: list[Change], offsets: Sequence[int], topic: str, partition: int
) -> None:
    """Restore one batch of changelog records into ``store``.

    Args:
        store: the store being restored.
        changes: ``(key, value)`` records, oldest first.
        offsets: the offset of each record in ``topic``.
        topic: the changelog topic; ``partition`` its partition.

    Raises:
        StateFormatError: a record does not decode; the message names where it is.
        StateError: the store could not take the changes for another reason.
    """
    try:
        store.restore(changes)
    except StateError as exc:
        where = locate_bad_change(changes, offsets)
        if where is None:
            raise
        offset, problem = where
        raise StateFormatError(
            f"changelog {topic}[{partition}] at offset {offset} (step {store.name!r}): {problem}"
        ) from exc


def locate_bad_change(changes: list[Change], offsets: Sequence[int]) -> tuple[int, str] | None:
    """The offset of the first record that does not decode, and why; ``None`` if all do."""
    for (raw_key, raw_value), offset in zip(changes, offsets, strict=True):
        try:
            decode_key(raw_key)
            if raw_value is not None:
                decode_value(raw_value)
        except StateError as exc:
            return offset, str(exc)
    return None


def check_local_state(store: StateStore) -> None:
    """Read a reused local store's first entry, so that an old format fails now.

    A store is written by one version at a time (this one refuses to reuse any
    other), so its first entry tells its format.

    Raises:
        StateFormatError: the entry does not decode; the message names the store.
    """
    next(iter(store.items()), None)
