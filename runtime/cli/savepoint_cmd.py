"""``shoal savepoint``, ``shoal stop``, ``shoal scale`` and ``shoal state dump|diff``.

The first three talk to a running job through its control topic (see
``runtime.engine.control``); ``state`` reads savepoints only. A savepoint location is
a local folder or a URL of an object store (``s3://bucket/prefix``, with the ``s3``
extra; see ``runtime.savepoint.storage``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from runtime.api.errors import ConfigError
from runtime.cli.common import (
    kafka_options,
    parse_storage_pairs,
    resolve_client,
    savepoint_storages,
    storage_option,
)

if TYPE_CHECKING:
    from runtime.savepoint.format import Savepoint
    from runtime.savepoint.storage import Storage

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


def _summary(manifest: Any, where: str) -> str:
    keys = sum(int(s.get("keys", 0)) for s in manifest.state.values())
    return (
        f"savepoint of {manifest.job} written to {where}: {len(manifest.state)} stateful "
        f"steps, {keys:,} keys, {manifest.partitions} tasks"
    )


def _storage(location: str, pairs: tuple[str, ...]) -> Storage:
    return savepoint_storages([location], parse_storage_pairs(pairs))[0]


@click.command()
@click.argument("job")
@click.option(
    "--to",
    "dest",
    required=True,
    metavar="DIR|URL",
    help="Where to write the savepoint: a folder, or an object-store URL such as "
    "s3://bucket/prefix (pip install 'shoal[s3]'); new or empty.",
)
@storage_option
@_GROUP
@_BOOTSTRAP
@_TIMEOUT
@kafka_options
def savepoint(
    job: str,
    dest: str,
    storage_pairs: tuple[str, ...],
    group: str | None,
    bootstrap: str | None,
    timeout: float,
) -> None:
    """Take a savepoint of the running job JOB and let it go on.

    Every worker pauses its inputs, the repartition topics drain, the workers hold at
    one checkpoint while their committed state and offsets are written to the folder,
    then they resume. Fails naming the worker that did not answer. Of a stopped job
    (no live workers) its last checkpoint is taken, if nothing is in flight.
    """
    storage = _storage(dest, storage_pairs)
    coordinator = _coordinator(job, group, bootstrap, timeout)
    try:
        manifest = coordinator.savepoint(storage)
    finally:
        coordinator.close()
    click.echo(_summary(manifest, storage.location))


@click.command()
@click.argument("job")
@click.option(
    "--savepoint",
    "dest",
    default=None,
    metavar="DIR|URL",
    help="Take a savepoint into this folder (or object-store URL, s3://bucket/prefix) "
    "first, then stop at exactly that cut.",
)
@storage_option
@_GROUP
@_BOOTSTRAP
@_TIMEOUT
@kafka_options
def stop(
    job: str,
    dest: str | None,
    storage_pairs: tuple[str, ...],
    group: str | None,
    bootstrap: str | None,
    timeout: float,
) -> None:
    """Stop every worker of JOB cleanly (each checkpoints and leaves the group).

    A local supervisor (shoal run --workers N) exits when its workers have stopped.
    """
    if storage_pairs and dest is None:
        raise ConfigError("--storage-option goes with --savepoint")
    storage = None if dest is None else _storage(dest, storage_pairs)
    coordinator = _coordinator(job, group, bootstrap, timeout)
    try:
        if storage is None:
            coordinator.stop()
            click.echo(f"stopped {job}")
            return
        manifest = coordinator.savepoint(storage, stop=True)
    finally:
        coordinator.close()
    click.echo(_summary(manifest, storage.location))
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


def _open(locations: list[str], pairs: tuple[str, ...]) -> list[Savepoint]:
    from runtime.savepoint.format import Savepoint

    return [Savepoint(s) for s in savepoint_storages(locations, parse_storage_pairs(pairs))]


def _rows(sp: Savepoint, step: str) -> Iterator[tuple[int, dict[str, Any]]]:
    from runtime.savepoint.datum import from_datum, json_ready

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
@click.argument("path", metavar="DIR|URL")
@click.argument("step")
@click.option("--key", default=None, help="Only this key (as printed, or its JSON).")
@storage_option
def dump(path: str, step: str, key: str | None, storage_pairs: tuple[str, ...]) -> None:
    """Print the state of STEP in the savepoint DIR (or URL, s3://bucket/prefix) as JSON
    lines."""
    (sp,) = _open([path], storage_pairs)
    for _, row in _rows(sp, step):
        if key is None or _matches(row, key):
            click.echo(json.dumps(row, sort_keys=True))


def _by_key(sp: Savepoint, step: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, row in _rows(sp, step):
        body = {k: v for k, v in row.items() if k not in ("task", "key")}
        out.setdefault(json.dumps(row["key"], sort_keys=True), []).append(
            json.dumps(body, sort_keys=True)
        )
    return {k: sorted(v) for k, v in out.items()}


@state.command()
@click.argument("first_location", metavar="DIR1")
@click.argument("second_location", metavar="DIR2")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Keys shown per step and kind of difference.")  # fmt: skip
@storage_option
def diff(
    first_location: str, second_location: str, limit: int, storage_pairs: tuple[str, ...]
) -> None:
    """Compare the state of two savepoints, step by step and key by key.

    DIR1 and DIR2 are folders or object-store URLs (s3://bucket/prefix). Exit code 0
    when they hold the same state, 1 when they differ.
    """
    a, b = _open([first_location, second_location], storage_pairs)
    first, second = a.location, b.location
    steps = sorted(set(a.manifest.state) | set(b.manifest.state))
    differ = False
    for step in steps:
        if step not in a.manifest.state or step not in b.manifest.state:
            where = first if step in a.manifest.state else second
            click.echo(f"{step}: only in {where}")
            differ = True
            continue
        left, right = _by_key(a, step), _by_key(b, step)
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
