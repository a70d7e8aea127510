"""``shoal chaos JOB``: faults at random against a running job, then a verdict.

The run has three parts: the fault period (``runtime.chaos.campaign``: seeded kills
of the job's workers, optionally broker pauses and sink stalls, the job's lag and
throughput sampled each second), the catch-up (until the group's lag on its inputs is
0), and the verdict (``runtime.chaos.replay`` and ``runtime.chaos.verdict``: the
input range the job read replayed through its own graph in the test driver, compared
key by key with what it committed to its sink topics, read_committed).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ShoalError
from runtime.cli.common import kafka_options, resolve_client, settings
from runtime.engine.topics import internal_topics
from runtime.loader import load_job

if TYPE_CHECKING:
    from connectors.kafka.admin import KafkaAdmin
    from runtime.chaos.faults import Target

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def parse_duration(text: str) -> float:
    """``"60s"``, ``"2m"``, ``"500ms"`` or plain seconds, as seconds.

    >>> parse_duration("2m"), parse_duration("500ms"), parse_duration("7")
    (120.0, 0.5, 7.0)

    Raises:
        click.BadParameter: not a positive duration.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration like 60s, 2m or 500ms")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _duration(_: click.Context, __: click.Parameter, value: str) -> float:
    return parse_duration(value)


