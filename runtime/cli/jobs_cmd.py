"""``shoal jobs``: the Shoal jobs on a cluster, from consumer groups and control topics.

Two traces in Kafka say a Shoal job exists, and ``shoal jobs`` merges them by group:

* **checkpoints**: a consumer group whose committed offsets carry checkpoint
  metadata (see :mod:`runtime.cli.status_cmd`);
* **the announcement**: the ``job`` record of the group's control topic
  ``<group>.control``, which every worker writes as it starts (see
  :mod:`runtime.savepoint.wiring`): the job's name, its steps, when it was announced.

A job that just started, or that stopped before its first checkpoint, has only the
announcement; a job of an older Shoal, or whose control topic was deleted, has only
checkpoints. A control topic whose ``job`` record is not an announcement (another
tool's topic that happens to end in ``.control``) is named on stderr and ignored.

The merge (:func:`find_jobs`) and the output (:func:`job_record`, :func:`jobs_table`)
are pure functions; reading the cluster is the thin :func:`_read_cluster`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import click

from runtime.cli.common import kafka_options, resolve_client
from runtime.cli.status_cmd import JobStatus, age_text, checkpoint_meta, job_status

if TYPE_CHECKING:
    from connectors.kafka.admin import KafkaAdmin
    from connectors.kafka.config import KafkaClientConfig

__all__ = ["Announcement", "FoundJob", "find_jobs", "job_record", "jobs", "jobs_table"]

#: The control topic of group ``g`` is ``g + CONTROL_SUFFIX``.
CONTROL_SUFFIX = ".control"

Offsets = Mapping[tuple[str, int], tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a job's workers announced on its control topic (the parts ``shoal jobs`` shows)."""

    job: str
    steps: list[str]
    announced_ms: int | None = None
    dead_letters: str | None = None


@dataclass(frozen=True, slots=True)
class FoundJob:
    """A job found on the cluster: its group, whether it checkpointed, what it announced."""

    group: str
    checkpointed: bool
    announcement: Announcement | None = None


def read_announcement(group: str, raw: bytes) -> Announcement:
    """Parse the ``job`` record of ``group``'s control topic (only ever parsed, never run).

    Raises:
        ValueError: the record is not a Shoal job announcement (the message says why).
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    name = value.get("job")
    if not isinstance(name, str) or not name:
        raise ValueError("no job name")
    announced_group = value.get("group", group)
    if announced_group != group:
        raise ValueError(f"it announces group {announced_group!r}")
    steps = value.get("steps")
    if not isinstance(steps, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) for s in steps
    ):
        raise ValueError("no list of named steps")
    at = value.get("announced_ms")
    dead = value.get("dead_letters")
    return Announcement(
        job=name,
        steps=[s["name"] for s in steps],
        announced_ms=at if isinstance(at, int) and not isinstance(at, bool) else None,
        dead_letters=dead if isinstance(dead, str) and dead else None,
    )


def find_jobs(
    offsets: Mapping[str, Offsets], announcements: Mapping[str, bytes]
) -> tuple[list[FoundJob], list[str]]:
    """Merge what consumer groups and control topics say into one list of jobs.

    Args:
        offsets: group -> its committed ``(topic, partition) -> (offset, metadata)``.
        announcements: group -> the raw ``job`` record of its control topic.

    Returns:
        The jobs sorted by group (a group is a job when an offset carries checkpoint
        metadata or its control topic holds an announcement), and one line per
        control-topic record that is not an announcement (ignored).
    """
    found: list[FoundJob] = []
    problems: list[str] = []
    for group in sorted(set(offsets) | set(announcements)):
        checkpointed = any(checkpoint_meta(text) for _, text in offsets.get(group, {}).values())
        announcement = None
        if group in announcements:
            try:
                announcement = read_announcement(group, announcements[group])
            except ValueError as exc:
                problems.append(
                    f"{group}{CONTROL_SUFFIX}: its job record is not a Shoal job "
                    f"announcement ({exc}); ignored"
                )
        if checkpointed or announcement is not None:
            found.append(FoundJob(group, checkpointed, announcement))
    return found, problems


def job_record(job: FoundJob, status: JobStatus) -> dict[str, Any]:
    """One line of ``shoal jobs --json``: the group's status and what the job announced.

    Every line has the same keys: those of ``shoal status --json`` plus ``job``,
    ``steps``, ``announced_ms`` (``None``/``[]`` without an announcement) and
    ``checkpointed``.
    """
    a = job.announcement
    return {
        **asdict(status),
        "job": a.job if a is not None else None,
        "steps": list(a.steps) if a is not None else [],
        "announced_ms": a.announced_ms if a is not None else None,
        "checkpointed": job.checkpointed,
    }


def jobs_table(records: list[dict[str, Any]], now_ms: int) -> list[str]:
    """The lines ``shoal jobs`` prints for ``records`` (see :func:`job_record`)."""
    if not records:
        return ["no Shoal jobs (no group holds checkpoints, no control topic an announcement)"]
    lines = [
        f"{'GROUP':32} {'JOB':20} {'STEPS':>5} {'WORKERS':>7} {'LAG':>10}  "
        f"{'LAST CHECKPOINT':16} ANNOUNCED"
    ]
    for r in records:
        checkpoint = age_text(r["last_checkpoint_age_s"]) if r["checkpointed"] else "none yet"
        at = r["announced_ms"]
        announced = "-" if at is None else age_text(max(0, now_ms - at) / 1000)
        steps = len(r["steps"]) if r["job"] is not None else "-"
        lines.append(
            f"{r['group']:32} {r['job'] or '-':20} {steps:>5} {len(r['workers']):>7} "
            f"{r['lag']:>10}  {checkpoint:16} {announced}"
        )
    return lines


@dataclass
class _Cluster:
    """What ``shoal jobs`` read: offsets of every group, announcements of control topics."""

    offsets: dict[str, Offsets] = field(default_factory=dict)
    announcements: dict[str, bytes] = field(default_factory=dict)


def _read_cluster(admin: KafkaAdmin, client: KafkaClientConfig) -> _Cluster:
    from connectors.kafka.control import latest_values

    out = _Cluster()
    for group in admin.groups():
        out.offsets[group] = admin.group_offsets(group)
    controls = [t for t in admin.topics() if t.endswith(CONTROL_SUFFIX)]
    for topic, raw in latest_values(client, controls, "job").items():
        out.announcements[topic.removesuffix(CONTROL_SUFFIX)] = raw
    return out


@click.command()
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@kafka_options
def jobs(bootstrap: str | None, as_json: bool) -> None:
    """List the Shoal jobs on the cluster: groups with checkpoints, jobs announced on
    their control topics (also those that have no checkpoint yet)."""
    from connectors.kafka.admin import KafkaAdmin

    client = resolve_client(bootstrap)
    admin = KafkaAdmin(client)
    cluster = _read_cluster(admin, client)
    found, problems = find_jobs(cluster.offsets, cluster.announcements)
    for line in problems:
        click.echo(f"warning: {line}", err=True)
    records = []
    for job in found:
        dead = job.announcement.dead_letters if job.announcement is not None else None
        status = job_status(admin, job.group, dead, cluster.offsets.get(job.group, {}))
        records.append(job_record(job, status))
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
        return
    for line in jobs_table(records, time.time_ns() // 1_000_000):
        click.echo(line)
