"""``shoal canary BASELINE --candidate MODULE:ATTR``: a new version judged in shadow.

See ``runtime.canary.run`` for the run (cut, shadow, samples, outputs) and
``runtime.canary.judge`` for the judgement. ``--promote`` after a pass stops the
baseline with a savepoint and starts the candidate from it on the production
bindings, detached, under its own supervisor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runtime.api.errors import ConfigError, ShoalError
from runtime.cli.chaos_cmd import parse_duration
from runtime.cli.common import _KAFKA_META, kafka_options, resolve_client, settings
from runtime.loader import load_job

if TYPE_CHECKING:
    from connectors.kafka.admin import KafkaAdmin
    from connectors.kafka.config import KafkaClientConfig
    from runtime.api.job import Job

#: Exit codes: pass 0, fail 1 (also errors), marginal 2.
EXIT_FAIL, EXIT_MARGINAL = 1, 2


def _duration(_: click.Context, __: click.Parameter, value: str) -> float:
    return parse_duration(value)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _kafka_args(ctx: click.Context) -> list[str]:
    """The cluster settings this command was given, for the shoal run it starts."""
    meta = ctx.meta.get(_KAFKA_META, {})
    args: list[str] = []
    if meta.get("kafka_config"):
        args += ["--kafka-config", str(meta["kafka_config"])]
    for item in meta.get("kafka_set") or ():
        args += ["-X", item]
    return args


@click.command()
@click.argument("baseline_spec", metavar="BASELINE")
@click.option("--candidate", "candidate_spec", required=True, metavar="MODULE:ATTR",
              help="The new version to judge.")  # fmt: skip
@click.option(
    "--path", "paths", multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path), metavar="DIR",
    help="Also import job modules from DIR (as shoal run does).",
)  # fmt: skip
@click.option("--bind", "binds", multiple=True, metavar="NAME=TOPIC|URL",
              help="The baseline's bindings, as given to shoal run (repeatable).")  # fmt: skip
@click.option("--group", default=None, help="The baseline's consumer group; default: its name.")
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@click.option("--duration", default="60s", show_default=True, callback=_duration,
              help="How long both run side by side once the candidate caught up.")  # fmt: skip
@click.option("--interval", default="1s", show_default=True, callback=_duration,
              help="How often both are sampled.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers of the candidate.")  # fmt: skip
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Relative tolerance of numbers in outputs (0: exact).")  # fmt: skip
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Least share of output identities that must agree.")  # fmt: skip
@click.option("--pass-score", type=click.FloatRange(0, 100), default=90.0, show_default=True)
@click.option("--marginal-score", type=click.FloatRange(0, 100), default=75.0,
              show_default=True)  # fmt: skip
@click.option("--rename", "renames", multiple=True, metavar="OLD=NEW",
              help="A stateful step the candidate renamed (as shoal run takes it).")  # fmt: skip
@click.option("--allow-dropped-state", is_flag=True,
              help="Let the candidate start without state of steps it removed.")  # fmt: skip
@click.option("--catch-up-timeout", default="300s", show_default=True, callback=_duration,
              help="How long the candidate has to catch up with the cut.")  # fmt: skip
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="DIR",
              help="Write canary.md and canary.png here (also the savepoint and the "
              "candidate's log); default: a folder under SHOAL_HOME/canary.")  # fmt: skip
@click.option("--promote", is_flag=True,
              help="On pass: stop the baseline with a savepoint and start the candidate "
              "from it on the production bindings.")  # fmt: skip
@kafka_options
@click.pass_context
def canary(
    ctx: click.Context,
    baseline_spec: str,
    candidate_spec: str,
    paths: tuple[Path, ...],
    binds: tuple[str, ...],
    group: str | None,
    bootstrap: str | None,
    duration: float,
    interval: float,
    workers: int,
    tolerance: float,
    min_agreement: float,
    pass_score: float,
    marginal_score: float,
    renames: tuple[str, ...],
    allow_dropped_state: bool,
    catch_up_timeout: float,
    report_dir: Path | None,
    promote: bool,
) -> None:
    """Run CANDIDATE in shadow beside the running job BASELINE (MODULE:ATTR), judge it.

    \b
    The baseline (under shoal run --workers N on this machine, same SHOAL_HOME) is cut
    with a savepoint; the candidate starts from it in group GROUP-canary, on the same
    inputs, its sinks bound to TOPIC.canary topics (never the production sinks). Once
    it caught up, both run for --duration: records per CPU second, dead-letter rate and
    memory are sampled each --interval and compared (one-sided Mann-Whitney U and a
    tolerance per metric), and their outputs after the cut are compared per (sink, key,
    event time) up to both jobs' watermarks. It ends with one line:
      canary: verdict=pass|marginal|fail score=S (reasons)
    On pass with --promote the baseline stops with a savepoint and the candidate
    starts from it on the production bindings; otherwise the shadow is stopped and its
    group and topics deleted. Exit codes: 0 pass, 1 fail (or an error), 2 marginal.
    """
    from connectors.kafka.admin import KafkaAdmin  # noqa: F811 - used at run time here
    from runtime.canary.report import write_report
    from runtime.canary.run import CanaryOptions, run_canary, stop_process
    from runtime.composition import client_config, default_codecs

    if marginal_score > pass_score:
        raise ConfigError("--marginal-score must not be above --pass-score")
    baseline = load_job(baseline_spec, paths)
    candidate = load_job(candidate_spec, paths)
    app = group or baseline.name
    client = client_config(resolve_client(bootstrap))
    home = settings().home
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = report_dir or home / "canary" / f"{app}-{stamp}"
    run_args = [
        "--bootstrap", client.bootstrap, *_kafka_args(ctx),
        *[a for r in renames for a in ("--rename", r)],
        *(["--allow-dropped-state"] if allow_dropped_state else []),
        *[a for p in paths for a in ("--path", str(p))],
    ]  # fmt: skip
    options = CanaryOptions(
        group=app, binds=binds, duration_s=duration, interval_s=interval, workers=workers,
        tolerance=tolerance, min_agreement=min_agreement, pass_score=pass_score,
        marginal_score=marginal_score, run_args=tuple(run_args), home=home, folder=folder,
        catch_up_s=catch_up_timeout,
    )  # fmt: skip
    codecs = default_codecs((*baseline.schema_dirs, *candidate.schema_dirs))
    found, shadow = run_canary(client, baseline, candidate, candidate_spec, codecs, options, _say)
    judged = found.judgement
    for metric in judged.metrics:
        _say(f"  {metric.line()}")
    if judged.outputs is not None:
        _say(f"  {judged.outputs.line()}")
        for ident, b, c in judged.outputs.examples[:3]:
            _say(f"    {ident}: baseline {b} candidate {c}")
    if found.not_measured:
        _say(f"  not measured: {', '.join(found.not_measured)} (need the workers' HTTP service)")
    for path in write_report(folder, baseline_spec, candidate_spec, found):
        _say(f"report: {path}")
    click.echo(judged.line())
    stop_process(shadow)
    admin = KafkaAdmin(client)
    if judged.verdict == "pass" and promote:
        _promote(client, app, candidate_spec, binds, run_args, workers, folder, home)
    else:
        _remove_shadow(admin, found.shadow_group, baseline, binds, app)
    if judged.verdict == "fail":
        sys.exit(EXIT_FAIL)
    if judged.verdict == "marginal":
        sys.exit(EXIT_MARGINAL)


def _remove_shadow(
    admin: KafkaAdmin, shadow_group: str, baseline: Job, binds: tuple[str, ...], group: str
) -> None:
    """Delete the shadow's group and its topics: nothing of the canary stays behind."""
    from runtime.api.bindings import Bindings
    from runtime.canary.run import candidate_bindings

    shadow, _ = candidate_bindings(Bindings.for_job(baseline, binds), group)
    existing = admin.topics()
    mine = [t for t in [*shadow.sinks.values(), shadow.dead_letters] if t in existing]
    mine += [t for t in existing if t.startswith(f"{shadow_group}.")]
    # Static members stay in the group until their session times out after they
    # stopped: the group is not empty for that long.
    deadline = time.monotonic() + 45
    while True:
        try:
            admin.delete_groups([shadow_group])
            break
        except ShoalError as exc:
            if time.monotonic() > deadline:
                _say(f"canary: could not delete group {shadow_group}: {exc}")
                break
            time.sleep(1)
    if mine:
        admin.delete_topics(sorted(set(mine)))
    _say(f"canary: shadow removed (group {shadow_group}, {len(set(mine))} topics)")


def _promote(
    client: KafkaClientConfig,
    group: str,
    candidate_spec: str,
    binds: tuple[str, ...],
    run_args: list[str],
    workers: int,
    folder: Path,
    home: Path,
) -> None:
    """Stop the baseline with a savepoint; start the candidate from it on its bindings."""
    from runtime.savepoint.coordinator import CommandOptions, Coordinator

    savepoint = folder / "promotion-savepoint"
    coordinator = Coordinator(client, group, CommandOptions(answer_s=60.0, drain_s=60.0), echo=_say)
    try:
        coordinator.savepoint(savepoint, stop=True)
    finally:
        coordinator.close()
    log = folder / "promoted.log"
    args = [
        sys.executable, "-m", "runtime.cli.main", "run", candidate_spec,
        "--from-savepoint", str(savepoint), "--group", group, "--workers", str(workers),
        *[a for b in binds for a in ("--bind", b)], *run_args,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command
            env={**os.environ, "SHOAL_HOME": str(home)},
        )
    _say(
        f"canary: promoted: the baseline stopped at {savepoint}; {candidate_spec} runs as "
        f"group {group} (supervisor pid {proc.pid}, log {log}); "
        f"shoal stop JOB --group {group} ends it"
    )