@click.command()
@click.argument("job_spec", metavar="MODULE:ATTR")
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="Also import the job module from DIR (as shoal run does).",
)
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="NAME=TOPIC|URL",
    help="The job's bindings, as given to shoal run (repeatable).",
)
@click.option("--group", default=None, help="The job's consumer group; default: its name.")
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@click.option(
    "--duration", default="60s", show_default=True, callback=_duration,
    help="How long faults go on (e.g. 60s, 2m).",
)  # fmt: skip
@click.option(
    "--every", default="5s", show_default=True, callback=_duration,
    help="Mean time between faults (each interval uniform in 0.5x..1.5x).",
)  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the schedule.")
@click.option(
    "--broker-pause", is_flag=True,
    help="Also pause the local broker (SIGSTOP, then SIGCONT after --pause-for).",
)  # fmt: skip
@click.option(
    "--sink-stall",
    type=click.Choice(["redis", "postgres"]),
    default=None,
    help="Also pause a local Redis or PostgreSQL server (needs --sink-pid-file).",
)
@click.option(
    "--sink-pid-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The server's pid file: PostgreSQL's DATA/postmaster.pid, Redis's pidfile.",
)
@click.option(
    "--pause-for", default="4s", show_default=True, callback=_duration,
    help="How long a broker pause or sink stall lasts.",
)  # fmt: skip
@click.option(
    "--from-start", is_flag=True,
    help="Judge everything the job read since its inputs' start (it began with no "
    "state), not only what it read after chaos started.",
)  # fmt: skip
@click.option(
    "--catch-up-timeout", default="300s", show_default=True, callback=_duration,
    help="How long to wait, after the faults, for the job's lag to reach 0.",
)  # fmt: skip
@click.option(
    "--target",
    type=click.Choice(["local", "kubernetes"]),
    default="local",
    show_default=True,
    help="local: the workers of shoal run --workers N on this machine (same SHOAL_HOME); "
    "kubernetes: delete pods of --statefulset (untested without a cluster).",
)
@click.option("--statefulset", default=None, help="With --target kubernetes: its name.")
@click.option("--namespace", default="default", show_default=True, help="Its namespace.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write chaos.md and timeline.png (lag, throughput, faults) here.",
)
@kafka_options
def chaos(
    job_spec: str,
    paths: tuple[Path, ...],
    binds: tuple[str, ...],
    group: str | None,
    bootstrap: str | None,
    duration: float,
    every: float,
    seed: int,
    broker_pause: bool,
    sink_stall: str | None,
    sink_pid_file: Path | None,
    pause_for: float,
    from_start: bool,
    catch_up_timeout: float,
    target: str,
    statefulset: str | None,
    namespace: str,
    report_dir: Path | None,
) -> None:
    """Kill workers of the running job MODULE:ATTR at random, then judge its outputs.

    \b
    For --duration, at seeded random intervals (--every, --seed), it SIGKILLs a random
    worker (its supervisor restarts it), and with --broker-pause / --sink-stall pauses
    the local broker or a local sink server for --pause-for. Then it waits until the
    job has caught up (lag 0), replays the input range the job read through the job's
    own graph (the test driver's engine) and compares, key by key, with what the job
    committed to its sink topics (read_committed). It ends with one line:
      chaos: kills=K broker_pauses=B sink_stalls=S events=N outputs=M
             lost=L duplicated=D verdict=pass|fail
    Exit codes: 0 pass, 1 fail (or an error), 3 cannot judge (outputs that depend on
    processing time, or no sink on a Kafka topic).
    """
    from connectors.kafka.admin import KafkaAdmin
    from runtime.api.graph import ProcessNode, WindowNode
    from runtime.chaos.campaign import Pauses, Record, Sampler, run_faults
    from runtime.chaos.replay import (
        committed_outputs,
        partitions_of,
        read_inputs,
        replay,
        sink_topics,
        span,
    )
    from runtime.chaos.report import write_report
    from runtime.chaos.schedule import plan
    from runtime.chaos.verdict import (
        EXIT_CANNOT_JUDGE,
        EXIT_FAIL,
        compare,
        summary_line,
        wall_clock_steps,
    )
    from runtime.composition import client_config, default_codecs

    job = load_job(job_spec, paths)
    bindings = Bindings.for_job(job, binds)
    app = group or job.name
    chaos_target = _target(target, app, statefulset, namespace)
    client = client_config(resolve_client(bootstrap))
    admin = KafkaAdmin(client)
    pauses = Pauses(
        broker=_broker_pause(client.bootstrap, pause_for) if broker_pause else None,
        sink=_sink_stall(sink_stall, sink_pid_file, pause_for) if sink_stall else None,
    )
    cannot = wall_clock_steps(job)
    if not sink_topics(bindings):
        cannot.append("no sink is bound to a Kafka topic (only those can be read back)")
    inputs = partitions_of(admin, bindings.sources.values())
    sinks = partitions_of(admin, sink_topics(bindings).values())
    start = span(admin, app, inputs, sinks, from_start=from_start)
    faults = plan(seed, duration, every, broker_pause=broker_pause, sink_stall=bool(sink_stall))
    say = _say
    say(
        f"chaos on {job.name} (group {app}, {chaos_target.describe()}): {len(faults)} faults "
        f"over {duration:.0f}s, seed {seed}"
    )
    if cannot:
        say(f"note: the outputs cannot be judged ({'; '.join(cannot)}); the faults still run")
    elif not from_start and any(isinstance(n, (WindowNode, ProcessNode)) for n in job.nodes):
        say(
            "note: judging from the offsets the group has committed now; state the job "
            "built before is not in the replay, so windows open now may differ (use "
            "--from-start when the job began at its inputs' start)"
        )
    record = Record()
    sampler_admin = KafkaAdmin(client)
    topics = list(bindings.sources.values())

    def sample() -> tuple[int, int]:
        offsets = sampler_admin.group_offsets(app)
        return sampler_admin.group_lag(app, topics), sum(
            o for tp, (o, _) in offsets.items() if tp[0] in topics
        )

    t0 = time.monotonic()
    sampler = Sampler(sample, t0, record)
    sampler.start()
    try:
        run_faults(chaos_target, faults, duration, pauses, record, t0, say)
        say(f"[chaos {time.monotonic() - t0:5.1f}s] faults over; waiting for the job to catch up")
        # Its repartition topics too: a window after a repartition fires only once the
        # marks that crossed the topic were read, after the inputs' lag reached 0.
        _catch_up(admin, app, [*topics, *internal_topics(job, app)], catch_up_timeout, t0)
    finally:
        sampler.stop()
    kills, bp, ss = record.count("kill"), record.count("broker_pause"), record.count("sink_stall")
    settings_table = {
        "job": job_spec, "group": app, "duration": f"{duration:g}s", "every": f"{every:g}s",
        "seed": str(seed), "target": chaos_target.describe(),
        "range": "from the inputs' start" if from_start else "from the offsets at chaos start",
    }  # fmt: skip
    if cannot:
        why = "; ".join(cannot)
        line = (
            f"chaos: kills={kills} broker_pauses={bp} sink_stalls={ss} verdict=cannot-judge ({why})"
        )
        click.echo(line)
        if report_dir is not None:
            write_report(report_dir, job.name, settings_table, record, None, line, why)
        sys.exit(EXIT_CANNOT_JUDGE)
    end = span(admin, app, inputs, sinks)
    say("reading the input range the job read and what it committed ...")
    records = read_inputs(client, bindings, start, end)
    events = sum(len(r) for r in records.values())
    say(f"replaying {events:,} input records through {job.name}'s own graph ...")
    reference = replay(job, bindings, records, end, say)
    actual = committed_outputs(client, job, bindings, default_codecs(job.schema_dirs), start, end)
    comparison = compare(reference, actual)
    for example in comparison.examples:
        say(f"  {example}")
    line = summary_line(kills, bp, ss, events, comparison)
    click.echo(line)
    if report_dir is not None:
        for path in write_report(report_dir, job.name, settings_table, record, comparison, line):
            say(f"report: {path}")
    if not comparison.passed:
        sys.exit(EXIT_FAIL)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _target(kind: str, group: str, statefulset: str | None, namespace: str) -> Target:
    if kind == "kubernetes":
        if not statefulset:
            raise ConfigError("--target kubernetes needs --statefulset NAME")
        from runtime.chaos.kubernetes import KubernetesTarget

        return KubernetesTarget(statefulset, namespace)
    from runtime.chaos.faults import LocalTarget
    from runtime.cli.supervisor import workers_file

    target = LocalTarget(workers_file(settings().home, group))
    target.check()
    return target


