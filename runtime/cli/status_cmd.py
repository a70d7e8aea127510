"""``shoal status JOB``: what a job's workers do, read from Kafka alone.

A Shoal job is a consumer group whose committed offsets carry checkpoint metadata
(``{"seq": ..., "id": ..., "wm": ..., "at": ...}``, written with every checkpoint). So
without any service of Shoal's own, the group tells who the workers are (static member
ids are ``<group>-<worker id>``, client ids name host and pid), which partitions each
holds, and the offsets name how far each input partition is committed, its event-time
watermark and when its last checkpoint committed. ``shoal jobs`` (see
:mod:`runtime.cli.jobs_cmd`) lists the jobs and reads each one's status from here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from runtime.cli.common import kafka_options, resolve_client

_INTERNAL = (".changelog", ".repartition")


@dataclass
class PartitionStatus:
    """One input partition of a job."""

    topic: str
    partition: int
    committed: int
    end: int
    lag: int
    checkpoint_seq: int | None
    watermark_ms: int | None
    checkpoint_age_s: float | None
    worker: str | None = None


@dataclass
class WorkerStatus:
    """One live worker of a job."""

    worker: str
    host: str
    pid: str
    address: str
    partitions: list[str] = field(default_factory=list)


@dataclass
class JobStatus:
    """A job's workers, partitions and dead letters."""

    group: str
    workers: list[WorkerStatus]
    partitions: list[PartitionStatus]
    dead_letters: int | None
    last_checkpoint_age_s: float | None
    lag: int


def checkpoint_meta(text: str) -> dict[str, Any] | None:
    """The checkpoint metadata of a committed offset, or ``None`` when it holds none."""
    if not text.startswith("{"):
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and "seq" in meta else None


def job_status(
    admin: Any,
    group: str,
    dead_letter_topic: str | None = None,
    committed: Mapping[tuple[str, int], tuple[int, str]] | None = None,
) -> JobStatus:
    """Read a job's status from its consumer group and topics.

    Args:
        admin: the cluster's admin client.
        group: the job's consumer group.
        dead_letter_topic: the job's dead-letter topic (its records are counted).
        committed: the group's committed offsets when already read (else read here).
    """
    now_ms = time.time_ns() // 1_000_000
    if committed is None:
        committed = admin.group_offsets(group)
    inputs = sorted(tp for tp in committed if not tp[0].endswith(_INTERNAL))
    ends = admin.end_offsets(inputs)
    owner: dict[tuple[str, int], str] = {}
    workers = []
    for m in admin.group_members(group):
        wid = (m.instance_id or m.client_id).removeprefix(f"{group}-")
        rest, _, pid = m.client_id.rpartition(":")
        host = rest.rpartition("@")[2] if "@" in rest else "?"
        for tp in m.partitions:
            owner[tp] = wid
        workers.append(
            WorkerStatus(wid, host, pid, m.host.strip("/"), [f"{t}[{p}]" for t, p in m.partitions])
        )
    parts = []
    for tp in inputs:
        offset, text = committed[tp]
        meta = checkpoint_meta(text) or {}
        at = meta.get("at")
        parts.append(
            PartitionStatus(
                tp[0],
                tp[1],
                offset,
                ends.get(tp, offset),
                max(0, ends.get(tp, offset) - offset),
                meta.get("seq"),
                meta.get("wm"),
                (now_ms - at) / 1000 if isinstance(at, int) else None,
                owner.get(tp),
            )
        )
    dead = None
    if dead_letter_topic and dead_letter_topic in admin.topics():
        pairs = [(dead_letter_topic, p) for p in range(admin.topics()[dead_letter_topic])]
        hi, lo = admin.end_offsets(pairs), admin.end_offsets(pairs, earliest=True)
        dead = sum(hi[tp] - lo[tp] for tp in pairs)
    ages = [p.checkpoint_age_s for p in parts if p.checkpoint_age_s is not None]
    return JobStatus(
        group,
        sorted(workers, key=lambda w: w.worker),
        parts,
        dead,
        min(ages) if ages else None,
        sum(p.lag for p in parts),
    )


def watermarks_on(admin: Any, topics: list[str]) -> dict[str, int]:
    """The event-time watermark of every job that reads ``topics``: group -> the highest
    watermark its last checkpoint committed on one of their partitions."""
    wanted = set(topics)
    found: dict[str, int] = {}
    for group in admin.groups():
        for (topic, _), (_, text) in admin.group_offsets(group).items():
            wm = (checkpoint_meta(text) or {}).get("wm") if topic in wanted else None
            if isinstance(wm, int) and wm > found.get(group, -(2**63)):
                found[group] = wm
    return found


def age_text(seconds: float | None) -> str:
    """``"12s ago"``, or ``"-"`` when unknown."""
    return "-" if seconds is None else f"{seconds:.0f}s ago"


def _when(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


@click.command()
@click.argument("job")
@click.option("--group", default=None, help="The job's consumer group; default: JOB.")
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@click.option("--json", "as_json", is_flag=True, help="The status as one JSON object.")
@kafka_options
def status(job: str, group: str | None, bootstrap: str | None, as_json: bool) -> None:
    """Workers, partitions, lag, watermarks and checkpoints of JOB, from Kafka alone."""
    from connectors.kafka.admin import KafkaAdmin
    from runtime.api.errors import ConfigError

    admin = KafkaAdmin(resolve_client(bootstrap))
    app = group or job
    s = job_status(admin, app, f"{job}.dead-letters")
    if not s.partitions and not s.workers:
        raise ConfigError(f"no job {app!r}: its group has no members and no checkpoints")
    if as_json:
        click.echo(json.dumps(asdict(s)))
        return
    click.echo(
        f"job {job} (group {app}): {len(s.workers)} worker(s), lag {s.lag}, "
        f"last checkpoint {age_text(s.last_checkpoint_age_s)}, "
        f"dead letters {'-' if s.dead_letters is None else s.dead_letters}"
    )
    click.echo(f"\n{'WORKER':24} {'HOST':20} {'PID':>7}  PARTITIONS")
    for w in s.workers:
        click.echo(f"{w.worker:24} {w.host:20} {w.pid:>7}  {', '.join(w.partitions) or '-'}")
    click.echo(
        f"\n{'PARTITION':28} {'COMMITTED':>10} {'LAG':>8} {'SEQ':>6}  "
        f"{'WATERMARK (UTC)':19}  {'CHECKPOINT':12} WORKER"
    )
    for p in s.partitions:
        click.echo(
            f"{p.topic + '[' + str(p.partition) + ']':28} {p.committed:>10} {p.lag:>8} "
            f"{p.checkpoint_seq if p.checkpoint_seq is not None else '-':>6}  "
            f"{_when(p.watermark_ms):19}  {age_text(p.checkpoint_age_s):12} {p.worker or '-'}"
        )
