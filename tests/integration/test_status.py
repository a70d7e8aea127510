"""``shoal jobs`` and ``shoal status``: a running job's workers and progress, from Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.generator import Generator, GeneratorConfig
from tests.integration.helpers import unique
from tests.integration.workers import Producer, WorkerPool, group_lag

ROOT = Path(__file__).resolve().parents[2]


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_status_of_a_running_job(kafka: str, tmp_path: Path) -> None:
    playback = unique("status-in")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 2)])
    records = [r for r in Generator(GeneratorConfig(seed=8, users=50, interaction_ratio=0.0,
                                                    late_rate=0.0, malformed_rate=0.0,
                                                    bad_timestamp_rate=0.0)).take(3000)
               if r.stream == "playback"]
    producer = Producer(kafka, playback, records, 1e9)
    producer.run()
    assert producer.error is None
    group = unique("status")
    pool = WorkerPool("jobs.user_counts:job", kafka, group,
                      [f"playback={playback}", f"user-counts={unique('status-out')}"], tmp_path,
                      extra=["--checkpoint-ms", "300"])
    pool.start(0)
    pool.start(1)
    try:
        deadline = time.monotonic() + 120
        while group_lag(kafka, group, playback, 2) > 0 or len(
            KafkaAdmin(kafka).group_members(group)
        ) < 2:
            assert time.monotonic() < deadline, pool.log_tail()
            assert not pool.crashed(), pool.log_tail()
            time.sleep(0.5)
        want = [f"{playback}[0]", f"{playback}[1]"]
        while True:  # a cooperative rebalance hands partitions over in steps
            got = shoal("status", "user_counts", "--group", group, "--bootstrap", kafka, "--json")
            assert got.returncode == 0, got.stderr
            status = json.loads(got.stdout)
            held = sorted(p for w in status["workers"] for p in w["partitions"])
            if held == want or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sorted(w["worker"] for w in status["workers"]) == ["w0", "w1"]
        assert held == want
        assert status["lag"] == 0
        parts = {p["partition"]: p for p in status["partitions"]}
        assert sorted(parts) == [0, 1]
        for p in parts.values():
            assert p["committed"] == p["end"] and p["checkpoint_seq"] >= 1
            assert p["watermark_ms"] > 0 and p["checkpoint_age_s"] is not None
            assert p["worker"] in ("w0", "w1")
        assert sum(p["committed"] for p in parts.values()) == len(records)
        table = shoal("status", "user_counts", "--group", group, "--bootstrap", kafka)
        assert table.returncode == 0 and "2 worker(s), lag 0" in table.stdout
        listed = shoal("jobs", "--bootstrap", kafka, "--json")
        assert listed.returncode == 0, listed.stderr
        assert group in [json.loads(line)["group"] for line in listed.stdout.splitlines()]
    finally:
        pool.stop_all()
    missing = shoal("status", "nope", "--group", unique("nope"), "--bootstrap", kafka)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no job")
