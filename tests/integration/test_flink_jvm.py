"""A job of field expressions and a built-in count window on Flink's JVM steps.

The same input, with corrupt records and absurd event times the generator makes and
records crafted to hit each refusal of the JVM decoder, runs twice on Flink: once on
the JVM steps (``runtime.flink.jvm``) and once on the Python steps. Both must give
exactly the brute-force counts of the records that decode and have a valid event
time, and the same dead letters (step, error class, bytes).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime import Job, Json, WatermarkStrategy, Window, field, windows
from runtime.aggregates import Count, Max, Mean
from runtime.api.bindings import Bindings
from runtime.api.windows import WindowSpec
from runtime.composition import FLINK_CONNECTORS
from runtime.flink import run_on_flink
from runtime.generator import Generator, GeneratorConfig, corrupt_bytes
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_flink_equality import FLINK_MARKS, PARTITIONS, options, recent_start_ms
from tests.reference.windows import RefHopping, RefTumbling, fixed_windows

pytestmark = FLINK_MARKS

SIZE_MS = 10_000


def _row(user: str, window: Window, count: int) -> dict[str, Any]:
    return {
        "user_id": user,
        "window_start_ms": window.start_ms,
        "window_end_ms": window.end_ms,
        "count": count,
    }


def field_counts(
    spec: WindowSpec | None = None,
    output: Any = _row,
    on_error: str = "dead_letter",
    aggregate: Any = None,
) -> Job:
    """Per-user counts (or ``aggregate``) in 10-second windows, made of field expressions
    only."""
    job = Job("jvm_counts", on_error=on_error)  # type: ignore[arg-type]
    (
        job.source(
            "playback",
            schema="PlaybackEvent",
            timestamp=field("event_time_ms"),
            watermarks=WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=None),
        )
        .key_by("by_user", field("user_id"), repartition=False)
        .window("counts", spec or windows.tumbling(timedelta(milliseconds=SIZE_MS)))
        .aggregate(aggregate or Count(), output=output)
        .sink("out", Json())
    )
    return job


def crafted(good: dict[str, Any]) -> list[bytes | None]:
    """Records each refused for another reason (the first byte, the fingerprint, bytes
    after the body, a key that is not UTF-8, an event time out of bounds, no value)."""
    codec = codec_factory()("PlaybackEvent")
    data = codec.encode(good)
    user = good["user_id"].encode()
    not_utf8 = data.replace(user, b"\xff" * len(user), 1)
    assert not_utf8 != data
    return [
        b"\x00" + data[1:],
        data[:2] + bytes(8) + data[10:],
        data + b"\x00",
        not_utf8,
        codec.encode({**good, "event_time_ms": 5}),
        codec.encode({**good, "event_time_ms": 2**61}),
        None,
    ]


def run(
    kafka: str, tmp_path: Path, topic: str, jvm_steps: bool, job: Job | None = None
) -> tuple[Any, Any, Any]:
    out, dead = unique("jvm-counts"), unique("jvm-dead")
    job = job or field_counts()
    bindings = Bindings.for_job(job, [f"playback={topic}", f"out={out}", f"dead-letters={dead}"])
    settings = options(kafka, tmp_path / str(jvm_steps), jvm_steps=jvm_steps)
    done = run_on_flink(job, bindings, settings, connectors=FLINK_CONNECTORS)
    assert done.status == "FINISHED"
    assert done.jvm_windows == (("counts",) if jvm_steps else ())
    rows = decoded(read_all(kafka, out), "")
    counts = {(r["user_id"], r["window_start_ms"], r["window_end_ms"]): r["count"] for r in rows}
    assert len(counts) == len(rows), "a window was emitted twice"
    letters = decoded(read_all(kafka, dead, first_wait_s=5), "DeadLetter")
    return (
        counts,
        Counter((d["step"], d["error_class"], d["original_value"]) for d in letters),
        letters,
    )


def produce(
    kafka: str, n: int, *, bad_rate: float = 0.01, crafted_too: bool = True
) -> tuple[str, list[bytes | None]]:
    """Generated playback events, some corrupt or with absurd event times, then the
    crafted records; every value as produced."""
    topic = unique("jvm-playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(topic, PARTITIONS)])
    config = GeneratorConfig(
        # Hours back, so that no generated time is beyond the bound ahead of the clock.
        start_ms=recent_start_ms() - 12 * 3_600_000,
        seed=11,
        users=200,
        late_rate=0.0,
        malformed_rate=bad_rate,
        bad_timestamp_rate=bad_rate,
        interaction_ratio=0.0,
    )
    codec = codec_factory()("PlaybackEvent")
    rng = random.Random(11)
    producer = Producer({"bootstrap.servers": kafka})
    sent: list[bytes | None] = []
    records = Generator(config).take(n)
    for rec in records:
        data = codec.encode(rec.value)
        if rec.corrupt is not None:
            data = corrupt_bytes(data, rec.corrupt, rng)
        producer.produce(topic, value=data, key=rec.key)
        sent.append(data)
        if len(sent) % 20_000 == 0:
            producer.flush(30)
    for i, data in enumerate(crafted(records[0].value) if crafted_too else []):
        producer.produce(topic, value=data, key=b"crafted", partition=i % PARTITIONS)
        sent.append(data)
    producer.flush(10)
    return topic, sent


TUMBLING = RefTumbling(SIZE_MS)


def reference(
    sent: list[bytes | None], spec: RefTumbling | RefHopping = TUMBLING
) -> dict[tuple[Any, int, int], int]:
    """Brute force: the records the Python decoder reads with an event time in bounds,
    counted in every window of ``spec`` they fall in."""
    codec = codec_factory()("PlaybackEvent")
    bounds = WatermarkStrategy.bounded(timedelta(seconds=5))
    hi = time.time_ns() // 1_000_000 + (bounds.max_future_ms or 0)
    valid = []
    for data in sent:
        values, failed = codec.decode_batch([data])
        if not failed and bounds.min_valid_ms <= values[0]["event_time_ms"] <= hi:
            valid.append(values[0])
    counts: Counter[tuple[Any, int, int]] = Counter()
    for v in valid:
        for start, end in fixed_windows(spec, v["event_time_ms"]):
            counts[(v["user_id"], start, end)] += 1
    return dict(counts)


def test_jvm_steps_equal_python_steps_and_reference(kafka: str, tmp_path: Path) -> None:
    topic, sent = produce(kafka, 6_000)
    on_jvm, jvm_dead, jvm_letters = run(kafka, tmp_path, topic, True)
    on_python, python_dead, _ = run(kafka, tmp_path, topic, False)
    assert on_jvm == reference(sent)
    assert on_jvm == on_python
    assert jvm_dead == python_dead
    # the seven crafted records, and about 2% of the rest
    assert sum(jvm_dead.values()) >= 6_000 * 0.01 + 7
    assert {(d["step"], d["error_class"]) for d in jvm_letters} == {
        ("playback", "DecodeError"),
        ("playback", "TimestampError"),
    }


class FailOnce:
    """The window's output function, raising once (``fail`` policy: the task fails)
    after ``after`` results and a completed checkpoint; the flag file makes only the
    first attempt fail."""

    def __init__(self, flag: Path, checkpoints: Path, after: int) -> None:
        self.flag, self.checkpoints, self.after = flag, checkpoints, after
        self.seen = 0

    def __call__(self, user: str, window: Window, count: int) -> dict[str, Any]:
        self.seen += 1
        if (
            self.seen >= self.after
            and not self.flag.exists()
            and any(self.checkpoints.glob("**/chk-*/_metadata"))
        ):
            self.flag.write_text("failed once")
            raise RuntimeError("injected task failure")
        return _row(user, window, count)


def test_hopping_counts_on_the_jvm_steps_survive_a_task_failure_exactly_once(
    kafka: str, tmp_path: Path
) -> None:
    """Flink restarts from the last checkpoint (the JVM window operator's state in
    RocksDB, the source's offsets) and aborts the failed attempt's transactions."""
    # Enough input that the job is still running when its first checkpoint completes.
    topic, sent = produce(kafka, 120_000, bad_rate=0.0, crafted_too=False)
    flag = tmp_path / "failed-once"
    spec = windows.hopping(timedelta(seconds=10), timedelta(seconds=5))
    output = FailOnce(flag, tmp_path / "True", after=2_000)
    job = field_counts(spec, output, on_error="fail")
    counts, letters, _ = run(kafka, tmp_path, topic, True, job)
    assert flag.exists(), "the injected failure never happened"
    assert counts == reference(sent, RefHopping(10_000, 5_000))
    assert not letters


def members(sent: list[bytes | None], name: str) -> dict[tuple[Any, int, int], list[Any]]:
    """Brute force: the field ``name`` of each record, in order, per user and window."""
    codec = codec_factory()("PlaybackEvent")
    found: dict[tuple[Any, int, int], list[Any]] = {}
    for data in sent:
        [value], _ = codec.decode_batch([data])
        for start, end in fixed_windows(TUMBLING, value["event_time_ms"]):
            found.setdefault((value["user_id"], start, end), []).append(value[name])
    return found


def mean(values: list[int]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


@pytest.mark.parametrize(
    ("aggregate", "name", "brute"),
    [
        (Mean(field("buffer_ms")), "buffer_ms", mean),
        (Max(field("position_ms")), "position_ms", max),
    ],
    ids=["mean-of-an-int", "max-of-a-long"],
)
def test_built_in_aggregates_on_the_jvm_steps_equal_brute_force(
    kafka: str, tmp_path: Path, aggregate: Any, name: str, brute: Any
) -> None:
    topic, sent = produce(kafka, 5_000, bad_rate=0.0, crafted_too=False)
    job = field_counts(aggregate=aggregate)
    got, letters, _ = run(kafka, tmp_path, topic, True, job)
    want = {k: brute(v) for k, v in members(sent, name).items()}
    assert got == want
    assert all(type(v) is type(next(iter(want.values()))) for v in got.values())
    assert not letters
