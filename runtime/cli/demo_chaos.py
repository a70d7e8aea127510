"""``shoal demo --chaos``: one demo job's workers killed at random, judged at the end.

The sessionization job runs under a supervisor with two workers; every few seconds
(seeded) one of them is SIGKILLed and the supervisor restarts it. When the demo ends,
the generator is stopped first, the job catches up, and the ``shoal chaos`` verdict is
given: everything the job read since its inputs' start (each demo run starts fresh),
replayed through its own graph, against what it committed (``runtime.chaos``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runtime.api.errors import ShoalError

#: The demo job chaos runs against, and its workers.
CHAOS_JOB = "jobs.sessionization.job:demo_job"
CHAOS_WORKERS = 2

Say = Callable[[str], None]


class DemoChaos:
    """Kills the judged job's workers at seeded random intervals while the demo runs.

    Args:
        pid_file: the job's supervisor state file.
        every_s: mean time between kills (each interval uniform in 0.5x..1.5x).
        seed: the schedule's seed.
        say: progress lines.
    """

    def __init__(self, pid_file: Path, every_s: float, seed: int, say: Say) -> None:
        from runtime.chaos.faults import LocalTarget

        self.target = LocalTarget(pid_file)
        self.every_s, self.rng, self.say = every_s, random.Random(seed), say
        self.kills = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoal-demo-chaos", daemon=True)

    def start(self) -> None:
        """Start killing (in the background)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop killing; returns once the last kill is done."""
        self._halt.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.wait(self.every_s * self.rng.uniform(0.5, 1.5)):
            workers = self.target.workers()
            if not workers:
                continue  # both restarting: try at the next interval
            worker = self.rng.choice(workers)
            try:
                self.target.kill(worker)
            except ShoalError:
                continue  # it died on its own in between
            self.kills += 1
            self.say(f"[chaos {time.monotonic() - t0:5.1f}s] killed {worker} (SIGKILL)")


def judge(
    client: object, group: str, binds: list[str], kills: int, say: Say, timeout_s: float = 180.0
) -> tuple[str, bool]:
    """Wait for the job to catch up, replay its whole input, compare: the chaos line.

    Returns:
        The ``chaos:`` line and whether the verdict passed.
    """
    from connectors.kafka.admin import KafkaAdmin
    from runtime.api.bindings import Bindings
    from runtime.chaos.replay import (
        committed_outputs,
        partitions_of,
        read_inputs,
        replay,
        sink_topics,
        span,
    )
    from runtime.chaos.verdict import compare, summary_line
    from runtime.composition import default_codecs
    from runtime.engine.topics import internal_topics
    from runtime.loader import load_job

    job = load_job(CHAOS_JOB)
    bindings = Bindings.for_job(job, binds)
    admin = KafkaAdmin(client)  # type: ignore[arg-type]
    topics = list(bindings.sources.values())
    # Its repartition topics too (see ``shoal chaos``): windows after a repartition
    # fire once the marks that crossed the topic are read.
    waited = [*topics, *internal_topics(job, group)]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            lag = admin.group_lag(group, waited)
        except ShoalError:
            lag = -1
        if lag == 0:
            break
        if time.monotonic() > deadline:
            return f"chaos: kills={kills} verdict=fail (the job did not catch up: lag {lag})", False
        time.sleep(1)
    inputs = partitions_of(admin, topics)
    sinks = partitions_of(admin, sink_topics(bindings).values())
    start = span(admin, group, inputs, sinks, from_start=True)
    end = span(admin, group, inputs, sinks)
    records = read_inputs(client, bindings, start, end)
    events = sum(len(r) for r in records.values())
    say(f"demo: replaying {events:,} records through {job.name}'s own graph for the verdict")
    reference = replay(job, bindings, records, end)
    actual = committed_outputs(client, job, bindings, default_codecs(job.schema_dirs), start, end)
    comparison = compare(reference, actual)
    return summary_line(kills, 0, 0, events, comparison), comparison.passed
