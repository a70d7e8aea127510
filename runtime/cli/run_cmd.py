"""``shoal run``: run a job on Kafka with live per-step counters."""

from __future__ import annotations

import importlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError
from runtime.api.job import Job
from runtime.cli.common import resolve_bootstrap, settings


def load_job(spec: str) -> Job:
    """Import ``module:attr`` (or ``module`` with a ``job`` attribute) and return the Job.

    Raises:
        ConfigError: the module or attribute is missing, or is not a Job.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "job"
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import job module {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, Job):
        obj = obj()
    if not isinstance(obj, Job):
        raise ConfigError(f"{module_name}:{attr} is not a shoal Job (got {type(obj).__name__})")
    return obj


class LiveView:
    """Prints one line per interval: per-step rates and totals."""

    def __init__(self, job: Job, quiet: bool) -> None:
        self.job = job
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.last_t = self.t0
        self.last: dict[str, dict[str, int]] = {}

    def __call__(self, worker: Any) -> None:
        now = time.monotonic()
        counters = worker.counters()
        dt = max(now - self.last_t, 1e-6)
        parts = []
        for step, c in counters.items():
            prev = self.last.get(step, {"in": 0})
            rate = (c["in"] - prev["in"]) / dt
            extra = ""
            if c["late"]:
                extra += f" late={c['late']}"
            if c["dead_lettered"]:
                extra += f" dead={c['dead_lettered']}"
            parts.append(f"{step}={c['in']:,} ({rate:,.0f}/s){extra}")
        self.last, self.last_t = counters, now
        if not self.quiet:
            click.echo(f"[{self.job.name} {now - self.t0:5.0f}s] " + " | ".join(parts), err=True)


@click.command()
@click.argument("job_spec", metavar="MODULE:ATTR")
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="NAME=TOPIC",
    help="Bind a source or sink (or dead-letters) to a topic (repeatable).",
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
    "--worker-id",
    default=None,
    hidden=True,
    help="Stable name of this worker slot (set by --workers).",
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
@click.option("--quiet", "-q", is_flag=True, help="No live counters.")
def run(
    job_spec: str,
    binds: tuple[str, ...],
    bootstrap: str | None,
    guarantee: str,
    state: str,
    workers: int,
    worker_id: str | None,
    group: str | None,
    seconds: float | None,
    checkpoint_ms: int,
    partitions: int,
    batch_size: int,
    quiet: bool,
) -> None:
    """Run the job MODULE:ATTR (e.g. jobs.playback_health:job) until Ctrl-C or SIGTERM.

    On SIGTERM/SIGINT a worker finishes its batch, checkpoints and leaves the group.
    """
    from runtime.engine.worker import WorkerOptions, check_workers
    from runtime.runner import KafkaRunner, RunConfig

    job = load_job(job_spec)
    check_workers(job, workers)
    server = resolve_bootstrap(bootstrap)
    bindings = Bindings.for_job(job, binds)
    if workers > 1:
        from runtime.cli.supervisor import supervise

        args = [a for a in sys.argv[1:] if a != "run"]
        supervise(job.name, workers, job_spec, server, _strip_workers(args), quiet)
        return
    config = RunConfig(
        bootstrap=server,
        guarantee=guarantee,
        state=state,
        state_dir=settings().state_dir,
        group=group,
        worker_id=worker_id or "w0",
        output_partitions=partitions,
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
        f"running {job.name} ({guarantee}, {state} state) on {server}: "
        f"{', '.join(f'{n}<-{t}' for n, t in bindings.sources.items())} -> "
        f"{', '.join(f'{n}->{t}' for n, t in bindings.sinks.items())}",
        err=True,
    )
    view = LiveView(job, quiet)
    worker = runner.worker
    assert worker is not None
    runner.run(
        should_stop=lambda: stop["now"] or (deadline is not None and time.monotonic() > deadline),
        on_tick=view,
    )
    view(worker)
    totals = worker.counters()
    dead = sum(c["dead_lettered"] for c in totals.values())
    late = sum(c["late"] for c in totals.values())
    click.echo(
        f"stopped {job.name}: read {worker.records_read:,} records, "
        f"{worker.checkpoints} checkpoints, late {late}, dead-lettered {dead}",
        err=True,
    )


def _strip_workers(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        out.append(a)
    return out
