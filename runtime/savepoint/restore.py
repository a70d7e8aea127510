"""Starts a job from a savepoint: check, load, then seed the group before any worker runs.

``shoal run --from-savepoint DIR|URL`` does, in order:

1. **check** (:mod:`runtime.savepoint.compat`): the new job against the savepoint;
   problems are reported one line per step and nothing is written (exit code 2);
2. **load**: every restored step's rows are read (resolved, migrated or checked),
   turned back into state entries and assigned to tasks: the same task when the
   input partition count is unchanged, else the task that owns the key
   (``partition_for(key)``, as the repartition topics place it). A value that does
   not fit is a problem too, still before anything is written;
3. **seed** the consumer group, which must have no live members: every stateful
   step's changelog partition gets exactly the savepoint's state (keys it held
   before are deleted), and the group's offsets are committed with checkpoint
   metadata naming a new checkpoint (input offsets and watermarks from the
   savepoint; repartition topics at their ends, which the savepoint's cut left
   empty). Workers then start as after any restart: they restore each task from
   its changelog, because no local state matches the new checkpoint id.

Seeding holds the state in memory; its writes are idempotent, so a failed seed is
simply run again.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from connectors.avro.schema_tree import normalize
from connectors.avro.validation import find_violation
from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.config import KafkaClientConfig
from connectors.kafka.control import commit_group_offsets, iter_partition
from connectors.kafka.sink import KafkaSink
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ConnectorError, InvariantError, StateError
from runtime.api.job import Job
from runtime.engine.repartition import partition_for
from runtime.engine.topics import key_bytes
from runtime.savepoint.compat import RestorePlan, StepPlan
from runtime.savepoint.datum import from_datum, to_datum
from runtime.savepoint.format import Savepoint
from runtime.savepoint.layouts import entries_from_rows, row_key, row_schema
from runtime.savepoint.storage import Location
from runtime.savepoint.take import changelog_name, repartition_name
from runtime.state.serde import encode_key, encode_value

__all__ = ["LoadedState", "load_state", "parse_renames", "seed_group", "start_from_savepoint"]

#: Encoded state of one step: task -> ``(key, value)`` records for its changelog.
TaskState = dict[int, list[tuple[bytes, bytes]]]


@dataclass
class LoadedState:
    """The savepoint's state in the new job's shape, ready to seed."""

    steps: dict[str, TaskState]
    problems: list[str]


def _acc_value(row: dict[str, Any], typed_old: bool) -> Any:
    return row["acc"] if typed_old else from_datum(row["acc"])


def _rows(
    sp: Savepoint, plan: StepPlan, new_schema: Any, migrate: Callable[[Any], Any] | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The step's rows with accumulators as plain values (``acc``) in the new form."""
    if plan.old is None:
        raise InvariantError(f"step {plan.new!r} has no state in the savepoint to read")
    entry = sp.step_state(plan.old)
    layout = plan.layout
    typed_old = entry.get("value_schema") is not None
    reader = row_schema(layout, plan.old, new_schema) if plan.values == "resolved" else None
    for tid, row in sp.rows(plan.old, reader_schema=reader):
        if layout == "join":  # kept records as they are: a join declares no state type
            yield tid, row
            continue
        if layout == "process":
            if plan.values == "migrated" and row["kind"] == "state" and migrate is not None:
                row["value"] = to_datum(migrate(from_datum(row["value"])))
            yield tid, row
            continue
        acc = row["acc"] if plan.values == "resolved" else _acc_value(row, typed_old)
        if plan.values == "migrated" and migrate is not None:
            acc = migrate(acc)
        row["acc"] = acc
        yield tid, row


