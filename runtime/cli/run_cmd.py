"""``shoal run``: run a job on Kafka with live per-step counters."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ShoalError
from runtime.api.job import Job
from runtime.api.redact import redact_text, redact_url
from runtime.cli.common import (
    codecs,
    kafka_options,
    resolve_client,
    resolve_wire,
    settings,
    wire_options,
)
from runtime.cli.loading import load_job

__all__ = ["LiveView", "load_job", "run", "startup_line"]


def startup_line(
    job: Job, guarantee: str, state: str, server: str, bindings: Bindings, wire: str = ""
) -> str:
    """What ``shoal run`` prints as it starts; binding URLs never show their secrets.

    ``wire`` describes the wire formats (``connectors.wire.EndpointCodecs.describe``).
    """
    line = (
        f"running {job.name} ({guarantee}, {state} state) on {redact_url(server)}: "
        + bindings.describe()
    )
    return f"{line} | {wire}" if wire else line


class LiveView:
    """Prints one line per tick: input and output rates per source and sink, totals."""

    def __init__(self, job: Job, quiet: bool) -> None:
        self.job = job
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.last_t = self.t0
        self.last: dict[str, dict[str, int]] = {}
        self.sources = [n.name for n in job.sources]
        self.sinks = [n.name for n in job.sinks]

    def __call__(self, worker: Any) -> None:
        now = time.monotonic()
        counters = worker.counters()
        dt = max(now - self.last_t, 1e-6)

        def rate(step: str, field: str) -> str:
            c = counters.get(step, {}).get(field, 0)
            prev = self.last.get(step, {}).get(field, 0)
            return f"{step} {(c - prev) / dt:,.0f}/s ({c:,})"

        late = sum(c["late"] for c in counters.values())
        dead = sum(c["dead_lettered"] for c in counters.values())
        line = (
            f"[{self.job.name} {now - self.t0:4.0f}s] in: "
            + ", ".join(rate(s, "in") for s in self.sources)
            + " -> out: "
            + ", ".join(rate(s, "out") for s in self.sinks)
            + f" | late {late:,} dead-lettered {dead:,} checkpoints {worker.checkpoints}"
        )
        self.last, self.last_t = counters, now
        if not self.quiet:
            click.echo(line, err=True)


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
    type=click.Choice(["exactly_once", "at_least_once"]),
    default="exactly_once",
    show_default=True,
    help="Transactions (outputs, state and offsets commit together) or flush-then-commit.",
)
@click.option(
    "--state",
    type=click.Choice(["rocksdb", "memory"]),
    default="rocksdb",
    show_default=True,
    help="State backend.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes in the job's consumer group.",
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
    type=click.Choice(["native", "flink"]),
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
@kafka_options
@wire_options
@click.option("--quiet", "-q", is_flag=True, help="No live counters.")
def run(
    job_spec: str,
    paths: tuple[Path, ...],
    binds: tuple[str, ...],
    dry_run: bool,
    bootstrap: str | None,
    guarantee: str,
    state: str,
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
    quiet: bool,
) -> None:
    """Run the job MODULE:ATTR (e.g. myjob.job:job) until Ctrl-C or SIGTERM.

    MODULE is imported from the current folder and from each --path DIR (run from a
    project that `shoal init` made, or pass --path PROJECT). On SIGTERM/SIGINT a worker
    finishes its batch, checkpoints and leaves the group.
    """
    from runtime.cli.identity import worker_base
    from runtime.cli.identity import worker_id as identify
    from runtime.cli.logs import set_context
    from runtime.engine.worker import WorkerOptions
    from runtime.runner import KafkaRunner, RunConfig

    job = load_job(job_spec, paths)
    explicit = worker_id
    worker_id = identify(settings(), explicit)
    set_context(job.name, worker_id)
    service_config = _service_config(http, http_token, worker_id)
    bindings = Bindings.for_job(job, binds)
    wire = resolve_wire()
    if dry_run:
        from runtime.cli.plan import check_schemas, describe_run

        rf = replication_factor if replication_factor is not None else settings().replication_factor
        found = codecs((*settings().schema_path, *schema_dirs, *map(Path, job.schema_dirs)))
        for line in describe_run(
            job,
            bindings,
            wire,
            found,
            group=group or job.name,
            worker_id=worker_id,
            guarantee=guarantee,
            state=state,
            state_dir=settings().state_dir,
            partitions=partitions,
            replication=rf,
            checkpoint_ms=checkpoint_ms,
            workers=workers,
            engine="flink" if jobmanager else engine,
            http=http,
        ):
            click.echo(line)
        check_schemas(job, found)
        return
    client = resolve_client(bootstrap)
    server = client.bootstrap
    if engine == "flink" or jobmanager:
        if wire.registry is not None:
            raise ConfigError(
                "the Flink engine writes single-object Avro only: leave out --schema-registry "
                "(and SHOAL_SCHEMA_REGISTRY_URL) with --engine flink"
            )
        from runtime.flink.cli import run_flink

        run_flink(
            job,
            bindings,
            client,
            engine,
            jobmanager=jobmanager,
            group=group,
            seconds=seconds,
            checkpoint_ms=checkpoint_ms,
            partitions=partitions,
        )
        return
    autoscale = _autoscale(client, job, bindings, group, workers, min_workers, max_workers)
    if autoscale is not None:
        workers = max(workers, autoscale.rule.min_workers)
    if workers > 1 or autoscale is not None:
        from runtime.cli.supervisor import supervise

        # Options before ``run`` (e.g. -v) are the program's; the rest are run's own.
        argv = sys.argv[1:]
        at = argv.index("run") if "run" in argv else 0
        supervise(
            job.name,
            workers,
            job_spec,
            server,
            _strip_workers(argv[at + 1 :]),
            quiet,
            global_args=argv[:at],
            base=explicit or worker_base(settings())[0],
            autoscale=autoscale,
        )
        return
    config = RunConfig(
        bootstrap=client,
        guarantee=guarantee,
        state=state,
        state_dir=settings().state_dir,
        group=group,
        worker_id=worker_id,
        output_partitions=partitions,
        schema_dirs=(*settings().schema_path, *schema_dirs),
        wire=wire,
        replication_factor=(
            replication_factor if replication_factor is not None else settings().replication_factor
        ),
        options=WorkerOptions(batch_size=batch_size, checkpoint_interval_ms=checkpoint_ms),
    )
    runner = KafkaRunner(job, bindings, config)
    stop = {"now": False}
    deadline = None if seconds is None else time.monotonic() + seconds

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo(
        startup_line(job, guarantee, state, server, bindings, runner.codecs.describe()), err=True
    )
    for registered in runner.registered:
        click.echo(f"{job.name}: schema registered for sink {registered}", err=True)
    view = LiveView(job, quiet)
    worker = runner.worker
    assert worker is not None
    service = None
    if service_config is not None:
        from runtime.service import start_service

        try:
            service = start_service(
                runner, service_config.host, service_config.port, service_config.token
            )
        except BaseException:
            runner.close()
            raise
        click.echo(
            f"{job.name}: live page {service.url}/  (also /metrics /health /topology "
            f"/streams/{job.name}/STEP /state/{job.name}/STEP/KEY)",
            err=True,
        )
    _watchdog(worker, stall_timeout, job.name)
    try:
        runner.run(
            should_stop=lambda: (
                stop["now"] or (deadline is not None and time.monotonic() > deadline)
            ),
            on_tick=view,
            tick_s=tick,
        )
    except ShoalError as exc:
        # Crash-only: no graceful close that could commit part of a batch. The
        # supervisor (or the operator) restarts the worker from its last checkpoint.
        click.echo(
            f"error: {job.name} worker {config.worker_id} failed: {redact_text(str(exc))}",
            err=True,
        )
        sys.stderr.flush()
        os._exit(1)
    finally:
        if service is not None:
            service.stop()
    view(worker)
    totals = worker.counters()
    dead = sum(c["dead_lettered"] for c in totals.values())
    late = sum(c["late"] for c in totals.values())
    click.echo(
        f"stopped {job.name}: read {worker.records_read:,} records, "
        f"{worker.checkpoints} checkpoints, late {late}, dead-lettered {dead}",
        err=True,
    )


def _autoscale(
    client: Any,
    job: Job,
    bindings: Bindings,
    group: str | None,
    workers: int,
    min_workers: int | None,
    max_workers: int | None,
) -> Any:
    """The supervisor's autoscaling (``None`` without ``--max-workers``)."""
    if max_workers is None:
        if min_workers is not None:
            raise ConfigError("--min-workers needs --max-workers (autoscaling)")
        return None
    from connectors.kafka.admin import KafkaAdmin
    from runtime.cli.scaling import LagRule
    from runtime.cli.supervisor import Autoscale

    low = min_workers or 1
    if low > max_workers:
        raise ConfigError(f"--min-workers {low} is above --max-workers {max_workers}")
    admin = KafkaAdmin(client)
    topics = list(bindings.sources.values())
    counts = admin.topics()
    partitions = max((counts.get(t, 0) for t in topics), default=0) or 1
    rule = LagRule(min_workers=low, max_workers=max_workers, partitions=partitions)
    app = group or job.name
    return Autoscale(rule, lambda: admin.group_lag(app, topics))


def _service_config(http: str | None, token: str | None, worker_id: str | None) -> Any:
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
    return ServiceConfig(host=host, port=port, token=token or None)


def _watchdog(worker: Any, stall_timeout: float, name: str) -> None:
    """Exit the process if the worker loop stops making progress (e.g. a call into the
    Kafka client that never returns after a broker outage). Crash-only: the supervisor
    restarts the worker, which resumes from its last committed checkpoint."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(min(5.0, stall_timeout / 4))
            stalled = time.monotonic() - worker.last_progress
            if stalled > stall_timeout:
                click.echo(
                    f"error: {name} worker made no progress for {stalled:.0f}s; "
                    "exiting for a restart",
                    err=True,
                )
                sys.stderr.flush()
                os._exit(3)

    threading.Thread(target=watch, name="shoal-watchdog", daemon=True).start()


_SUPERVISOR_OPTIONS = ("--workers", "--min-workers", "--max-workers")


def _strip_workers(args: list[str]) -> list[str]:
    """``run``'s options for one worker: without the supervisor's own."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in _SUPERVISOR_OPTIONS:
            skip = True
            continue
        if a.startswith(tuple(f"{o}=" for o in _SUPERVISOR_OPTIONS)):
            continue
        out.append(a)
    return out
