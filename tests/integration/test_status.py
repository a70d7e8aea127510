"""``shoal jobs`` and ``shoal status``: a running job's workers and progress, from Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.control import ControlTopic, ensure_control_topic
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
        by_group = {r["group"]: r for r in map(json.loads, listed.stdout.splitlines())}
        assert group in by_group
        # both traces: checkpoints in the offsets, the workers' announcement on the control topic
        mine = by_group[group]
        assert mine["checkpointed"] is True and mine["job"] == "user_counts"
        assert "playback" in mine["steps"] and mine["announced_ms"] > 0
        assert len(mine["workers"]) == 2
    finally:
        pool.stop_all()
    missing = shoal("status", "nope", "--group", unique("nope"), "--bootstrap", kafka)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no job")


def test_jobs_lists_a_job_announced_before_its_first_checkpoint(kafka: str) -> None:
    admin = KafkaAdmin(kafka)
    group, other = unique("announced"), unique("not-a-job")
    channel = ControlTopic(kafka, ensure_control_topic(admin, group))
    junk = ControlTopic(kafka, ensure_control_topic(admin, other))
    try:
        # what a worker writes as it starts (runtime.savepoint.wiring); no group, no offsets
        channel.send(
            "job",
            {
                "job": "orders",
                "group": group,
                "steps": [{"name": "in", "kind": "source", "parents": []},
                          {"name": "out", "kind": "sink", "parents": ["in"]}],
                "announced_ms": 1_700_000_000_000,
            },
        )
        junk.send("job", {"hello": "world"})  # another tool's topic named like a control topic
    finally:
        channel.close()
        junk.close()
    listed = shoal("jobs", "--bootstrap", kafka, "--json")
    assert listed.returncode == 0, listed.stderr
    by_group = {r["group"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert other not in by_group
    assert f"warning: {other}.control: its job record is not a Shoal job announcement" in (
        listed.stderr
    )
    mine = by_group[group]
    assert mine["job"] == "orders" and mine["steps"] == ["in", "out"]
    assert mine["checkpointed"] is False and mine["announced_ms"] == 1_700_000_000_000
    assert mine["workers"] == [] and mine["partitions"] == [] and mine["lag"] == 0
    table = shoal("jobs", "--bootstrap", kafka)
    row = next(line for line in table.stdout.splitlines() if line.startswith(group))
    assert row.split()[1:6] == ["orders", "2", "0", "0", "none"]
