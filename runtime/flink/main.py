"""Entry point for a Flink cluster that runs the Python program itself (application mode).

``flink run -py``/``PythonDriver -pym runtime.flink.main --job MODULE:ATTR --bootstrap
KAFKA [--bind NAME=TOPIC ...] [--group GROUP]`` translates the job and runs it with the
cluster's configuration (see ``deploy/flink/flinkdeployment.yaml``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from runtime.api.bindings import Bindings
from runtime.flink.options import FlinkOptions
from runtime.flink.submit import run_on_flink


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and run the job until the cluster stops it."""
    from runtime.cli.run_cmd import load_job

    parser = argparse.ArgumentParser(prog="runtime.flink.main", description=__doc__)
    parser.add_argument("--job", required=True, help="MODULE:ATTR of the Shoal job")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--bind", action="append", default=[], metavar="NAME=TOPIC")
    parser.add_argument("--group", default=None, help="consumer group (default: job name)")
    parser.add_argument(
        "--kafka-config", default=None, help="Kafka client settings (.properties file)"
    )
    args = parser.parse_args(argv)
    job = load_job(args.job)
    bindings = Bindings.for_job(job, args.bind)
    from pathlib import Path

    from connectors.kafka.config import load_client_config
    from runtime.settings import load_settings

    client = load_client_config(
        args.bootstrap,
        config_file=Path(args.kafka_config) if args.kafka_config else None,
        env=load_settings().kafka_env,
    )
    options = FlinkOptions(
        bootstrap=client.bootstrap,
        group=args.group,
        from_cluster=True,
        kafka_properties=dict(client.properties),
    )
    run_on_flink(job, bindings, options)


if __name__ == "__main__":
    main()