def load_state(
    sp: Savepoint, plan: RestorePlan, job: Job, description: Mapping[str, Any], partitions: int
) -> LoadedState:
    """Read, convert and place the savepoint's state for the new job (no writes).

    Args:
        sp: the savepoint.
        plan: the compatibility plan (must be ok).
        job: the new job (migrate functions).
        description: the new job's description.
        partitions: the new input partition count (the number of tasks).
    """
    new_steps = {s["name"]: s for s in description.get("steps", [])}
    rekey = partitions != sp.manifest.partitions
    out: dict[str, TaskState] = {}
    problems: list[str] = []
    for name, step_plan in plan.by_new().items():
        declared = new_steps[name].get("state") or {}
        new_schema = declared.get("value")
        schemas = job.state_schemas
        migrate = schemas[name].migrate if name in schemas else None
        tree = normalize(new_schema) if new_schema is not None else None
        by_task: dict[int, list[dict[str, Any]]] = {}
        label = step_plan.old if step_plan.old == name else f"{step_plan.old} -> {name}"
        try:
            for tid, row in _rows(sp, step_plan, new_schema, migrate):
                if tree is not None and step_plan.layout not in ("process", "join"):
                    bad = find_violation(row["acc"], tree)
                    if bad is not None:
                        problems.append(
                            f"{label}: a value under key {row_key(row)!r:.60} does not fit the "
                            f"new schema: {bad}"
                        )
                        break
                target = partition_for(key_bytes(row_key(row)), partitions) if rekey else tid
                by_task.setdefault(target, []).append(row)
        except StateError as exc:
            problems.append(f"{label}: {exc}")
            continue
        except Exception as exc:  # a user migrate function failing on a value
            problems.append(f"{label}: migration failed: {type(exc).__name__}: {exc}")
            continue
        encoded: TaskState = {}
        for tid, rows in by_task.items():
            entries = entries_from_rows(step_plan.layout, rows, typed=True)
            encoded[tid] = [(encode_key(k), encode_value(v)) for k, v in entries]
        out[name] = encoded
    return LoadedState(out, problems)


def seed_group(
    client: KafkaClientConfig,
    admin: KafkaAdmin,
    group: str,
    job: Job,
    bindings: Bindings,
    sp: Savepoint,
    state: LoadedState,
    description: Mapping[str, Any],
    partitions: int,
    renames: Mapping[str, str],
    echo: Callable[[str], None] = lambda _line: None,
) -> str:
    """Write the state to the group's changelogs and commit its offsets; returns the
    checkpoint id seeded.

    Raises:
        ConfigError: the group has live members.
        ConnectorError: a write or the commit failed (run the command again).
    """
    members = admin.group_members(group)
    if members:
        raise ConfigError(
            f"group {group!r} has {len(members)} live workers: stop them (shoal stop {group}) "
            "before starting it from a savepoint, or use another --group"
        )
    existing = admin.group_offsets(group)
    seq = 1 + max((_seq(m) for _, m in existing.values()), default=0)
    ckpt = f"savepoint-{secrets.token_hex(4)}"
    sink = KafkaSink(client)
    written = 0
    stateful = [s["name"] for s in description.get("steps", []) if "layout" in s]
    # Topics made a moment ago may not have a leader yet: ask until they answer.
    ends = _retry(
        lambda: admin.end_offsets(
            [(changelog_name(group, s), t) for s in stateful for t in range(partitions)]
        )
    )
    for name in stateful:
        topic = changelog_name(group, name)
        tasks = state.steps.get(name, {})
        for tid in range(partitions):
            records = tasks.get(tid, [])
            keep = {k for k, _ in records}
            for key, _value in iter_partition(client, topic, tid, ends.get((topic, tid), 0)):
                if key not in keep:
                    keep.add(key)
                    sink.write(topic, key, None, None, partition=tid)
            for key, value in records:
                sink.write(topic, key, value, None, partition=tid)
            written += len(records)
        sink.flush()
        if tasks:
            echo(f"  {name}: {sum(len(r) for r in tasks.values()):,} keys written")
    sink.close()
    now = time.time_ns() // 1_000_000
    offsets: dict[tuple[str, int], tuple[int, str]] = {}
    counts = admin.topics()
    wms = [
        int(p["wm"])
        for src in sp.manifest.sources.values()
        for p in src.get("partitions", {}).values()
        if p.get("wm") is not None
    ]
    for name, topic in bindings.sources.items():
        saved = sp.manifest.sources.get(name, {}).get("partitions", {})
        n = counts.get(topic, 0)
        starts = admin.end_offsets([(topic, p) for p in range(n)], earliest=True)
        for p in range(n):
            info = saved.get(str(p))
            offset = int(info["offset"]) if info else starts[(topic, p)]
            max_ts = info.get("max_ts") if info else None
            wm = info.get("wm") if info else (min(wms) if wms else None)
            offsets[(topic, p)] = (offset, _meta(seq, ckpt, max_ts, wm, now))
    inverse = {v: k for k, v in renames.items()}
    for step in description.get("steps", []):
        if step.get("kind") != "keyby" or not step.get("repartition"):
            continue
        topic = repartition_name(group, step["name"])
        saved = sp.manifest.repartition.get(inverse.get(step["name"], step["name"]), {})
        pairs = [(topic, p) for p in range(partitions)]
        ends = _retry(partial(admin.end_offsets, pairs))
        for p in range(partitions):
            info = (
                saved.get("partitions", {}).get(str(p))
                if partitions == sp.manifest.partitions
                else None
            )
            wm = info.get("wm") if info else None
            offsets[(topic, p)] = (ends[(topic, p)], _meta(seq, ckpt, None, wm, now))
    commit_group_offsets(client, group, offsets)
    echo(f"  offsets of {len(offsets)} partitions committed as checkpoint {seq}.{ckpt}")
    return ckpt


