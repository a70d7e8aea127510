"""How to run a job on Flink: typed, frozen options, and the check that pyflink is there."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.api.admin import TopicAdmin
from runtime.api.errors import ConfigError
from runtime.api.io import CodecFactory
from runtime.engine.ports import TableFeed
from runtime.settings import load_settings

INSTALL_HINT = 'pip install "shoal[flink]"'
EXECUTION_MODES = ("auto", "thread", "process")


def require_pyflink() -> None:
    """Raise a ``ConfigError`` naming the extra to install when pyflink is missing.

    Raises:
        ConfigError: the ``apache-flink`` package is not installed.
    """
    if importlib.util.find_spec("pyflink") is None:
        raise ConfigError(
            f"the Flink engine needs PyFlink, which is not installed: run {INSTALL_HINT} "
            "(Python 3.9-3.12, Java 11+)"
        )


def parse_jobmanager(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of a Flink JobManager's REST endpoint.

    Raises:
        ConfigError: the address is not ``HOST:PORT``.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--jobmanager {address!r} must look like HOST:PORT (e.g. 127.0.0.1:8081)"
        )
    return host, int(port)


@dataclass(frozen=True, slots=True)
class FlinkConnectors:
    """What the Flink engine uses of Shoal's connectors, handed in by the composition
    root (``runtime.composition.FLINK_CONNECTORS``).

    Attributes:
        admin: a topic admin for ``(bootstrap, client settings)``: finds the sources'
            partitions and creates the sinks' topics.
        java_properties: the Java Kafka clients' settings for ``(bootstrap, client
            settings)`` (the one place that builds client settings, for Java).
        codecs: the codec factory of Shoal's schemas. Flink's Python workers call it
            again, so it must be a module-level function (pickled by reference).
        tables: a table reader for ``(bootstrap, client settings)``; Flink's Python
            workers call it (jobs with tables), so a module-level function too.
    """

    admin: Callable[[str, Mapping[str, str]], TopicAdmin]
    java_properties: Callable[[str, Mapping[str, str]], dict[str, str]]
    codecs: Callable[[], CodecFactory]
    tables: Callable[[str, Mapping[str, str]], TableFeed] | None = None


@dataclass(frozen=True, slots=True)
class FlinkOptions:
    """Where and how a job runs on Flink.

    Attributes:
        bootstrap: Kafka address the sources and sinks use.
        group: consumer group and transactional-id prefix (default: the job's name).
        jobmanager: ``HOST:PORT`` of an existing cluster's REST endpoint; ``None`` runs
            a local mini cluster inside this process's Flink gateway.
        parallelism: parallelism of the keyed steps; default: the partition count of
            the widest source. Each source always runs one reader per partition, so
            every partition gets its own watermark, as on the native engine.
        checkpoint_interval_ms: checkpoint interval; sink transactions commit with it.
        checkpoint_dir: where checkpoints (RocksDB snapshots) are written.
        bounded: stop at the offsets that are the latest when the job starts; the end
            of input moves event time to the end, so every window fires (tests,
            backfills). Default: run until cancelled.
        execution_mode: ``"thread"`` (Python in the TaskManager's JVM, 2-3x faster),
            ``"process"`` (separate Python worker processes) or ``"auto"``: thread mode.
            (Flink's merging window operators failed on RocksDB in PyFlink 2.2's thread
            mode; window steps run as keyed process functions, which do not.)
        python_executable: the Python that runs the job's functions; it must have
            Shoal and PyFlink installed (default: this interpreter).
        restart_attempts: task failures tolerated (fixed-delay restarts from the last
            checkpoint) before the job fails.
        restart_delay_ms: wait before a restart.
        output_partitions: partitions of sink topics created here.
        jar_cache: where the Kafka connector jar is kept.
        jar_dir: a folder that holds the Kafka connector jar already (used instead of
            fetching it into ``jar_cache``); default: ``SHOAL_FLINK_JARS``.
        transaction_timeout_ms: Kafka transaction timeout of the sinks (at most the
            broker's ``transaction.max.timeout.ms``, 15 minutes by default).
        from_cluster: the cluster's own configuration decides jars, checkpoints, state
            backend, restarts and Python (application mode, e.g. a FlinkDeployment);
            only the job's graph comes from here.
        kafka_properties: the user's Kafka client settings (TLS, SASL ...), as given to
            ``shoal run`` (see ``connectors.kafka.config``); never shown in a repr.
        jvm_steps: run a source, its key and a built-in aggregate's window on Shoal's JVM
            steps where the job allows it (``runtime.flink.jvm``); ``False``: Python
            steps everywhere. Without the steps jar on the cluster (``from_cluster``,
            ``jar_dir``) the Python steps run, and records without a value are not
            dead-lettered but skipped by Flink's Kafka source.
    """

    bootstrap: str
    group: str | None = None
    jobmanager: str | None = None
    parallelism: int | None = None
    checkpoint_interval_ms: int = 1000
    checkpoint_dir: Path = field(default_factory=lambda: Path(".shoal") / "flink" / "checkpoints")
    bounded: bool = False
    execution_mode: str = "auto"
    python_executable: str = field(default_factory=lambda: sys.executable)
    restart_attempts: int = 3
    restart_delay_ms: int = 1000
    output_partitions: int = 4
    jar_cache: Path = field(default_factory=lambda: load_settings().cache / "flink")
    jar_dir: Path | None = field(default_factory=lambda: load_settings().flink_jars)
    transaction_timeout_ms: int = 600_000
    from_cluster: bool = False
    kafka_properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    jvm_steps: bool = True

    def __post_init__(self) -> None:
        if self.execution_mode not in EXECUTION_MODES:
            raise ConfigError(
                f"unknown Flink execution mode {self.execution_mode!r}: use auto, thread or process"
            )
        if self.jobmanager is not None:
            parse_jobmanager(self.jobmanager)
        if self.parallelism is not None and self.parallelism < 1:
            raise ConfigError(f"parallelism must be at least 1, got {self.parallelism}")
        if self.checkpoint_interval_ms < 10:
            raise ConfigError("checkpoint_interval_ms must be at least 10")
