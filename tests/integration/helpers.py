"""Helpers for tests on the real broker: produce generated traffic, run a job to idle."""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connectors.codecs import codec_factory
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import KafkaSource
from connectors.wire import WireConfig
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.composition import kafka_runner
from runtime.engine.worker import Worker, WorkerOptions
from runtime.generator import (
    GeneratedRecord,
    Generator,
    GeneratorConfig,
    catalogue_entries,
    corrupt_bytes,
)
from runtime.runner import KafkaRunner, RunConfig

SCHEMA = {"playback": "PlaybackEvent", "interactions": "InteractionEvent"}


def produce_generated(
    bootstrap: str, topics: dict[str, str], config: GeneratorConfig, n: int
) -> list[GeneratedRecord]:
    """Produce ``n`` generated records (corrupting the marked ones); return them."""
    codecs = codec_factory()
    records = Generator(config).take(n)
    sink = KafkaSink(bootstrap)
    rng = random.Random(config.seed)
    for rec in records:
        data = codecs(SCHEMA[rec.stream]).encode(rec.value)
        if rec.corrupt is not None:
            data = corrupt_bytes(data, rec.corrupt, rng)
        sink.write(topics[rec.stream], rec.key, data, None)
    sink.flush()
    return records


def read_all(
    bootstrap: str, topic: str, *, idle_s: float = 3.0, first_wait_s: float = 30.0
) -> list[Any]:
    """Every message of ``topic`` (read_committed), until it stays quiet for ``idle_s``.

    The wait for the first message is longer (``first_wait_s``): joining a group and the
    first fetch can take seconds on a busy machine. An empty topic costs that wait.
    """
    source = KafkaSource(bootstrap, f"reader-{uuid.uuid4().hex[:8]}", [topic])
    out: list[Any] = []
    quiet_since = time.monotonic() + first_wait_s - idle_s
    try:
        while time.monotonic() - quiet_since < idle_s:
            msgs = source.poll(5000, 0.2)
            if msgs:
                out.extend(msgs)
                quiet_since = time.monotonic()
    finally:
        source.close()
    return out


def run_job_until_idle(
    bootstrap: str,
    job: Job,
    bindings: Bindings,
    *,
    idle_s: float = 4.0,
    timeout_s: float = 120.0,
    guarantee: str = "exactly_once",
    state: str = "memory",
    state_dir: Path | None = None,
    group: str | None = None,
    wire: WireConfig | None = None,
) -> Worker:
    """Run ``job`` in one worker until its input has been quiet for ``idle_s``.

    ``wire``: wire formats and the schema registry (default: single-object Avro).
    """
    config = RunConfig(
        bootstrap=bootstrap,
        guarantee=guarantee,
        state=state,
        state_dir=state_dir or Path(tempfile.mkdtemp(prefix="shoal-state-")),
        group=group or f"{job.name}-{uuid.uuid4().hex[:6]}",
        worker_id="w0",
        options=WorkerOptions(batch_size=2000, checkpoint_interval_ms=500),
        wire=wire or WireConfig(),
    )
    runner = kafka_runner(job, bindings, config)
    worker = runner.worker
    assert worker is not None
    try:
        run_until_quiet(runner, idle_s=idle_s, timeout_s=timeout_s)
    finally:
        runner.close()
    return worker


def run_until_quiet(
    runner: KafkaRunner,
    *,
    idle_s: float,
    timeout_s: float,
    before_step: Callable[[], None] | None = None,
) -> None:
    """Step ``runner`` until ``idle_s`` pass with nothing read and nothing committed,
    then checkpoint.

    A commit counts as activity: it makes the job's own internal records (repartitioned
    data, watermark markers) visible, and they must still be read. A step that blocked
    for long in a commit (e.g. a sink waiting out an outage) is not quiet time.
    """
    worker = runner.worker
    assert worker is not None
    quiet_since = time.monotonic()
    deadline = quiet_since + timeout_s
    while time.monotonic() - quiet_since < idle_s:
        assert time.monotonic() < deadline, "the job did not finish its input in time"
        if before_step is not None:
            before_step()
        commits = worker.checkpoints
        if runner.step() or worker.checkpoints != commits:
            quiet_since = time.monotonic()
    worker.checkpoint()


def unique(prefix: str) -> str:
    """A fresh topic name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def decoded(messages: Iterable[Any], schema: str) -> list[Any]:
    """Decode messages with a schema name ('' for JSON)."""
    codec = codec_factory()(schema)
    values, failures = codec.decode_batch([m.value() for m in messages])
    assert not failures, failures[:3]
    return values


def write_catalogue(
    bootstrap: str, topic: str, config: GeneratorConfig
) -> list[tuple[bytes, dict[str, Any]]]:
    """Write the title catalogue of ``config``'s generator to ``topic`` (Avro
    ``TitleCatalogEntry`` keyed by title id, as ``shoal generate --catalogue-topic`` does);
    returns its ``(key, value)`` records."""
    catalogue: list[tuple[bytes, dict[str, Any]]] = list(catalogue_entries(config))
    sink = KafkaSink(bootstrap)
    encode = codec_factory()("TitleCatalogEntry").encode
    for key, value in catalogue:
        sink.write(topic, key, encode(value), None)
    sink.flush()
    return catalogue
