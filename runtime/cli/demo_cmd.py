"""``shoal demo``: the reference jobs on the local broker with generated traffic, live.

Starts the local broker (unless one runs), a traffic generator and one ``shoal run``
process per reference job, relays their live counters and shows a sample of each
output topic, until Ctrl-C or ``--seconds``. Everything it started is stopped.

Every run starts fresh: its topics and consumer groups carry a prefix of their own
(``demo-YYYYMMDD-HHMMSS.``, printed at the start), and the topics and groups of
earlier runs are deleted first, so a second run neither resumes the first one's state
and offsets nor sees its traffic as late. The generator runs ``--realtime``: event time
starts ``--lookback`` seconds in the past at the simulated pace (so windows, sessions
and the scripted cdn-b incident show at once) and, once it reaches the wall clock,
follows it: it never runs ahead of the clock, so the demo runs until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import click

from runtime.api.errors import ConnectorError, InvariantError
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
    if proc.stdout is None:
        raise InvariantError("a demo process started without its output pipe")
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


#: The title catalogue topic (a table of the attribution job), filled by the generator.
CATALOGUE = "title-catalogue"


class DemoView:
    """Turns the output topics into a few readable lines every few seconds."""

    def __init__(self) -> None:
        self.qoe: dict[str, dict[str, Any]] = {}
        self.sessions = 0
        self.last_session: dict[str, Any] | None = None
        self.tops: dict[str, list[str]] = {}
        self.errors = 0
        self.alerts: list[str] = []
        self.ctr: dict[str, dict[str, Any]] = {}  # genre -> its latest AttributionMetric

    def add(self, topic: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        if topic == "qoe-metrics":
            if value.get("group_kind") == "cdn" and value.get("window_kind") == "tumbling_1m":
                prev = self.qoe.get(value["cdn"])
                if prev is None or prev["window_start_ms"] <= value["window_start_ms"]:
                    self.qoe[value["cdn"]] = value
        elif topic == "sessions":
            self.sessions += 1
            self.last_session = value
        elif topic == "personalization-scores":
            titles = [t["title_id"] for t in value.get("top_titles", [])[:3]]
            self.tops[value["user_id"]] = titles
            if len(self.tops) > 3:
                self.tops.pop(next(iter(self.tops)))
        elif topic == "playback-errors":
            self.errors += 1
        elif topic == "attribution-metrics" and value.get("group_kind") == "genre":
            prev = self.ctr.get(value["genre"])
            if prev is None or prev["window_start_ms"] <= value["window_start_ms"]:
                self.ctr[value["genre"]] = value
        elif topic == "qoe-alerts":
            group = ",".join(f"{k}={v}" for k, v in sorted(value.get("group", {}).items()))
            self.alerts.append(
                f"ALERT {value['state'].upper()}: {value['rule']} [{group}] "
                f"{value['metric']}={value['value']:.4f} (threshold {value['threshold']})"
            )

    def lines(self) -> list[str]:
        out = []
        if self.qoe:
            cells = [
                f"{cdn} rebuffer {m['rebuffer_ratio'] * 100:.2f}% fail "
                f"{m['failure_rate'] * 100:.0f}% plays {m['plays_started']}"
                for cdn, m in sorted(self.qoe.items())
            ]
            out.append("  QoE per CDN (last 1-min window): " + " | ".join(cells))
        if self.last_session is not None:
            s = self.last_session
            out.append(
                f"  sessions closed: {self.sessions} (latest {s['user_id']}/{s['device_id']}: "
                f"{len(s['titles'])} titles, watched {s['watch_time_ms'] / 60000:.1f} min, "
                f"{s['rebuffer_count']} rebuffers, ended {s['end_reason']})"
            )
        if self.tops:
            out.append(
                "  top titles: "
                + " | ".join(f"{u} -> {', '.join(t)}" for u, t in self.tops.items())
            )
        if self.errors:
            out.append(f"  playback errors seen: {self.errors}")
        if self.ctr:
            start = max(m["window_start_ms"] for m in self.ctr.values())
            latest = [m for m in self.ctr.values() if m["window_start_ms"] == start]
            shown = sum(m["impressions"] for m in latest)
            played = sum(m["attributed_plays"] for m in latest)
            top = max(latest, key=lambda m: (m["ctr"], m["impressions"]))
            out.append(
                f"  impressions played within 30 min (5-min window {_clock(start)} UTC): "
                f"{played}/{shown} ({played / max(shown, 1) * 100:.1f}%), best genre "
                f"{top['genre']} {top['ctr'] * 100:.1f}%"
            )
        return out


#: Topics and consumer groups of demo runs start with this.
RUN_PREFIX = "demo-"


def run_prefix() -> str:
    """The prefix of this run's topics and groups (one per second at most)."""
    return f"{RUN_PREFIX}{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}."


