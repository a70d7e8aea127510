"""Autoscaling on lag: a burst raises the worker count, draining lowers it, output exact.

``shoal run --min-workers 1 --max-workers 3`` supervises the workers of
``jobs.user_counts`` (slowed down per record, ``scaling_jobs``, so that the burst
outlasts the supervisor's first lag sample on any machine); a backlog produced at once
makes the supervisor add workers (the rule in ``runtime/cli/scaling.py``), and once the
lag stays low it takes them away again. Every decision is printed with its reason; the
read_committed output equals the brute-force reference exactly, across every rebalance
the scaling caused.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.generator import Generator, GeneratorConfig
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.workers import Producer, chaos_line
from tests.reference.counts import window_counts

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3
EVENTS = 150_000
DECISION = re.compile(r"scaling: (\d+) -> (\d+) workers \((.+)\)")


def test_burst_scales_up_and_draining_scales_down(kafka: str, tmp_path: Path) -> None:
    playback, out = unique("scale-in"), unique("scale-out")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=5150, users=2000, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    producer = Producer(kafka, playback, records, 1e9)
    producer.run()  # the burst: everything at once, before the job starts
    assert producer.error is None, producer.error
    last_ts = max(r.value["event_time_ms"] for r in records)
    close_all_windows(kafka, playback, last_ts + 3_600_000, PARTITIONS)
    group = unique("scale")
    log_path = tmp_path / "supervisor.log"
    env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", "tests.integration.scaling_jobs:job",
           "--bootstrap", kafka, "--group", group, "--min-workers", "1", "--max-workers", "3",
           "--bind", f"playback={playback}", "--bind", f"user-counts={out}",
           "--checkpoint-ms", "500", "--quiet"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        ups = downs = 0
        while time.monotonic() < deadline and not (ups and downs):
            assert proc.poll() is None, log_path.read_text()
            decisions = DECISION.findall(log_path.read_text())
            ups = sum(1 for a, b, _ in decisions if int(b) > int(a))
            downs = sum(1 for a, b, _ in decisions if int(b) < int(a) and ups)
            time.sleep(1)
        text = log_path.read_text()
        assert ups >= 1, "the burst did not add a worker\n" + text
        assert downs >= 1, "draining did not take a worker away\n" + text
        assert max(int(b) for _, b, _ in DECISION.findall(text)) <= PARTITIONS
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    outputs = decoded(read_all(kafka, out), "")
    reference = window_counts([r.value for r in records])
    line, lost, duplicated = chaos_line(0, len(records), outputs, reference)
    print(line.replace("chaos:", f"autoscale: ups={ups} downs={downs}"))
    assert lost == 0 and duplicated == 0, line + "\n" + log_path.read_text()[-3000:]
