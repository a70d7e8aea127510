"""Entry point for a Flink cluster that runs the Python program itself (application mode).

``flink run -py``/``PythonDriver -pym runtime.flink.main --job MODULE:ATTR [--bootstrap
KAFKA] [--bind NAME=TOPIC ...] [--group GROUP] [--kafka-config FILE]`` translates the job
and runs it with the cluster's configuration (see ``deploy/flink/flinkdeployment.yaml``).
Without ``--bootstrap`` the address comes from ``SHOAL_BOOTSTRAP`` (or ``bootstrap.servers``
in the settings file), as for ``shoal run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The launcher's arguments (no Flink needed to parse them)."""
    p = argparse.ArgumentParser(prog="runtime.flink.main", description=__doc__)
    p.add_argument("--job", required=True, help="MODULE:ATTR of the Shoal job")
    p.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers; default: SHOAL_BOOTSTRAP"
    )
    p.add_argument("--bind", action="append", default=[], metavar="NAME=TOPIC")
    p.add_argument("--group", default=None, help="consumer group (default: job name)")
    p.add_argument("--kafka-config", default=None, help="Kafka client settings (.properties file)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and run the job until the cluster stops it."""
    # The Flink application's entry point: like ``shoal run``, it starts from the
    # composition root, which hands the engine its connectors.
    from runtime.api.bindings import Bindings
    from runtime.composition import FLINK_CONNECTORS, client_settings
    from runtime.flink.options import FlinkOptions
    from runtime.flink.submit import run_on_flink
    from runtime.loader import load_job
    from runtime.settings import load_settings

    args = parser().parse_args(argv)
    job = load_job(args.job)
    bindings = Bindings.for_job(job, args.bind)
    settings = load_settings()
    client = client_settings(
        args.bootstrap or settings.bootstrap or "",
        config_file=Path(args.kafka_config) if args.kafka_config else None,
        env=settings.kafka_env,
    )
    options = FlinkOptions(
        bootstrap=client.bootstrap,
        group=args.group,
        from_cluster=True,
        kafka_properties=dict(client.properties),
    )
    run_on_flink(job, bindings, options, connectors=FLINK_CONNECTORS)


if __name__ == "__main__":
    main()
