"""Entry point of the ``shoal`` command: one-line errors, never a traceback for ours."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from typing import Any

import click

from runtime.api.errors import ShoalError
from runtime.api.redact import redact_text
from runtime.cli import _own_packages  # noqa: F401 - first: see its docstring
from runtime.cli.broker_cmd import broker
from runtime.cli.canary_cmd import canary
from runtime.cli.chaos_cmd import chaos
from runtime.cli.demo_cmd import demo
from runtime.cli.generate_cmd import generate
from runtime.cli.init_cmd import init
from runtime.cli.jobs_cmd import jobs
from runtime.cli.logs import LEVELS, configure
from runtime.cli.run_cmd import run
from runtime.cli.savepoint_cmd import savepoint, scale, state, stop
from runtime.cli.status_cmd import status
from runtime.cli.topics_cmd import tail, topics


class ShoalGroup(click.Group):
    """Turns our errors and usage mistakes into one clear line (exit codes 1 and 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShoalError as exc:
            click.echo(f"error: {redact_text(str(exc))}", err=True)
            sys.exit(1)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            message = redact_text(exc.format_message())
            click.echo(f"error: {where}{message}{hint}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {redact_text(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=ShoalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log more (client and engine details).")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default=None,
    help="Log level (default: warning; info with -v).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line with job, worker and task (for log shippers).",
)
@click.version_option(package_name="shoal", prog_name="shoal")
def cli(verbose: bool, log_level: str | None, log_format: str) -> None:
    """Shoal: real-time stream processing on Kafka with event time and state.

    \b
    Typical session:
      shoal init myjob && cd myjob        # a job project to start from
      pytest                              # its tests (the test driver, no broker)
      shoal broker start                  # a real local Kafka broker (one per user)
      shoal generate &                    # simulated viewers, event time = wall clock
      shoal run myjob.job:job             # run the job, live counters
      shoal tail slow-starts --schemas myjob/schemas   # print its output
    """
    configure(log_level or ("info" if verbose else "warning"), log_format)
    if not verbose:
        logging.getLogger("shoal.kafka.client").setLevel(logging.CRITICAL)


cli.add_command(broker)
cli.add_command(canary)
cli.add_command(chaos)
cli.add_command(demo)
cli.add_command(generate)
cli.add_command(init)
cli.add_command(run)
cli.add_command(jobs)
cli.add_command(status)
cli.add_command(topics)
cli.add_command(tail)
cli.add_command(savepoint)
cli.add_command(stop)
cli.add_command(scale)
cli.add_command(state)


def main() -> None:
    """Console script entry."""
    # `kill -USR1 <pid>` prints every thread's stack: where a stuck worker waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    cli(prog_name="shoal")


if __name__ == "__main__":
    main()
