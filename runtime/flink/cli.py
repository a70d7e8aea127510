"""``shoal run JOB --engine flink``: the command line's entry to the Flink engine."""

from __future__ import annotations

import signal
import time

import click

from connectors.kafka.config import KafkaClientConfig, as_client_config
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError
from runtime.api.job import Job
from runtime.flink.options import FlinkOptions, require_pyflink


def run_flink(
    job: Job,
    bindings: Bindings,
    bootstrap: str | KafkaClientConfig,
    engine: str,
    *,
    jobmanager: str | None,
    group: str | None,
    seconds: float | None,
    checkpoint_ms: int,
    partitions: int,
) -> None:
    """Run ``job`` on Flink until Ctrl-C, SIGTERM or ``seconds``; cancelling keeps its
    checkpoints, and the next run resumes from the newest.

    Raises:
        ConfigError: ``--jobmanager`` without ``--engine flink``, or pyflink is missing.
    """
    if engine != "flink":
        raise ConfigError("--jobmanager submits to a Flink cluster: add --engine flink")
    require_pyflink()
    from runtime.cli.common import settings
    from runtime.flink.submit import run_on_flink

    home = settings()
    client = as_client_config(bootstrap)
    bootstrap = client.bootstrap
    options = FlinkOptions(
        bootstrap=bootstrap,
        kafka_properties=dict(client.properties),
        group=group,
        jobmanager=jobmanager,
        checkpoint_interval_ms=checkpoint_ms,
        checkpoint_dir=home.home / "flink" / "checkpoints",
        output_partitions=partitions,
        jar_cache=home.cache / "flink",
        jar_dir=home.flink_jars,
    )
    stop = {"now": False}
    deadline = None if seconds is None else time.monotonic() + seconds

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    where = f"Flink cluster {jobmanager}" if jobmanager else "a local Flink mini cluster"
    click.echo(
        f"running {job.name} on {where} (exactly_once, RocksDB state) with Kafka {bootstrap}: "
        + bindings.describe(),
        err=True,
    )
    run = run_on_flink(
        job,
        bindings,
        options,
        should_stop=lambda: stop["now"] or (deadline is not None and time.monotonic() > deadline),
    )
    resumed = f", resumed from {run.restored_from}" if run.restored_from else ""
    click.echo(
        f"stopped {job.name} on Flink: {run.status} after {run.seconds:.0f}s{resumed}", err=True
    )
