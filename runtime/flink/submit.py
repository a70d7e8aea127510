"""Build the Flink environment for a job and run it: local mini cluster or a remote cluster.

The local mini cluster runs inside the JVM that PyFlink's gateway starts for this
process. Python functions run in ``thread`` mode by default (inside the
TaskManager's JVM, 2-3x faster than ``process`` mode), which finds Shoal and its
dependencies only through ``PYTHONPATH``: the launcher puts the job's folder, the
repository and this interpreter's site-packages on it before the gateway starts.
Checkpoints (RocksDB state, source offsets, sink transactions) go to
``options.checkpoint_dir/<job>``; they are kept when the job is cancelled, and the
next run of the job resumes from the newest one.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from runtime.api.admin import TopicSpec
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ShoalError
from runtime.api.job import Job
from runtime.flink.jars import bundled_jars, connector_jars, python_jar, steps_jar
from runtime.flink.options import FlinkConnectors, FlinkOptions, parse_jobmanager, require_pyflink
from runtime.settings import REPO_ROOT

# Folders shipped to a remote cluster (``add_python_file``): the code a job's functions use.
PACKAGES = ("runtime", "connectors", "jobs", "schemas")


@dataclass
class FlinkRun:
    """What a Flink run did."""

    job: str
    status: str
    seconds: float
    sinks: dict[str, str] = field(default_factory=dict)
    restored_from: str | None = None
    #: The window steps that ran on the JVM steps (``runtime.flink.jvm``).
    jvm_windows: tuple[str, ...] = ()


def python_path(extra: tuple[Path, ...] = ()) -> str:
    """``PYTHONPATH`` for Python functions run by Flink: job folder, repository, site-packages."""
    paths = [*(str(p) for p in extra), str(REPO_ROOT), sysconfig.get_paths()["purelib"]]
    current = os.environ.get("PYTHONPATH", "")
    paths += [p for p in current.split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(paths))


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (``chk-N`` with ``_metadata``) under ``folder``."""
    found = [m.parent for m in folder.glob("*/chk-*/_metadata")] if folder.exists() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def execution_mode(options: FlinkOptions) -> str:
    """PyFlink's execution mode: thread mode unless asked otherwise (see
    ``FlinkOptions.execution_mode``)."""
    return "thread" if options.execution_mode == "auto" else options.execution_mode


def flink_config(
    job: Job, options: FlinkOptions, jars: list[Path], pythonpath: str
) -> dict[str, str]:
    """The Flink configuration of one run (strings, as Flink's ``Configuration`` takes them)."""
    checkpoints = (options.checkpoint_dir / job.name).resolve()
    if options.jobmanager is not None:
        # A session cluster need not have Flink's Python operators on its class path (a
        # distribution keeps them in opt/): ship them with the job, as `flink run -py` does.
        jars = [*jars, python_jar()]
    config = {
        "pipeline.name": job.name,
        "pipeline.jars": ";".join(p.resolve().as_uri() for p in jars),
        "execution.checkpointing.interval": f"{options.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": "rocksdb",
        "state.backend.incremental": "true",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(options.restart_attempts),
        "restart-strategy.fixed-delay.delay": f"{options.restart_delay_ms} ms",
        "python.executable": options.python_executable,
        "python.client.executable": sys.executable,
        "python.execution-mode": execution_mode(options),
        "python.pythonpath": pythonpath,
    }
    if options.jobmanager is not None:
        host, port = parse_jobmanager(options.jobmanager)
        config.update({"execution.target": "remote", "rest.address": host, "rest.port": str(port)})
    return config


def topic_partitions(
    options: FlinkOptions, job: Job, bindings: Bindings, connectors: FlinkConnectors
) -> dict[str, int]:
    """Partitions of the source topics; creates sink and dead-letter topics that are missing.

    Raises:
        ConfigError: a source topic does not exist.
    """
    admin = connectors.admin(options.bootstrap, options.kafka_properties)
    existing = admin.topics()
    missing = [
        t for t in [*bindings.sources.values(), *bindings.tables.values()] if t not in existing
    ]
    if missing:
        raise ConfigError(
            f"job {job.name!r} reads topics that do not exist: {', '.join(missing)} "
            "(produce to them first, e.g. shoal generate)"
        )
    specs = [TopicSpec(t, options.output_partitions) for t in bindings.sinks.values()]
    admin.ensure_topics([*specs, TopicSpec(bindings.dead_letters, 1)])
    return {t: existing[t] for t in bindings.sources.values()}


