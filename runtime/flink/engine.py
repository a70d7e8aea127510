"""The Flink engine behind ``shoal run JOB --engine flink``."""

from __future__ import annotations

from runtime.api.errors import ConfigError
from runtime.engines import RunRequest, Say, stop_on_signals
from runtime.flink.options import FlinkConnectors, FlinkOptions, require_pyflink
from runtime.settings import load_settings

__all__ = ["FlinkEngine"]


class FlinkEngine:
    """Runs a job on Flink until Ctrl-C, SIGTERM or ``seconds``; cancelling keeps its
    checkpoints, and the next run resumes from the newest.

    Args:
        connectors: the Kafka admin, client settings and codecs the Flink job uses.
    """

    def __init__(self, connectors: FlinkConnectors) -> None:
        self.connectors = connectors

    def run(self, request: RunRequest, say: Say) -> None:
        """Translate and run ``request.job`` on a local mini cluster or ``jobmanager``.

        Raises:
            ConfigError: a schema registry is configured, or pyflink is missing.
            ShoalError: the Flink job failed (after its restart attempts).
        """
        if request.uses_registry:
            raise ConfigError(
                "the Flink engine writes single-object Avro only: leave out --schema-registry "
                "(and SHOAL_SCHEMA_REGISTRY_URL) with --engine flink"
            )
        require_pyflink()
        from runtime.flink.submit import run_on_flink

        home = load_settings()
        job, jobmanager = request.job, request.jobmanager
        bootstrap = request.client.bootstrap
        options = FlinkOptions(
            bootstrap=bootstrap,
            kafka_properties=dict(request.client.properties),
            group=request.group,
            jobmanager=jobmanager,
            checkpoint_interval_ms=request.checkpoint_ms,
            checkpoint_dir=home.home / "flink" / "checkpoints",
            output_partitions=request.partitions,
            jar_cache=home.cache / "flink",
        )
        should_stop = stop_on_signals(request.seconds)
        where = f"Flink cluster {jobmanager}" if jobmanager else "a local Flink mini cluster"
        say(
            f"running {job.name} on {where} (exactly_once, RocksDB state) with Kafka {bootstrap}: "
            + request.bindings.describe()
        )
        run = run_on_flink(
            job, request.bindings, options, connectors=self.connectors, should_stop=should_stop
        )
        resumed = f", resumed from {run.restored_from}" if run.restored_from else ""
        say(f"stopped {job.name} on Flink: {run.status} after {run.seconds:.0f}s{resumed}")