def _broker_pause(bootstrap: str, seconds: float) -> Callable[[], str]:
    """Pausing the local broker, checked first: it must be the job's broker.

    Raises:
        ConfigError: no local broker runs, or the job's cluster is another one.
    """
    from runtime.chaos.faults import pause
    from runtime.cli.common import local_broker

    broker = local_broker()
    pid = broker.pid()
    if pid is None:
        raise ConfigError("--broker-pause pauses the local broker, which is not running here")
    if broker.bootstrap not in bootstrap.split(","):
        raise ConfigError(
            f"--broker-pause: the local broker is at {broker.bootstrap}, "
            f"the job's cluster at {bootstrap}"
        )

    def do() -> str:
        pause(pid, seconds, "the local broker")
        return f"broker (pid {pid}) paused for {seconds:g}s, resumed"

    return do


def _sink_stall(kind: str, pid_file: Path | None, seconds: float) -> Callable[[], str]:
    """Pausing a local Redis or PostgreSQL server (with its backends).

    Raises:
        ConfigError: no ``--sink-pid-file``, or no live pid in it.
    """
    from runtime.chaos.faults import local_process, pause

    if pid_file is None:
        raise ConfigError(f"--sink-stall {kind} needs --sink-pid-file (the server's pid file)")
    local_process(pid_file, kind)

    def do() -> str:
        pid = local_process(pid_file, kind)
        pause(pid, seconds, kind, group=True)
        return f"{kind} (pid {pid}) stalled for {seconds:g}s, resumed"

    return do


def _catch_up(
    admin: KafkaAdmin, group: str, topics: list[str], timeout_s: float, t0: float
) -> None:
    """Wait until the group's lag on ``topics`` (its inputs and repartition topics) is 0
    (read_committed ends).

    Raises:
        ConfigError: the lag is not 0 within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    shown = 0.0
    while True:
        try:
            lag = admin.group_lag(group, topics)
        except ShoalError:  # the coordinator moving after a pause: ask again
            lag = -1
        if lag == 0:
            _say(f"[chaos {time.monotonic() - t0:5.1f}s] caught up: lag 0")
            return
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the job did not catch up within {timeout_s:.0f}s (lag {lag}): "
                "is its input still flowing, or are its workers down?"
            )
        if time.monotonic() - shown >= 5:
            shown = time.monotonic()
            _say(f"[chaos {time.monotonic() - t0:5.1f}s] catching up: lag {lag:,}")
        time.sleep(1)
