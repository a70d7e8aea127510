"""``shoal demo``: the reference jobs on the local broker with generated traffic, live.

Starts the local broker (unless one runs), a traffic generator and one ``shoal run``
process per reference job, relays their live counters and shows a sample of each
output topic, until Ctrl-C or ``--seconds``. Everything it started is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import click

from runtime.cli.common import codecs, local_broker


def _relay(prefix: str, stream: IO[bytes], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            with lock:
                click.echo(f"{prefix} {line}", err=True)


def _spawn(args: list[str], prefix: str, lock: threading.Lock) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    threading.Thread(target=_relay, args=(prefix, proc.stdout, lock), daemon=True).start()
    return proc


def _terminate(procs: list[subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def _sample(bootstrap: str, topics: list[str], stop: threading.Event, lock: threading.Lock) -> None:
    """Print the newest record of each output topic every few seconds."""
    from connectors.kafka.source import KafkaSource

    source = KafkaSource(
        bootstrap,
        f"shoal-demo-view-{time.time_ns()}",
        topics,
        read_committed=True,
        extra={"auto.offset.reset": "latest"},
    )
    decode = codecs().any_decoder(None)
    latest: dict[str, Any] = {}
    next_show = time.monotonic() + 5
    try:
        while not stop.is_set():
            for m in source.poll(2000, 0.2):
                latest[m.topic()] = decode(m.value())
            if time.monotonic() >= next_show and latest:
                next_show = time.monotonic() + 5
                with lock:
                    for topic, value in sorted(latest.items()):
                        text = json.dumps(value, default=str)
                        click.echo(f"  [{topic}] {text[:160]}", err=True)
                latest.clear()
    finally:
        source.close()


@click.command()
@click.option(
    "--seconds",
    type=float,
    default=0,
    show_default=True,
    help="Stop after this many seconds; 0 runs until Ctrl-C.",
)
@click.option(
    "--rate", type=float, default=3000, show_default=True, help="Generated records per second."
)
@click.option("--users", type=int, default=2000, show_default=True)
def demo(seconds: float, rate: float, users: int) -> None:
    """Run the reference jobs on generated traffic with live output."""
    import importlib

    from connectors.kafka.admin import KafkaAdmin, TopicSpec
    from runtime.api.bindings import Bindings
    from runtime.cli.run_cmd import load_job

    # The demo's job list lives with the jobs; the runtime loads it by name, never imports it.
    demo_jobs: tuple[str, ...] = importlib.import_module("jobs").DEMO_JOBS
    env_seconds = os.environ.get("DEMO_SECONDS")
    if not seconds and env_seconds:
        seconds = float(env_seconds)
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    broker = local_broker()
    started_broker = not broker.running()
    if started_broker:
        click.echo(
            "demo: starting the local Kafka broker (first run fetches its jars)...", err=True
        )
    bootstrap = broker.start()
    click.echo(f"demo: broker at {bootstrap}", err=True)
    lock = threading.Lock()
    procs: list[subprocess.Popen[bytes]] = []
    viewer: threading.Thread | None = None
    try:
        KafkaAdmin(bootstrap).ensure_topics(
            [TopicSpec("playback", 4), TopicSpec("interactions", 4)]
        )
        env_boot = ["--bootstrap", bootstrap]
        procs.append(
            _spawn(
                [
                    "generate",
                    "--events",
                    str(10**9),
                    "--rate",
                    str(rate),
                    "--users",
                    str(users),
                    "--degrade",
                    "cdn-b:600:1500",
                    "-q",
                    *env_boot,
                ],
                "[generator]",
                lock,
            )
        )
        sink_topics: list[str] = []
        for spec in demo_jobs:
            job = load_job(spec)
            sink_topics.extend(Bindings.for_job(job).sinks.values())
            procs.append(_spawn(["run", spec, *env_boot], "", lock))
        time.sleep(3)
        KafkaAdmin(bootstrap).ensure_topics([TopicSpec(t, 4) for t in sink_topics])
        viewer = threading.Thread(
            target=_sample, args=(bootstrap, sink_topics, stop, lock), daemon=True
        )
        viewer.start()
        deadline = time.monotonic() + seconds if seconds > 0 else None
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                click.echo(
                    f"demo: a process exited (code {dead[0].returncode}); stopping", err=True
                )
                break
            stop.wait(0.5)
    finally:
        stop.set()
        click.echo("demo: stopping...", err=True)
        _terminate(procs)
        if viewer is not None:
            viewer.join(timeout=5)
        if started_broker:
            broker.stop()
        click.echo("demo: stopped everything it started", err=True)
