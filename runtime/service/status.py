"""``/status``: this worker's part of its job, and how to see the whole job.

A worker knows only itself: its tasks, their partitions and watermarks, its lag, its
checkpoints and counters (its :class:`~runtime.engine.stats.WorkerStats` snapshot).
The whole job (every worker, every partition's committed offset) is read from Kafka
by ``shoal status JOB``; ``/status`` names that command line for this job and group,
and the live page shows both.
"""

from __future__ import annotations

import shlex
from typing import Any

from runtime.service.handle import NO_WATERMARK, Snapshot, WorkerHandle

__all__ = ["status_command", "worker_status"]


def status_command(job: str, group: str) -> str:
    """The ``shoal status`` command line for a job (``--group`` when it is not the name)."""
    args = ["shoal", "status", job]
    if group != job:
        args += ["--group", group]
    return shlex.join(args)


def worker_status(handle: WorkerHandle, snap: Snapshot, now_ms: int) -> dict[str, Any]:
    """The body of ``/status`` from one snapshot of the worker.

    Args:
        handle: the served worker (job, group, worker id).
        snap: what the worker reported.
        now_ms: wall clock, epoch ms (ages are measured from it).
    """
    age = None
    if snap.stats.last_checkpoint_ms is not None:
        age = round(max(0, now_ms - snap.stats.last_checkpoint_ms) / 1000, 3)
    task_of = {tp: tid for tid, pairs in snap.stats.partitions.items() for tp in pairs}
    partitions = [
        {
            "topic": topic,
            "partition": partition,
            "task": task_of.get((topic, partition)),
            "lag": snap.stats.lag.get((topic, partition)),
        }
        for topic, partition in sorted(set(task_of) | set(snap.stats.lag))
    ]
    tasks = [
        {
            "task": tid,
            "watermark_ms": wm if wm != NO_WATERMARK else None,
            "partitions": [f"{t}[{p}]" for t, p in snap.stats.partitions.get(tid, [])],
        }
        for tid, wm in sorted(snap.stats.watermarks.items())
    ]
    counters = snap.stats.counters.values()
    return {
        "job": handle.job_name,
        "group": handle.group,
        "worker": handle.worker_id or None,
        "time_ms": snap.time_ms,
        "responsive": snap.responsive,
        "failed": snap.stats.failed,
        "records_read": snap.stats.records_read,
        "lag_records": sum(snap.stats.lag.values()),
        "checkpoints": snap.stats.checkpoints,
        "last_checkpoint_age_s": age,
        "checkpoint_interval_ms": snap.stats.checkpoint_interval_ms,
        "checkpoint_failures": int(snap.stats.checkpoint_failures),
        "rewinds": snap.stats.rewinds,
        "late": sum(c.get("late", 0) for c in counters),
        "dead_lettered": sum(c.get("dead_lettered", 0) for c in counters),
        "state_entries": dict(sorted(snap.stats.state_entries.items())),
        "tasks": tasks,
        "partitions": partitions,
        "whole_job": {
            "command": status_command(handle.job_name, handle.group),
            "json": status_command(handle.job_name, handle.group) + " --json",
            "list": "shoal jobs",
        },
    }
