"""``shoal run``: run a job on the engine ``--engine`` names, with live per-step counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from runtime.api.bindings import Bindings
from runtime.api.choices import GUARANTEES, STATE_BACKENDS, Guarantee, StateBackendName
from runtime.api.errors import ConfigError
from runtime.cli.common import (
    kafka_options,
    parse_storage_pairs,
    resolve_client,
    resolve_wire,
    settings,
    storage_option,
    wire_options,
)
from runtime.composition import ENGINES
from runtime.engines import HttpEndpoint, RunRequest
from runtime.loader import load_job

__all__ = ["load_job", "run"]


@click.command()
@click.argument("job_spec", metavar="MODULE:ATTR")
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="Also import the job module from DIR (repeatable; searched before the current "
    "folder, which is always searched).",
)
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="NAME=TOPIC|URL",
    help="Bind a source or sink (or dead-letters) to a Kafka topic (default: its own "
    "name), or a sink to a URL: postgres:// (or postgresql://), redis:// (or rediss://), "
    "webhook+http:// or webhook+https:// (repeatable).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the bound sources and sinks, the internal topics and the settings, "
    "then exit without connecting to Kafka or starting anything.",
)
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@click.option(
    "--guarantee",
    type=click.Choice(GUARANTEES),
    default="exactly_once",
    show_default=True,
    help="Transactions (outputs, state and offsets commit together) or flush-then-commit.",
)
@click.option(
    "--state",
    type=click.Choice(STATE_BACKENDS),
    default="rocksdb",
    show_default=True,
    help="State backend.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes in the job's consumer group, under a supervisor that restarts "
    "them and that shoal scale JOB N changes (given explicitly, also for 1).",
)
@click.option(
    "--min-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Autoscale: the fewest workers (with --max-workers).",
)
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Autoscale between --min-workers (default 1) and this many workers on the "
    "group's lag (never more than input partitions; the rule: runtime/cli/scaling.py).",
)
@click.option(
    "--worker-id",
    default=None,
    help="Stable, unique name of this worker: its static group membership, transactional "
    "id, state folder and HTTP port offset follow it. Default: SHOAL_WORKER_ID, else the "
    "Kubernetes pod name, else HOST-w0 (HOST-wI for slot I of --workers). A second live "
    "worker with the same id in the group is refused.",
)
@click.option("--group", default=None, help="Consumer group; default: the job's name.")
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--checkpoint-ms",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Checkpoint interval.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Partitions of output topics created here.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option(
    "--http",
    default=None,
    envvar="SHOAL_HTTP",
    metavar="HOST:PORT",
    help="Serve the live page, /metrics, /health, /streams and /state here, e.g. "
    "127.0.0.1:8088 (default: SHOAL_HTTP; the container image sets 127.0.0.1:8080); "
    "port 0 picks a free one (the address is printed at start). "
    "With --workers, worker i serves on PORT+i. Beyond loopback needs --http-token "
    "(at least 32 bytes).",
)
@click.option(
    "--http-token",
    default=None,
    envvar="SHOAL_HTTP_TOKEN",
    help="Bearer token of the HTTP service, at least 32 bytes beyond loopback "
    "(better: set SHOAL_HTTP_TOKEN).",
)
@click.option(
    "--engine",
    type=click.Choice(list(ENGINES.names())),
    default="native",
    show_default=True,
    help="Run on Shoal's own workers, or on Apache Flink (needs shoal[flink]).",
)
@click.option(
    "--jobmanager",
    default=None,
    metavar="HOST:PORT",
    help="With --engine flink: submit to this Flink cluster (REST); default: a local mini cluster.",
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=5),
    default=120,
    show_default=True,
    help="Exit (for the supervisor to restart) if the loop makes no progress this long.",
)
@click.option(
    "--tick",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between live counter lines.",
)
@click.option(
    "--replication-factor",
    type=int,
    default=None,
    help="Replication of the topics the job creates (changelogs, repartition, dead letters, "
    "sinks); default: SHOAL_REPLICATION_FACTOR, else the broker's default (-1).",
)
@click.option(
    "--schemas",
    "schema_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder of the job's own *.avsc record schemas (repeatable; also "
    "SHOAL_SCHEMA_PATH), beside the built-in ones.",
)
@click.option(
    "--from-savepoint",
    "from_savepoint",
    default=None,
    metavar="DIR|URL",
    help="Start with the state and offsets of this savepoint (shoal savepoint / stop "
    "--savepoint): a folder or an object-store URL (s3://bucket/prefix). The job is "
    "compared with it first; an incompatible change is reported one line per step (exit "
    "code 2) and nothing starts. The group must have no live workers.",
)
@click.option(
    "--rename",
    "renames",
    multiple=True,
    metavar="OLD=NEW",
    help="With --from-savepoint: the savepoint's stateful step OLD is the job's step NEW.",
)
@click.option(
    "--allow-dropped-state",
    is_flag=True,
    help="With --from-savepoint: leave behind the state of steps the job no longer has.",
)
@storage_option
@kafka_options
@wire_options
@click.option("--quiet", "-q", is_flag=True, help="No live counters.")
def run(
    job_spec: str,
    paths: tuple[Path, ...],
    binds: tuple[str, ...],
    dry_run: bool,
    bootstrap: str | None,
    guarantee: Guarantee,
    state: StateBackendName,
    workers: int,
    min_workers: int | None,
    max_workers: int | None,
    worker_id: str | None,
    group: str | None,
    seconds: float | None,
    checkpoint_ms: int,
    partitions: int,
    batch_size: int,
    http: str | None,
    http_token: str | None,
    engine: str,
    jobmanager: str | None,
    stall_timeout: float,
    tick: float,
    replication_factor: int | None,
    schema_dirs: tuple[Path, ...],
    from_savepoint: str | None,
    renames: tuple[str, ...],
    allow_dropped_state: bool,
    storage_pairs: tuple[str, ...],
    quiet: bool,
) -> None:
    """Run the job MODULE:ATTR (e.g. myjob.job:job) until Ctrl-C or SIGTERM.

    MODULE is imported from the current folder and from each --path DIR (run from a
    project that `shoal init` made, or pass --path PROJECT). On SIGTERM/SIGINT a worker
    finishes its batch, checkpoints and leaves the group.
    """
    from runtime.cli.identity import worker_id as identify
    from runtime.cli.logs import set_context

    job = load_job(job_spec, paths)
    explicit = worker_id
    worker_id = identify(settings(), explicit)
    set_context(job.name, worker_id)
    http_endpoint = _service_config(http, http_token, worker_id)
    wire = resolve_wire()
    if dry_run:
        _dry_run(
            job,
            Bindings.for_job(job, binds),
            wire,
            (*schema_dirs, *map(Path, job.schema_dirs)),
            group=group or job.name,
            worker_id=worker_id,
            guarantee=guarantee,
            state=state,
            partitions=partitions,
            replication=(
                replication_factor
                if replication_factor is not None
                else settings().replication_factor
            ),
            checkpoint_ms=checkpoint_ms,
            workers=workers,
            engine="flink" if jobmanager else engine,
            http=http,
        )
        return
    client = resolve_client(bootstrap)
    request = RunRequest(
        job=job,
        job_spec=job_spec,
        bindings=Bindings.for_job(job, binds),
        client=client,
        wire=wire,
        uses_registry=wire.registry is not None,
        guarantee=guarantee,
        state=state,
        state_dir=settings().state_dir,
        workers=workers,
        min_workers=min_workers,
        max_workers=max_workers,
        worker_id=worker_id,
        explicit_worker_id=explicit,
        group=group,
        seconds=seconds,
        checkpoint_ms=checkpoint_ms,
        partitions=partitions,
        batch_size=batch_size,
        http=http_endpoint,
        jobmanager=jobmanager,
        stall_timeout=stall_timeout,
        tick=tick,
        replication_factor=(
            replication_factor if replication_factor is not None else settings().replication_factor
        ),
        schema_dirs=(*settings().schema_path, *schema_dirs),
        quiet=quiet,
        from_savepoint=from_savepoint,
        storage_options=parse_storage_pairs(storage_pairs),
        renames=renames,
        allow_dropped_state=allow_dropped_state,
        explicit_workers=(
            click.get_current_context().get_parameter_source("workers")
            is click.core.ParameterSource.COMMANDLINE
        ),
    )
    if (renames or allow_dropped_state or storage_pairs) and from_savepoint is None:
        raise ConfigError(
            "--rename, --allow-dropped-state and --storage-option go with --from-savepoint"
        )
    if from_savepoint is not None and (engine != "native" or jobmanager):
        raise ConfigError("--from-savepoint starts Shoal's own workers: leave out --engine flink")
    ENGINES.get(engine).run(request, _say)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _dry_run(
    job: Any, bindings: Bindings, wire: Any, schema_dirs: tuple[Path, ...], **settings_: Any
) -> None:
    """``--dry-run``: what the run would read, write and create (see ``runtime.cli.plan``).

    Raises:
        ConfigError: a schema the job names is not found (after the lines are printed).
    """
    from runtime.cli.common import codecs
    from runtime.cli.plan import check_schemas, describe_run

    found = codecs(schema_dirs)
    for line in describe_run(
        job, bindings, wire, found, state_dir=settings().state_dir, **settings_
    ):
        click.echo(line)
    check_schemas(job, found)


def _service_config(
    http: str | None, token: str | None, worker_id: str | None
) -> HttpEndpoint | None:
    """The HTTP service's address and token, checked before anything starts (or ``None``).

    Worker slot ``I`` of ``--workers`` (id ``...-wI``) serves on PORT+I so the workers
    of one machine do not collide (port 0 stays 0: each picks its own free port).
    """
    if http is None:
        return None
    from runtime.cli.identity import slot_of
    from runtime.service import ServiceConfig, parse_address

    host, port = parse_address(http)
    slot = slot_of(worker_id)
    if port and slot is not None:
        port += slot
    if port > 65535:
        raise ConfigError(f"--http: worker {worker_id} would serve on port {port}")
    checked = ServiceConfig(host=host, port=port, token=token or None)
    return HttpEndpoint(checked.host, checked.port, checked.token)
