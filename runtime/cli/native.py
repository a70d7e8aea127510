"""The native engine behind ``shoal run JOB``: Shoal's own workers on a consumer group.

One worker runs in this process (a ``KafkaRunner`` with live counters, the optional
HTTP service and a stall watchdog); ``--workers N`` or autoscaling runs a supervisor
that starts ``shoal run`` once per worker slot instead.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ShoalError
from runtime.api.job import Job
from runtime.api.redact import redact_text, redact_url
from runtime.engine.worker import Worker, WorkerOptions
from runtime.engines import RunRequest, Say, stop_on_signals
from runtime.runner import Bootstrap, KafkaRunner, RunConfig

__all__ = ["LiveView", "NativeEngine", "startup_line"]

_SUPERVISOR_OPTIONS = (
    "--workers",
    "--min-workers",
    "--max-workers",
    # the supervisor seeds the group from a savepoint once, before its workers start
    "--from-savepoint",
    "--rename",
    "--storage-option",
)
_SUPERVISOR_FLAGS = ("--allow-dropped-state",)


class LagAdmin(Protocol):
    """What autoscaling reads of the cluster (``connectors.kafka.admin.KafkaAdmin``)."""

    def topics(self) -> dict[str, int]:
        """Topic name -> partition count."""
        ...

    def group_lag(self, group: str, topics: list[str]) -> int:
        """Records the group has not read yet in ``topics``."""
        ...


RunnerFactory = Callable[[Job, Bindings, RunConfig], KafkaRunner]


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

    def __init__(self, job: Job, quiet: bool, say: Say) -> None:
        self.job = job
        self.quiet = quiet
        self.say = say
        self.t0 = time.monotonic()
        self.last_t = self.t0
        self.last: dict[str, dict[str, int]] = {}
        self.sources = [n.name for n in job.sources]
        self.sinks = [n.name for n in job.sinks]

    def __call__(self, worker: Worker) -> None:
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
            self.say(line)


class NativeEngine:
    """Runs a job on Shoal's own workers.

    Args:
        runner: builds one worker's runner (``runtime.composition.kafka_runner``).
        admin: a topic admin of the cluster, for autoscaling on the group's lag.
    """

    def __init__(self, runner: RunnerFactory, admin: Callable[[Bootstrap], LagAdmin]) -> None:
        self.runner = runner
        self.admin = admin

    def run(self, request: RunRequest, say: Say) -> None:
        """Run one worker here, or supervise ``--workers`` of them, until stopped.

        On SIGTERM/SIGINT a worker finishes its batch, checkpoints and leaves the group.

        Raises:
            ConfigError: ``--jobmanager`` (a Flink option), or a setting is refused.
        """
        if request.jobmanager:
            raise ConfigError("--jobmanager submits to a Flink cluster: add --engine flink")
        if request.from_savepoint is not None:
            _start_from_savepoint(request, say)
        autoscale = self._autoscale(request)
        workers = request.workers
        if autoscale is not None:
            workers = max(workers, autoscale.rule.min_workers)
        if workers > 1 or autoscale is not None or request.explicit_workers:
            self._supervise(request, workers, autoscale)
            return
        self._run_worker(request, say)

    def _run_worker(self, request: RunRequest, say: Say) -> None:
        job, bindings = request.job, request.bindings
        config = RunConfig(
            bootstrap=request.client,
            guarantee=request.guarantee,
            state=request.state,
            state_dir=request.state_dir,
            group=request.group,
            worker_id=request.worker_id,
            output_partitions=request.partitions,
            schema_dirs=request.schema_dirs,
            wire=request.wire,
            replication_factor=request.replication_factor,
            options=WorkerOptions(
                batch_size=request.batch_size, checkpoint_interval_ms=request.checkpoint_ms
            ),
        )
        runner = self.runner(job, bindings, config)
        should_stop = stop_on_signals(request.seconds)
        server = request.client.bootstrap
        wire = runner.codecs.describe()
        say(startup_line(job, request.guarantee, request.state, server, bindings, wire))
        for registered in runner.registered:
            say(f"{job.name}: schema registered for sink {registered}")
        view = LiveView(job, request.quiet, say)
        worker = runner.worker
        service = None
        address: Path | None = None
        if request.http is not None:
            from runtime.service import start_service

            try:
                service = start_service(
                    runner,
                    request.http.host,
                    request.http.port,
                    request.http.token,
                    group=request.group or job.name,
                )
            except BaseException:
                runner.close()
                raise
            say(
                f"{job.name}: live page {service.url}/  (also /metrics /health /status /topology "
                f"/streams/{job.name}/STEP /state/{job.name}/STEP/KEY)"
            )
            address = _announce(service.url, request.group or job.name, config.worker_id)
        _watchdog(worker, request.stall_timeout, job.name, say)
        try:
            runner.run(should_stop=should_stop, on_tick=view, tick_s=request.tick)
        except ShoalError as exc:
            # Crash-only: no graceful close that could commit part of a batch. The
            # supervisor (or the operator) restarts the worker from its last checkpoint.
            say(f"error: {job.name} worker {config.worker_id} failed: {redact_text(str(exc))}")
            sys.stderr.flush()
            os._exit(1)
        finally:
            if service is not None:
                service.stop()
                if address is not None:
                    address.unlink(missing_ok=True)
        view(worker)
        totals = worker.counters()
        dead = sum(c["dead_lettered"] for c in totals.values())
        late = sum(c["late"] for c in totals.values())
        say(
            f"stopped {job.name}: read {worker.records_read:,} records, "
            f"{worker.checkpoints} checkpoints, late {late}, dead-lettered {dead}"
        )

    def _supervise(self, request: RunRequest, workers: int, autoscale: Any) -> None:
        from runtime.cli.common import settings
        from runtime.cli.identity import worker_base
        from runtime.cli.supervisor import supervise, workers_file
        from runtime.composition import client_config as as_client_config

        # Options before ``run`` (e.g. -v) are the program's; the rest are run's own.
        argv = sys.argv[1:]
        at = argv.index("run") if "run" in argv else 0
        supervise(
            request.job.name,
            workers,
            request.job_spec,
            request.client.bootstrap,
            _strip_workers(argv[at + 1 :]),
            request.quiet,
            global_args=argv[:at],
            base=request.explicit_worker_id or worker_base(settings())[0],
            autoscale=autoscale,
            control=(as_client_config(request.client), request.group or request.job.name),
            pid_file=workers_file(settings().home, request.group or request.job.name),
        )

    def _autoscale(self, request: RunRequest) -> Any:
        """The supervisor's autoscaling (``None`` without ``--max-workers``)."""
        low, high = request.min_workers, request.max_workers
        if high is None:
            if low is not None:
                raise ConfigError("--min-workers needs --max-workers (autoscaling)")
            return None
        from runtime.cli.scaling import LagRule
        from runtime.cli.supervisor import Autoscale

        low = low or 1
        if low > high:
            raise ConfigError(f"--min-workers {low} is above --max-workers {high}")
        admin = self.admin(request.client)
        topics = list(request.bindings.sources.values())
        counts = admin.topics()
        partitions = max((counts.get(t, 0) for t in topics), default=0) or 1
        rule = LagRule(min_workers=low, max_workers=high, partitions=partitions)
        app = request.group or request.job.name
        return Autoscale(rule, lambda: admin.group_lag(app, topics))