def clean_earlier_runs(admin: Any, prefix: str) -> tuple[int, int]:
    """Delete the topics and consumer groups of earlier demo runs; returns their counts."""
    topics = [t for t in admin.topics() if t.startswith(RUN_PREFIX) and not t.startswith(prefix)]
    groups = [g for g in admin.groups() if g.startswith(RUN_PREFIX) and not g.startswith(prefix)]
    admin.delete_topics(topics)
    # A broker restarted right after the last run still lists that run's static members
    # until their sessions time out: such a group is left for the next run to delete
    # (its prefix is not this run's, so nothing here reads it).
    deleted = 0
    for group in groups:
        try:
            admin.delete_groups([group])
            deleted += 1
        except ConnectorError as exc:
            if "NON_EMPTY_GROUP" not in str(exc):
                raise
    return len(topics), deleted


def job_bindings(job: Any, prefix: str) -> list[str]:
    """``--bind`` arguments that put every source, sink and dead letter of ``job`` under
    ``prefix`` (jobs that read others' outputs then read this run's)."""
    binds = [f"{s.name}={prefix}{s.name}" for s in job.sources]
    binds += [f"{t.name}={prefix}{t.name}" for t in job.tables]
    binds += [f"{s.name}={prefix}{s.name}" for s in job.sinks]
    binds.append(f"dead-letters={prefix}{job.dead_letter_topic}")
    return binds


