"""``shoal savepoint``, ``shoal stop``, ``shoal scale`` and ``shoal state dump|diff``.

The first three talk to a running job through its control topic (see
``runtime.engine.control``); ``state`` reads savepoint folders only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from runtime.cli.common import kafka_options, resolve_client

_BOOTSTRAP = click.option(
    "--bootstrap", default=None, help="Kafka address; default: the local broker."
)
_GROUP = click.option("--group", default=None, help="The job's consumer group; default: JOB.")
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds every worker has to answer each step.",
)


def _echo(line: str) -> None:
    click.echo(line, err=True)


def _coordinator(job: str, group: str | None, bootstrap: str | None, timeout: float) -> Any:
    from runtime.savepoint.coordinator import CommandOptions, Coordinator

    options = CommandOptions(answer_s=timeout, drain_s=max(timeout, 60.0))
    return Coordinator(resolve_client(bootstrap), group or job, options, echo=_echo)


def _summary(manifest: Any, path: Path) -> str:
    keys = sum(int(s.get("keys", 0)) for s in manifest.state.values())
    return (
        f"savepoint of {manifest.job} written to {path}: {len(manifest.state)} stateful steps, "
        f"{keys:,} keys, {manifest.partitions} tasks"
    )


@click.command()
@click.argument("job")
@click.option(
    "--to",
    "dest",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The savepoint folder to write (new or empty).",
)
@_GROUP
@_BOOTSTRAP
@_TIMEOUT
@kafka_options
def savepoint(
    job: str, dest: Path, group: str | None, bootstrap: str | None, timeout: float
) -> None:
    """Take a savepoint of the running job JOB and let it go on.

    Every worker pauses its inputs, the repartition topics drain, the workers hold at
    one checkpoint while their committed state and offsets are written to the folder,
    then they resume. Fails naming the worker that did not answer. Of a stopped job
    (no live workers) its last checkpoint is taken, if nothing is in flight.
    """
    coordinator = _coordinator(job, group, bootstrap, timeout)
    try:
        manifest = coordinator.savepoint(dest)
    finally:
        coordinator.close()
    click.echo(_summary(manifest, dest))


@click.command()
@click.argument("job")
@click.option(
    "--savepoint",
    "dest",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Take a savepoint into this folder first, then stop at exactly that cut.",
)
@_GROUP
@_BOOTSTRAP
@_TIMEOUT
@kafka_options
def stop(
    job: str, dest: Path | None, group: str | None, bootstrap: str | None, timeout: float
) -> None:
    """Stop every worker of JOB cleanly (each checkpoints and leaves the group).

    A local supervisor (shoal run --workers N) exits when its workers have stopped.
    """
    coordinator = _coordinator(job, group, bootstrap, timeout)
    try:
        if dest is None:
            coordinator.stop()
            click.echo(f"stopped {job}")
            return
        manifest = coordinator.savepoint(dest, stop=True)
    finally:
        coordinator.close()
    click.echo(_summary(manifest, dest))
    click.echo(f"stopped {job}")


@click.command()
@click.argument("job")
@click.argument("workers", type=click.IntRange(min=1))
@_GROUP
@_BOOTSTRAP
@kafka_options
def scale(job: str, workers: int, group: str | None, bootstrap: str | None) -> None:
    """Set the worker count of JOB's local supervisor (shoal run --workers N).

    On Kubernetes, scale the StatefulSet instead (kubectl scale, or KEDA).
    """
    coordinator = _coordinator(job, group, bootstrap, 15.0)
    try:
        answer = coordinator.scale(workers)
    finally:
        coordinator.close()
    click.echo(f"{job}: {answer.get('before')} -> {answer.get('workers')} workers")


@click.group()
def state() -> None:
    """Read savepoints: a step's state as JSON lines, or the difference of two."""


def _rows(path: Path, step: str) -> Iterator[tuple[int, dict[str, Any]]]:
    from runtime.savepoint.datum import from_datum, json_ready
    from runtime.savepoint.format import Savepoint

    sp = Savepoint(path)
    entry = sp.step_state(step)
    typed = entry.get("value_schema") is not None
    for tid, row in sp.rows(step):
        out: dict[str, Any] = {"task": tid, "key": json_ready(from_datum(row["key"]))}
        for name, value in row.items():
            if name == "key":
                continue
            if name in ("acc", "value") and not (typed and name == "acc"):
                value = from_datum(value)
            out[name] = json_ready(value)
        yield tid, out


def _matches(row: dict[str, Any], key: str) -> bool:
    k = row["key"]
    return str(k) == key or json.dumps(k) == key


@state.command()
@click.argument("path", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.argument("step")
@click.option("--key", default=None, help="Only this key (as printed, or its JSON).")
def dump(path: Path, step: str, key: str | None) -> None:
    """Print the state of STEP in the savepoint DIR as JSON lines."""
    for _, row in _rows(path, step):
        if key is None or _matches(row, key):
            click.echo(json.dumps(row, sort_keys=True))


def _by_key(path: Path, step: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, row in _rows(path, step):
        body = {k: v for k, v in row.items() if k not in ("task", "key")}
        out.setdefault(json.dumps(row["key"], sort_keys=True), []).append(
            json.dumps(body, sort_keys=True)
        )
    return {k: sorted(v) for k, v in out.items()}


@state.command()
@click.argument("first", metavar="DIR1", type=click.Path(file_okay=False, path_type=Path))
@click.argument("second", metavar="DIR2", type=click.Path(file_okay=False, path_type=Path))
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Keys shown per step and kind of difference.")  # fmt: skip
def diff(first: Path, second: Path, limit: int) -> None:
    """Compare the state of two savepoints, step by step and key by key.

    Exit code 0 when they hold the same state, 1 when they differ.
    """
    from runtime.savepoint.format import Savepoint

    a, b = Savepoint(first), Savepoint(second)
    steps = sorted(set(a.manifest.state) | set(b.manifest.state))
    differ = False
    for step in steps:
        if step not in a.manifest.state or step not in b.manifest.state:
            where = first if step in a.manifest.state else second
            click.echo(f"{step}: only in {where}")
            differ = True
            continue
        left, right = _by_key(first, step), _by_key(second, step)
        gone = sorted(set(left) - set(right))
        new = sorted(set(right) - set(left))
        changed = sorted(k for k in set(left) & set(right) if left[k] != right[k])
        same = len(set(left) & set(right)) - len(changed)
        click.echo(
            f"{step}: {same:,} keys equal, {len(changed):,} changed, {len(gone):,} only in "
            f"{first}, {len(new):,} only in {second}"
        )
        for k in changed[:limit]:
            click.echo(f"  ~ {k}: {' | '.join(left[k])} -> {' | '.join(right[k])}")
        for k in gone[:limit]:
            click.echo(f"  - {k}")
        for k in new[:limit]:
            click.echo(f"  + {k}")
        differ = differ or bool(gone or new or changed)
    for name in sorted(set(a.manifest.sources) | set(b.manifest.sources)):
        pa = a.manifest.sources.get(name, {}).get("partitions", {})
        pb = b.manifest.sources.get(name, {}).get("partitions", {})
        oa = {p: v.get("offset") for p, v in pa.items()}
        ob = {p: v.get("offset") for p, v in pb.items()}
        if oa != ob:
            click.echo(f"source {name}: offsets {oa} -> {ob}")
    sys.exit(1 if differ else 0)