def _watchdog(worker: Worker, stall_timeout: float, name: str, say: Say) -> None:
    """Exit the process if the worker loop stops making progress (e.g. a call into the
    Kafka client that never returns after a broker outage). Crash-only: the supervisor
    restarts the worker, which resumes from its last committed checkpoint."""

    def watch() -> None:
        while True:
            time.sleep(min(5.0, stall_timeout / 4))
            stalled = time.monotonic() - worker.last_progress
            if stalled > stall_timeout:
                say(
                    f"error: {name} worker made no progress for {stalled:.0f}s; "
                    "exiting for a restart"
                )
                sys.stderr.flush()
                os._exit(3)

    threading.Thread(target=watch, name="shoal-watchdog", daemon=True).start()


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
        if a in _SUPERVISOR_FLAGS:
            continue
        if a.startswith(tuple(f"{o}=" for o in _SUPERVISOR_OPTIONS)):
            continue
        out.append(a)
    return out


def _start_from_savepoint(request: RunRequest, say: Say) -> None:
    """Check the job against the savepoint and seed its group; exit 2 on problems."""
    from runtime.savepoint.restore import parse_renames, start_from_savepoint

    job, path = request.job, request.from_savepoint
    if path is None:
        return
    from runtime.cli.common import savepoint_storages
    from runtime.composition import client_config as as_client_config

    (storage,) = savepoint_storages([path], request.storage_options)
    problems = start_from_savepoint(
        as_client_config(request.client),
        job,
        request.bindings,
        request.group or job.name,
        storage,
        renames=parse_renames(request.renames),
        allow_dropped=request.allow_dropped_state,
        output_partitions=request.partitions,
        replication=request.replication_factor,
        echo=say,
    )
    if problems:
        say(f"error: {job.name} cannot start from {storage.location}; nothing was written:")
        for line in problems:
            say(f"  {line}")
        sys.exit(2)


def _announce(url: str, group: str, worker_id: str | None) -> Path | None:
    """Write the service's address where other commands on this machine find it
    (``runtime.cli.supervisor.service_file``); ``None`` when it cannot be written."""
    from runtime.cli.common import settings
    from runtime.cli.supervisor import service_file

    path = service_file(settings().home, group, worker_id or f"pid{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"group": group, "worker": worker_id, "url": url}))
    except OSError:
        return None
    return path