def _view(
    bootstrap: str,
    topics: list[str],
    stop: threading.Event,
    lock: threading.Lock,
    prefix: str = "",
) -> None:
    """Print what the jobs produce: alerts at once, a summary every five seconds."""
    from connectors.kafka.source import KafkaSource

    source = KafkaSource(
        bootstrap,
        f"{prefix}view",
        topics,
        read_committed=True,
        extra={"auto.offset.reset": "latest"},
    )
    decode = codecs().any_decoder(None)
    view = DemoView()
    next_show = time.monotonic() + 5
    try:
        while not stop.is_set():
            for m in source.poll(5000, 0.2):
                view.add((m.topic() or "").removeprefix(prefix), decode(m.value()))
            if view.alerts:
                with lock:
                    for line in view.alerts:
                        click.secho(f"  {line}", err=True, fg="red", bold=True)
                view.alerts.clear()
            if time.monotonic() >= next_show:
                next_show = time.monotonic() + 5
                with lock:
                    for line in view.lines():
                        click.echo(line, err=True)
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
@click.option(
    "--lookback",
    type=click.FloatRange(min=0),
    default=7200,
    show_default=True,
    help="Seconds of simulated past the generator plays first, then it follows the clock.",
)
@click.option(
    "--chaos",
    is_flag=True,
    help="Kill the sessionization job's workers at random while the demo runs (it runs "
    "with two under a supervisor), then judge its outputs as shoal chaos does and "
    "print the verdict; exit 1 when it fails.",
)
@click.option(
    "--chaos-every",
    type=click.FloatRange(min=1),
    default=8.0,
    show_default=True,
    help="With --chaos: mean seconds between kills.",
)
def demo(
    seconds: float, rate: float, users: int, lookback: float, chaos: bool, chaos_every: float
) -> None:
    """Run the reference jobs on generated traffic with live output.

    Each run starts fresh (its own topics and groups; earlier runs' are deleted) and
    runs until Ctrl-C or ``--seconds``. ``--chaos`` (``make demo DEMO_ARGS=--chaos``)
    kills workers of one job on the way and gives a verdict at the end.
    """
    import importlib

    from connectors.kafka.admin import KafkaAdmin, TopicSpec
    from runtime.api.bindings import Bindings
    from runtime.cli.demo_chaos import CHAOS_JOB, CHAOS_WORKERS, DemoChaos, judge
    from runtime.loader import load_job

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
    killer: DemoChaos | None = None
    chaos_group, chaos_binds, failed = "", [], False
    prefix = run_prefix()
    try:
        admin = KafkaAdmin(bootstrap)
        topics_gone, groups_gone = clean_earlier_runs(admin, prefix)
        if topics_gone or groups_gone:
            click.echo(
                f"demo: deleted {topics_gone} topics and {groups_gone} consumer groups "
                "of earlier runs",
                err=True,
            )
        click.echo(f"demo: this run's topics and groups start with {prefix}", err=True)
        admin.ensure_topics(
            [
                TopicSpec(f"{prefix}playback", 4),
                TopicSpec(f"{prefix}interactions", 4),
                # the generator fills it first; tables must exist before their jobs start
                TopicSpec(f"{prefix}{CATALOGUE}", 1, config={"cleanup.policy": "compact"}),
            ]
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
                    "cdn-b:300:1200",
                    "--realtime",
                    "--lookback",
                    str(lookback),
                    "--playback-topic",
                    f"{prefix}playback",
                    "--interactions-topic",
                    f"{prefix}interactions",
                    "--catalogue-topic",
                    f"{prefix}{CATALOGUE}",
                    "-q",
                    *env_boot,
                ],
                "[generator]",
                lock,
            )
        )
        jobs = [load_job(spec) for spec in demo_jobs]
        binds = [job_bindings(job, prefix) for job in jobs]
        sink_topics = [
            t
            for job, b in zip(jobs, binds, strict=True)
            for t in Bindings.for_job(job, b).sinks.values()
        ]
        # Every output exists before any job starts: some jobs read others' outputs.
        admin.ensure_topics([TopicSpec(t, 4) for t in sink_topics])
        for spec, job, b in zip(demo_jobs, jobs, binds, strict=True):
            judged = chaos and spec == CHAOS_JOB
            procs.append(
                _spawn(
                    [
                        "run",
                        spec,
                        *(["--workers", str(CHAOS_WORKERS)] if judged else []),
                        *env_boot,
                        "--group",
                        f"{prefix}{job.name}",
                        *[arg for bind in b for arg in ("--bind", bind)],
                        "--http",
                        "127.0.0.1:0",
                        "--tick",
                        "5",
                        "--checkpoint-ms",
                        "1000",
                    ],
                    "",
                    lock,
                )
            )
            if judged:
                chaos_group, chaos_binds = f"{prefix}{job.name}", b
        viewer = threading.Thread(
            target=_view, args=(bootstrap, sink_topics, stop, lock, prefix), daemon=True
        )
        viewer.start()
        if chaos:
            killer = _start_chaos(chaos_group, chaos_every, lock)
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
        if killer is not None:
            killer.stop()
            _terminate(procs[:1])  # the generator first: the judged job catches up
            click.echo("demo: chaos over; waiting for the job to catch up", err=True)
            line, passed = judge(bootstrap, chaos_group, chaos_binds, killer.kills, _say)
            click.echo(f"demo: {line}", err=True)
            failed = not passed
    finally:
        stop.set()
        if killer is not None:
            killer.stop()
        click.echo("demo: stopping...", err=True)
        _terminate(procs)
        if viewer is not None:
            viewer.join(timeout=5)
        if started_broker:
            broker.stop()
        click.echo("demo: stopped everything it started", err=True)
    if failed:
        sys.exit(1)


def _clock(ms: int) -> str:
    return time.strftime("%H:%M", time.gmtime(ms / 1000))


def _say(line: str) -> None:
    click.echo(line, err=True)


def _start_chaos(group: str, every_s: float, lock: threading.Lock) -> Any:
    """Wait for the judged job's supervisor, then start killing its workers."""
    from runtime.cli.common import settings
    from runtime.cli.demo_chaos import DemoChaos
    from runtime.cli.supervisor import read_workers, workers_file

    pid_file = workers_file(settings().home, group)
    deadline = time.monotonic() + 60
    while not read_workers(pid_file).get("workers") and time.monotonic() < deadline:
        time.sleep(0.3)

    def say(line: str) -> None:
        with lock:
            click.echo(line, err=True)

    killer = DemoChaos(pid_file, every_s, seed=1, say=say)
    killer.start()
    say(f"demo: chaos on {group}: a worker killed every ~{every_s:g}s")
    return killer
