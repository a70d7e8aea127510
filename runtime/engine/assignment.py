"""Which task owns which input partition: tasks open (restored first) when partitions
are assigned and close when their last partition is revoked.

Task ``p`` owns input partition ``p`` (of every co-partitioned input, and of the
internal topics of repartitioning steps). A job whose ``key_by`` repartitions in
process runs as a single task 0 that owns every partition (see
:func:`needs_single_task`). A closed task's counters stay in the totals and its last
watermark in :attr:`Assignment.last_watermarks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runtime.api.graph import KeyByNode, TableKind
from runtime.api.io import CodecFactory
from runtime.api.job import Job
from runtime.engine.checkpoint import CheckpointMeta
from runtime.engine.context import Tap
from runtime.engine.ports import ChangelogRead, TableFeed
from runtime.engine.recovery import latest_checkpoint, restore_progress, restore_tasks
from runtime.engine.task import Task
from runtime.state.base import StateBackend

__all__ = ["Assignment", "needs_single_task"]

TopicPartition = tuple[str, int]
_NONE = (-1, "")


def needs_single_task(job: Job) -> bool:
    """True when a ``key_by`` needs repartitioning: then one task owns every partition.

    Keyed state must live in exactly one task per key. When every key_by declares
    the input already partitioned by its key (``repartition=False``), each input
    partition is a task of its own and the job scales across workers; otherwise the
    worker runs the whole job in one task, which is correct on a single worker.
    """
    return any(isinstance(n, KeyByNode) and n.repartition for n in job.nodes)


class Assignment:
    """A worker's tasks and the partitions they own.

    Args:
        job: the job.
        codecs: the job's codecs.
        backend: opens one state store per (stateful step, task).
        clock: processing clock in epoch ms.
        taps: live taps, shared with every task.
        topic_source: topic -> the source (or internal source) it feeds.
        changelog: reads a changelog partition (restore; ``None``: no changelog).
        app: names changelog topics (the consumer group).
        repartition_partitions: partitions of the internal topics (``None``: the job
            repartitions in process).
        tables: reads table topics (``None``: the job's tables stay empty, as in
            tests that feed them themselves).
        table_topics: table name -> its topic.
    """

    def __init__(
        self,
        job: Job,
        codecs: CodecFactory,
        backend: StateBackend,
        clock: Callable[[], int],
        *,
        taps: dict[str, Tap],
        topic_source: Mapping[str, str],
        changelog: ChangelogRead | None,
        app: str,
        repartition_partitions: int | None,
        tables: TableFeed | None = None,
        table_topics: Mapping[str, str] | None = None,
    ) -> None:
        self.job = job
        self.tables = tables
        self.table_topics = dict(table_topics or {})
        self.codecs = codecs
        self.backend = backend
        self.clock = clock
        self.taps = taps
        self.topic_source = topic_source
        self.changelog = changelog
        self.app = app
        self.repartition_partitions = repartition_partitions
        self.single_task = repartition_partitions is None and needs_single_task(job)
        self.tasks: dict[int, Task] = {}
        #: Next offset to read per partition (negative: nothing read or committed yet).
        self.positions: dict[TopicPartition, int] = {}
        #: Final watermarks of closed tasks.
        self.last_watermarks: dict[int, int] = {}
        self.restored_records = 0
        self.restore_seconds = 0.0
        self._retired: dict[str, dict[str, int]] = {}

    def task_id(self, partition: int) -> int:
        """The task that owns an input partition."""
        return 0 if self.single_task else partition

    def assign(
        self, pairs: list[TopicPartition], committed: Mapping[TopicPartition, tuple[int, str]]
    ) -> dict[int, int]:
        """Take partitions: reading starts at their committed offsets, and their new
        tasks are restored to the checkpoint those offsets were committed with.

        Returns:
            The checkpoint sequence number of every task opened here.
        """
        new_tasks: dict[int, list[TopicPartition]] = {}
        for tp in pairs:
            tid = self.task_id(tp[1])
            self.positions[tp] = committed.get(tp, _NONE)[0]
            if tid not in self.tasks:
                new_tasks.setdefault(tid, []).append(tp)
            else:
                self._add_partition(self.tasks[tid], tp, committed)
        opened: dict[int, int] = {}
        fresh: list[tuple[Task, int, CheckpointMeta | None]] = []
        for tid, tps in new_tasks.items():
            task = Task(
                self.job,
                tid,
                self.codecs,
                self.backend,
                self.clock,
                taps=self.taps,
                repartition_partitions=self.repartition_partitions,
            )
            self.tasks[tid] = task
            fresh.append((task, tid, latest_checkpoint(committed.get(tp, _NONE)[1] for tp in tps)))
        # Every new task's changelog partitions are read together.
        restored = restore_tasks(fresh, self.changelog, self.app)
        if restored:
            self.restore_seconds += max(r.seconds for r in restored.values())
        for task, tid, _ in fresh:
            opened[tid] = restored[tid].seq
            self.restored_records += restored[tid].records
            self._load_tables(task, tid)
            for tp in new_tasks[tid]:
                self._add_partition(task, tp, committed)
            task.resume_event_time()
        return opened

    def _load_tables(self, task: Task, tid: int) -> None:
        """Read a new task's tables from the start of their partitions to the end they
        have now, before the task processes any record (``runtime.engine.tables``)."""
        if self.tables is None:
            return
        for name, table in task.tables.items():
            topic = self.table_topics.get(name, name)
            node = self.job.node(name)
            count = self.tables.partitions(topic)
            everything = self.single_task or getattr(node, "table_kind", None) is TableKind.GLOBAL
            held = frozenset(range(count)) if everything else frozenset({tid})
            table.reset()
            table.partitions = held
            tasks = self.repartition_partitions
            if everything and not self.single_task and tasks:
                table.reports = frozenset(p for p in held if p % tasks == tid)
            for partition in sorted(held):
                for batch in self.tables.load(topic, partition):
                    table.apply(batch)

    def table_positions(self) -> dict[TopicPartition, int]:
        """Where to follow each table partition the open tasks hold: the lowest next
        offset among them (a task already past a record passes it over)."""
        out: dict[TopicPartition, int] = {}
        for task in self.tasks.values():
            for name, table in task.tables.items():
                topic = self.table_topics.get(name, name)
                for partition in table.partitions or ():
                    at = table.positions.get(partition, 0)
                    tp = (topic, partition)
                    out[tp] = min(out.get(tp, at), at)
        return out

    def _add_partition(
        self, task: Task, tp: TopicPartition, committed: Mapping[Any, tuple[int, str]]
    ) -> None:
        source = self.topic_source[tp[0]]
        task.add_partition(source, tp[1])
        restore_progress(task, source, tp[1], committed.get(tp, _NONE)[1])

    def revoke(self, pairs: list[TopicPartition]) -> None:
        """Give partitions up; a task that owns none any more closes."""
        for topic, partition in pairs:
            self.positions.pop((topic, partition), None)
            tid = self.task_id(partition)
            task = self.tasks.get(tid)
            if task is not None:
                task.remove_partition(self.topic_source[topic], partition)
                if not any(self.task_id(tp[1]) == tid for tp in self.positions):
                    self._retire(tid, task)
                    del self.tasks[tid]

    def retire_all(self) -> list[TopicPartition]:
        """Close every task and forget every partition (a rewind reopens them).

        Returns:
            The partitions that were held.
        """
        pairs = list(self.positions)
        for tid, task in self.tasks.items():
            self._retire(tid, task)
        self.tasks.clear()
        self.positions.clear()
        return pairs

    def _retire(self, tid: int, task: Task) -> None:
        """Close a task, keeping its counts in the totals and its final watermark."""
        self.last_watermarks[tid] = task.watermark
        _add_counts(self._retired, task.counters())
        task.close()

    def partitions_by_task(self) -> dict[int, list[TopicPartition]]:
        """Task id -> the partitions it owns, sorted."""
        out: dict[int, list[TopicPartition]] = {}
        for tp in self.positions:
            out.setdefault(self.task_id(tp[1]), []).append(tp)
        return {tid: sorted(tps) for tid, tps in out.items()}

    def state_entries(self) -> dict[str, int]:
        """Stateful step -> entries in its stores over the open tasks."""
        entries: dict[str, int] = {}
        for task in self.tasks.values():
            for store in task.stores:
                entries[store.name] = entries.get(store.name, 0) + len(store)
        return entries

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-step counters summed over tasks (closed ones included)."""
        total: dict[str, dict[str, int]] = {}
        for task in self.tasks.values():
            _add_counts(total, task.counters())
        _add_counts(total, self._retired)
        return total

    def close(self) -> None:
        """Close every task's state (``last_watermarks`` keeps their final watermarks)."""
        self.last_watermarks.update({tid: t.watermark for tid, t in self.tasks.items()})
        for task in self.tasks.values():
            task.close()
        self.tasks.clear()


def _add_counts(total: dict[str, dict[str, int]], counts: Mapping[str, Mapping[str, int]]) -> None:
    for step, c in counts.items():
        acc = total.setdefault(step, dict.fromkeys(c, 0))
        for k, v in c.items():
            acc[k] += v