def _retry(call: Callable[[], Any], attempts: int = 20) -> Any:
    """``call()``, asked again for a while when the cluster is not ready yet."""
    for _ in range(attempts - 1):
        try:
            return call()
        except ConnectorError:
            time.sleep(0.5)
    return call()


def _seq(meta: str) -> int:
    try:
        data = json.loads(meta) if meta.startswith("{") else {}
    except ValueError:
        return 0
    value = data.get("seq", 0) if isinstance(data, dict) else 0
    return value if isinstance(value, int) else 0


def _meta(seq: int, ckpt: str, max_ts: Any, wm: Any, now: int) -> str:
    meta: dict[str, Any] = {"seq": seq, "id": ckpt, "at": now}
    if max_ts is not None:
        meta["max_ts"] = max_ts
    if wm is not None:
        meta["wm"] = wm
    return json.dumps(meta, separators=(",", ":"))


def parse_renames(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``OLD=NEW`` options as a mapping.

    Raises:
        ConfigError: a pair is malformed or renames a step twice.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ConfigError(f"--rename {pair!r}: use --rename OLD=NEW")
        if old in out:
            raise ConfigError(f"--rename: step {old!r} is renamed twice")
        out[old] = new
    return out


def start_from_savepoint(
    client: KafkaClientConfig,
    job: Job,
    bindings: Bindings,
    group: str,
    path: Location,
    *,
    renames: Mapping[str, str],
    allow_dropped: bool,
    output_partitions: int,
    replication: int,
    echo: Callable[[str], None],
) -> list[str]:
    """Check, load and seed (see the module docstring); returns the problems found.

    ``path`` is a folder, a URL (``s3://bucket/prefix``) or a storage. When the list
    is not empty nothing was written: not a topic, not an offset.
    """
    from runtime.engine.describe import describe_job
    from runtime.runner import ensure_topics
    from runtime.savepoint.compat import compare

    sp = Savepoint(path)
    description = describe_job(job, sources=bindings.sources, sinks=bindings.sinks)
    admin = KafkaAdmin(client)
    counts = admin.topics()
    missing = [t for t in bindings.sources.values() if t not in counts]
    if missing:
        raise ConfigError(f"job {job.name!r} reads topics that do not exist: {', '.join(missing)}")
    partitions = max(counts[t] for t in bindings.sources.values())
    plan = compare(
        sp.manifest,
        description,
        job,
        renames=renames,
        allow_dropped=allow_dropped,
        partitions=partitions,
    )
    if not plan.ok:
        return plan.problems
    state = load_state(sp, plan, job, description, partitions)
    if state.problems:
        return state.problems
    echo(
        f"from savepoint {sp.location} ({sp.manifest.job}, group {sp.manifest.group}, "
        f"{sp.manifest.partitions} tasks) into group {group} ({partitions} tasks):"
    )
    for step in plan.steps:
        echo(f"  {step.line()}")
    for note in plan.notes:
        echo(f"  note: {note}")
    ensure_topics(job, bindings, admin, output_partitions, group, replication)
    seed_group(
        client,
        admin,
        group,
        job,
        bindings,
        sp,
        state,
        description,
        partitions,
        renames,
        echo=echo,
    )
    return []