def build_environment(
    job: Job,
    bindings: Bindings,
    options: FlinkOptions,
    partitions: dict[str, int],
    connectors: FlinkConnectors,
) -> tuple[Any, Any, str | None]:
    """A Flink environment with ``job`` translated into it; also its translation and the
    checkpoint it resumes from (or ``None``)."""
    if options.from_cluster:
        jars = []
    elif options.jar_dir is not None:
        jars = bundled_jars(options.jar_dir)
    else:
        jars = [*connector_jars(options.jar_cache), steps_jar(options.jar_cache)]
    pythonpath = python_path((Path.cwd(),))
    # Read when the gateway's JVM starts (thread mode: its embedded Python; process mode:
    # the Python workers it launches).
    os.environ["PYTHONPATH"] = pythonpath
    from runtime.flink import _pyflink as pf
    from runtime.flink.translate import KafkaSettings, translate

    config = flink_config(job, options, jars, pythonpath)
    if options.from_cluster:
        config = {"pipeline.name": job.name}
    restored = None
    if not options.bounded and not options.from_cluster:
        found = latest_checkpoint(options.checkpoint_dir.resolve() / job.name)
        if found is not None:
            restored = str(found)
            config["execution.state-recovery.path"] = found.as_uri()
    conf = pf.Configuration()
    for key, value in config.items():
        conf.set_string(key, value)
    if options.jobmanager is not None:
        env = pf.remote_environment(conf)
    else:
        env = pf.StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(options.parallelism or max(partitions.values(), default=1))
    if options.jobmanager is not None:
        for package in PACKAGES:
            env.add_python_file(str(REPO_ROOT / package))
    java = connectors.java_properties(options.bootstrap, options.kafka_properties)
    kafka = KafkaSettings(
        properties=java,
        bootstrap=options.bootstrap,
        group=options.group or job.name,
        partitions=partitions,
        bounded=options.bounded,
        transaction_timeout_ms=options.transaction_timeout_ms,
        codecs=connectors.codecs,
        tables=None
        if connectors.tables is None
        else partial(connectors.tables, options.bootstrap, dict(options.kafka_properties)),
        steps_jar=pf.shoal_steps_loaded(),
        jvm_steps=options.jvm_steps,
    )
    return env, translate(env, job, bindings, kafka), restored


def run_on_flink(
    job: Job,
    bindings: Bindings,
    options: FlinkOptions,
    *,
    connectors: FlinkConnectors,
    should_stop: Callable[[], bool] | None = None,
    poll_s: float = 0.5,
) -> FlinkRun:
    """Run ``job`` on Flink until it finishes (bounded input) or ``should_stop()``.

    ``connectors`` are the Kafka admin, client settings and codecs to use
    (``runtime.composition.FLINK_CONNECTORS``).

    Raises:
        ConfigError: pyflink or the connector jar is missing, or a topic does not exist.
        ShoalError: the Flink job failed (after its restart attempts).
    """
    require_pyflink()
    partitions = topic_partitions(options, job, bindings, connectors)
    t0 = time.monotonic()
    env, translation, restored = build_environment(job, bindings, options, partitions, connectors)
    try:
        client = env.execute_async(job.name)
        status = _wait(client, should_stop, poll_s)
    except Exception as exc:  # py4j wraps every Java exception
        raise ShoalError(f"Flink job {job.name!r} failed: {_root_cause(exc)}") from exc
    return FlinkRun(
        job.name,
        status,
        time.monotonic() - t0,
        dict(translation.sinks),
        restored,
        tuple(translation.jvm),
    )


def _wait(client: Any, should_stop: Callable[[], bool] | None, poll_s: float) -> str:
    # Only the execution result is polled: a local mini cluster shuts down as soon as its
    # job ends, after which status queries fail.
    result = client.get_job_execution_result()
    while not result.done():
        if should_stop is not None and should_stop():
            client.cancel().result()
            return "CANCELED"
        time.sleep(poll_s)
    result.result()  # raises the job's failure, if any
    return "FINISHED"


def _root_cause(exc: BaseException) -> str:
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if "Exception" in ln or "Error" in ln]
    caused = [ln for ln in lines if ln.startswith("Caused by:")]
    return (caused[-1] if caused else (lines[0] if lines else text))[:2000]
