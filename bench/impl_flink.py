"""``shoal-flink``: W1's Shoal job on Shoal's Flink engine (PyFlink, local mini cluster).

The job is the same public-API job as ``shoal-*`` (``bench.impl_shoal.build_w1``),
translated by ``runtime.flink`` and run as ``shoal run JOB --engine flink`` runs it:
exactly-once (Kafka transactions committed with Flink's checkpoints, every second),
RocksDB state, one source reader per partition. The source is bounded (it stops at
the input's end offsets), so the job finishes by itself after the last record.

What is measured: Flink's records never pass through this process, so the span is
from the submission of the job to the local mini cluster (its JVM already started)
to the end of the job: task deployment, the start of the Python workers, the final
checkpoint and the commit of the last transaction are inside it; starting the JVM
gateway is not. It therefore understates Flink's steady-state rate, more so for
small inputs. CPU seconds include the JVM's threads.
"""

from __future__ import annotations

import time

from bench.common import Stopwatch, package_version, parse_args


def main() -> None:
    """Run W1 on Flink over the whole input topic."""
    args = parse_args(__doc__ or "")
    import importlib.util

    if importlib.util.find_spec("pyflink") is None:
        raise SystemExit('Error: PyFlink is not installed (pip install -e ".[flink]")')
    from bench.impl_shoal import build_w1
    from runtime.api.bindings import Bindings
    from runtime.composition import FLINK_CONNECTORS
    from runtime.flink.options import FlinkOptions
    from runtime.flink.submit import build_environment, topic_partitions

    job = build_w1(args.group)
    outputs = args.settings.get("outputs") or {"counts": args.out_topic}
    binds = [f"playback={args.topic}", *(f"{n}={t}" for n, t in outputs.items())]
    bindings = Bindings.for_job(job, binds)
    options = FlinkOptions(
        bootstrap=args.bootstrap,
        group=args.group,
        bounded=True,
        checkpoint_interval_ms=1000,
        checkpoint_dir=args.state_dir / "checkpoints",
        output_partitions=args.partitions,
    )
    partitions = topic_partitions(options, job, bindings, FLINK_CONNECTORS)
    env, _translation, _restored = build_environment(
        job, bindings, options, partitions, FLINK_CONNECTORS
    )
    watch = Stopwatch()
    watch.start()
    t0 = time.perf_counter()
    client = env.execute_async(job.name)
    client.get_job_execution_result().result()  # blocks; raises the job's failure
    watch.stop()
    # The work happens in the JVM's threads, not in this process's Python: no CPU span.
    watch.cpu_first = watch.cpu_last
    watch.records = args.events
    watch.extra.update(
        status="FINISHED",
        submit_to_end_s=round(time.perf_counter() - t0, 3),
        versions={
            "shoal": package_version("shoal"),
            "apache-flink": package_version("apache-flink"),
        },
    )
    watch.write(args.report)


if __name__ == "__main__":
    main()
