"""Fault scenarios beyond kill -9: rebalances, a broker restart, and poison pills."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.broker import LocalBroker
from jobs.user_counts import job as user_counts
from runtime.api.bindings import Bindings
from runtime.api.watermarks import DEFAULT_MIN_VALID_MS
from runtime.composition import broker_settings
from runtime.generator import Generator, GeneratorConfig, corrupt_bytes
from runtime.settings import load_settings
from tests.integration.helpers import decoded, read_all, run_job_until_idle, unique
from tests.integration.test_chaos_kill9 import close_all_windows, reference_counts
from tests.integration.workers import ROOT, Producer, WorkerPool, chaos_line, group_lag

PARTITIONS = 6


def _records(seed: int, n: int, **overrides: float) -> list:
    settings: dict[str, float] = {"late_rate": 0.0, "malformed_rate": 0.0,
                                  "bad_timestamp_rate": 0.0, "interaction_ratio": 0.0}
    settings.update(overrides)
    config = GeneratorConfig(seed=seed, users=800, **settings)  # type: ignore[arg-type]
    return [r for r in Generator(config).take(n) if r.stream == "playback"]


def _drain(pool: WorkerPool, bootstrap: str, group: str, topic: str, timeout_s: float) -> None:
    """Wait until the group committed everything; no worker may crash meanwhile."""
    deadline = time.monotonic() + timeout_s
    while group_lag(bootstrap, group, topic, PARTITIONS) > 0:
        assert time.monotonic() < deadline, "workers did not catch up\n" + pool.log_tail()
        assert not pool.crashed(), pool.log_tail()
        time.sleep(1)
    time.sleep(2)


def test_rebalance_add_and_remove_workers(kafka: str, tmp_path: Path) -> None:
    playback, out, dead = unique("rb-in"), unique("rb-out"), unique("rb-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    records = _records(31, 90_000)
    group = unique("rebalance")
    pool = WorkerPool("jobs.user_counts:job", kafka, group,
                      [f"playback={playback}", f"user-counts={out}", f"dead-letters={dead}"],
                      tmp_path, extra=["--checkpoint-ms", "500", "--partitions", "3"])
    pool.start(0)
    pool.start(1)
    producer = Producer(kafka, playback, records, 6_000.0)
    producer.start()
    try:
        time.sleep(5)
        pool.start(2)  # scale out mid-stream: partitions and their state move
        time.sleep(5)
        assert pool.stop(0) == 0, pool.log_tail()  # scale in: graceful leave
        producer.join(timeout=120)
        assert producer.error is None, producer.error
        close_all_windows(kafka, playback, max(r.value["event_time_ms"] for r in records)
                          + 3_600_000)
        _drain(pool, kafka, group, playback, 180)
        assert pool.stop_all() == [0, 0], pool.log_tail()
    finally:
        for slot in pool.alive():
            pool.kill(slot)
    outputs = decoded(read_all(kafka, out), "")
    line, lost, duplicated = chaos_line(0, len(records), outputs,
                                        reference_counts([r.value for r in records]))
    assert lost == 0 and duplicated == 0, line


def test_broker_restart_mid_run(tmp_path: Path) -> None:
    """The broker stops mid-run and comes back with its data: the job resumes by
    itself under ``shoal run --workers 2`` (a worker whose client never recovers is
    ended by its watchdog and restarted by the supervisor) and the output is exact."""
    broker = LocalBroker(broker_settings(load_settings(), tmp_path / "own-broker"))
    bootstrap = broker.start()
    supervisor: subprocess.Popen[bytes] | None = None
    log_path = tmp_path / "supervisor.log"
    try:
        playback, out = unique("br-in"), unique("br-out")
        KafkaAdmin(bootstrap).ensure_topics([TopicSpec(playback, PARTITIONS)])
        records = _records(41, 60_000)
        group = unique("restart")
        cmd = [sys.executable, "-m", "runtime.cli.main", "-v", "run", "jobs.user_counts:job",
               "--bootstrap", bootstrap, "--group", group, "--workers", "2",
               "--bind", f"playback={playback}", "--bind", f"user-counts={out}",
               "--checkpoint-ms", "500", "--partitions", "3", "--stall-timeout", "30",
               "--quiet"]
        env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log:
            supervisor = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env=env,
                                          start_new_session=True)
        first, second = records[: len(records) // 2], records[len(records) // 2 :]
        producer = Producer(bootstrap, playback, first, 10_000.0)
        producer.run()
        assert producer.error is None
        time.sleep(4)
        broker.stop()  # data kept
        time.sleep(5)
        assert broker.start() == bootstrap  # same address, same data
        producer = Producer(bootstrap, playback, second, 10_000.0)
        producer.run()
        assert producer.error is None
        close_all_windows(bootstrap, playback,
                          max(r.value["event_time_ms"] for r in records) + 3_600_000)
        deadline = time.monotonic() + 300
        while group_lag(bootstrap, group, playback, PARTITIONS) > 0:
            assert supervisor.poll() is None, _tail(log_path)
            assert time.monotonic() < deadline, "the job did not resume\n" + _tail(log_path)
            time.sleep(1)
        time.sleep(2)
        os.killpg(supervisor.pid, signal.SIGTERM)  # graceful: workers checkpoint and leave
        assert supervisor.wait(timeout=60) in (0, 1), _tail(log_path)
        outputs = decoded(read_all(bootstrap, out), "")
        line, lost, duplicated = chaos_line(0, len(records), outputs,
                                            reference_counts([r.value for r in records]))
        assert lost == 0 and duplicated == 0, line + "\n" + _tail(log_path)
    finally:
        if supervisor is not None and supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
        broker.stop()


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_poison_pills_are_dead_lettered(kafka: str, tmp_path: Path) -> None:
    playback, out, dead = unique("pp-in"), unique("pp-out"), unique("pp-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4)])
    records = _records(51, 50_000, malformed_rate=0.05, bad_timestamp_rate=0.01)
    encode = codec_factory()("PlaybackEvent").encode
    rng = random.Random(5)
    from connectors.kafka.sink import KafkaSink

    sink = KafkaSink(kafka)
    for rec in records:
        data = encode(rec.value)
        if rec.corrupt is not None:
            data = corrupt_bytes(data, rec.corrupt, rng)
        sink.write(playback, rec.key, data, None)
    sink.flush()
    bindings = Bindings.for_job(user_counts, [f"playback={playback}", f"user-counts={out}",
                                              f"dead-letters={dead}"])
    worker = run_job_until_idle(kafka, user_counts, bindings, state="rocksdb",
                                state_dir=tmp_path / "state")

    # what should be bad, judged from the input itself
    inputs = read_all(kafka, playback)
    codec = codec_factory()("PlaybackEvent")
    expected_bad: set[tuple[int, int]] = set()
    good_values = []
    for m in inputs:
        values, failures = codec.decode_batch([m.value()])
        ts = values[0]["event_time_ms"] if values else None
        too_late = time.time() * 1000 + 86_400_000
        if failures or ts is None or ts < DEFAULT_MIN_VALID_MS or ts > too_late:
            expected_bad.add((m.partition(), m.offset()))
        else:
            good_values.append(values[0])
    dead_letters = decoded(read_all(kafka, dead), "DeadLetter")
    got_bad = {(d["source_partition"], d["source_offset"]) for d in dead_letters}
    assert len(expected_bad) > 2000
    assert got_bad == expected_bad
    assert len(dead_letters) == len(expected_bad)  # each exactly once
    assert Counter(d["error_class"] for d in dead_letters).keys() <= {"DecodeError",
                                                                      "TimestampError"}
    counters = worker.counters()
    assert counters["playback"]["in"] == len(inputs)
    assert counters["playback"]["dead_lettered"] == len(expected_bad)
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    # the good records were counted exactly, bad ones did not disturb them
    reference = reference_counts(good_values)
    outputs = decoded(read_all(kafka, out), "")
    watermarks = worker.last_watermarks
    assert watermarks
    got = {(o["user_id"], o["window_start_ms"]): o["count"] for o in outputs}
    assert len(got) == len(outputs)
    assert all(reference[k] == v for k, v in got.items())
