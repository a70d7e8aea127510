"""``shoal broker``: the local Kafka broker."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from connectors.kafka.broker import LocalBroker
from runtime.cli.common import local_broker


@click.group()
def broker() -> None:
    """Run a real single-node Apache Kafka (KRaft) on a free loopback port.

    The broker lives in one folder per user, whatever the current folder:
    SHOAL_HOME/broker, by default $XDG_DATA_HOME/shoal/broker or
    ~/.local/share/shoal/broker. Every command says which.
    """


@broker.command()
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C stops the broker.")
def start(foreground: bool) -> None:
    """Start the local broker (jars fetched once from Maven Central) and print its address."""
    b = local_broker()
    if b.running():
        click.echo(f"broker already running (pid {b.pid()}, data in {_where(b)})", err=True)
        click.echo(b.bootstrap)
        return
    click.echo("starting the local Kafka broker...", err=True)
    t0 = time.monotonic()
    bootstrap = b.start()
    click.echo(
        f"broker ready at {bootstrap} in {time.monotonic() - t0:.1f}s (data in {_where(b)})",
        err=True,
    )
    click.echo(bootstrap)
    if foreground:
        stop = {"now": False}

        def _stop(*_: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop["now"] and b.running():
                time.sleep(0.5)
        finally:
            b.stop()
            click.echo("broker stopped", err=True)


@broker.command()
@click.option("--wipe", is_flag=True, help="Also delete the broker's data.")
def stop(wipe: bool) -> None:
    """Stop the local broker (no process is left behind)."""
    b = local_broker()
    was = b.stop()
    if wipe:
        b.wipe()
    click.echo(
        f"broker stopped (data in {_where(b)}{', wiped' if wipe else ''})"
        if was
        else f"no broker was running (home {_where(b)})"
    )


@broker.command()
def status() -> None:
    """Say whether the local broker runs, and where."""
    b = local_broker()
    if b.running():
        click.echo(f"running at {b.bootstrap} (pid {b.pid()}, data in {_where(b)})")
    else:
        click.echo(f"not running (home {_where(b)}; set SHOAL_HOME for another)")
        raise SystemExit(3)


def _where(b: LocalBroker) -> Path:
    return b.home.absolute()
