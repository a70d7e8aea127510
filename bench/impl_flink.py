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
gateway is not. That end-to-end rate understates Flink's steady state, more so for
small inputs, so the steady state is measured apart: the source commits its offsets
to the job's consumer group with each completed checkpoint, and a thread here reads
them four times a second. ``steady_events_per_s`` is the records committed from the
first commit to the last one before the end divided by the time between them;
``startup_s`` is the time from submission to the first commit (deployment, the
Python workers' start and the first checkpoint interval of processing).

``BENCH_FLINK_PARALLELISM`` sets the keyed steps' parallelism (default 1: the issue's
target is a rate on one slot; 0: one per partition, as ``shoal run --engine flink``).
"""

from __future__ import annotations

import threading
import time

from bench.common import Stopwatch, package_version, parse_args
from bench.workloads import env_int

SAMPLE_S = 0.25


class CommitWatch:
    """Samples ``(seconds since start, records committed)`` of a group on one topic."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)

    def start(self) -> None:
        """Start sampling; times count from now."""
        self.t0 = time.perf_counter()
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            try:
                committed = self.consumer.committed(self.partitions, timeout=5)
            except Exception:  # the broker busy: the next sample will do
                continue
            total = sum(max(tp.offset, 0) for tp in committed)
            self.samples.append((time.perf_counter() - self.t0, total))

    def stop(self) -> None:
        """Stop sampling and close the consumer (it never joined the group)."""
        self.stopped.set()
        self.thread.join()
        self.consumer.close()

    def figures(self, records: int) -> dict[str, float]:
        """:func:`steady_figures` of the samples so far."""
        return steady_figures(self.samples, records)


def steady_figures(samples: list[tuple[float, int]], records: int) -> dict[str, float]:
    """``startup_s`` (the first sample with commits) and ``steady_events_per_s`` (the
    records committed from the first commit to the last one before ``records``, over the
    time between the samples that first showed them); empty without commits."""
    moving = [(t, n) for t, n in samples if n > 0]
    if not moving:
        return {}
    out = {"startup_s": round(moving[0][0], 2)}
    firsts = [moving[0]] + [b for a, b in zip(moving, moving[1:], strict=False) if b[1] > a[1]]
    inner = [s for s in firsts if s[1] < records] or firsts
    (t1, n1), (t2, n2) = firsts[0], inner[-1]
    if t2 > t1 and n2 > n1:
        out["steady_events_per_s"] = round((n2 - n1) / (t2 - t1))
    return out

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
        parallelism=env_int("BENCH_FLINK_PARALLELISM", 1) or None,
    )
    partitions = topic_partitions(options, job, bindings, FLINK_CONNECTORS)
    env, _translation, _restored = build_environment(
        job, bindings, options, partitions, FLINK_CONNECTORS
    )
    commits = CommitWatch(args.bootstrap, args.group, args.topic, args.partitions)
    watch = Stopwatch()
    watch.start()
    t0 = time.perf_counter()
    commits.start()
    client = env.execute_async(job.name)
    try:
        client.get_job_execution_result().result()  # blocks; raises the job's failure
    finally:
        watch.stop()
        commits.stop()
    # The work happens in the JVM's threads, not in this process's Python: no CPU span.
    watch.cpu_first = watch.cpu_last
    watch.records = args.events
    watch.extra.update(
        status="FINISHED",
        submit_to_end_s=round(time.perf_counter() - t0, 3),
        **commits.figures(args.events),
        versions={
            "shoal": package_version("shoal"),
            "apache-flink": package_version("apache-flink"),
        },
    )
    watch.write(args.report)


if __name__ == "__main__":
    main()
