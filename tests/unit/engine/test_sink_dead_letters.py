"""Sink records that do not fit their sink's schema are dead-lettered, not fatal.

Through the test driver and through a real ``Worker`` on the broker-less ``FakeKafka``
(see ``test_checkpoint_recovery``): the good records are written, each bad one becomes
one dead letter of the sink (one line naming the sink, the schema and the field; the
output itself; the source record's topic/partition/offset), and the sink's counters
keep ``in = processed + late + dead_lettered``. Which outputs are bad is worked out
here by an independent check of the schema's fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Avro, ErrorPolicy, Job, WatermarkStrategy, windows
from runtime.aggregates import Count
from runtime.api.bindings import Bindings
from runtime.api.errors import SchemaError
from runtime.engine.worker import Worker, WorkerOptions
from runtime.state.memory import MemoryBackend
from runtime.testing import TestDriver
from tests.unit.engine.test_checkpoint_recovery import TP, FakeKafka

T0 = 1_700_000_000_000

READING = {
    "type": "record",
    "name": "Reading",
    "namespace": "acme.outputs",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "total", "type": "long"},
        {"name": "label", "type": "string"},
    ],
}
FIELD_TYPES = {"user": str, "total": int, "label": str}


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "Reading.avsc").write_text(json.dumps(READING))
    return folder


def to_reading(e: dict[str, Any]) -> dict[str, Any]:
    """The job's output: ``label`` left out, or ``total`` of the wrong type, on demand."""
    out = {"user": e["user"], "total": e["amount"], "label": f"n{e['n']}"}
    if e.get("drop"):
        del out[e["drop"]]
    return out


def reading_job(folder: Path, on_error: ErrorPolicy = ErrorPolicy.DEAD_LETTER) -> Job:
    job = Job("readings", schemas=folder, on_error=on_error)
    (
        job.source(
            "events",
            schema="",
            timestamp=lambda e: e["t"],
            watermarks=WatermarkStrategy.bounded(timedelta(0), idle_timeout=None),
        )
        .map(to_reading, name="shape")
        .sink("out", Avro("Reading"), key=lambda r: r.get("user"))
    )
    return job


def inputs(n: int) -> list[dict[str, Any]]:
    """Every 5th output lacks ``label``, every 7th has a string ``total``."""
    out = []
    for i in range(n):
        e: dict[str, Any] = {"user": f"u{i % 3}", "amount": i * 10, "n": i, "t": T0 + i}
        if i % 5 == 3:
            e["drop"] = "label"
        if i % 7 == 4:
            e["amount"] = f"{i}0"
        out.append(e)
    return out


def problem(value: dict[str, Any]) -> str | None:
    """The reference: the first field of ``value`` that breaks ``Reading``, if any."""
    for name, kind in FIELD_TYPES.items():
        if name not in value or type(value[name]) is not kind:
            return name
    return None


def reconciles(c: dict[str, int]) -> bool:
    return c["in"] == c["processed"] + c["late"] + c["dead_lettered"]


@pytest.fixture
def driver(schemas: Path) -> Iterator[TestDriver]:
    d = TestDriver(reading_job(schemas))
    yield d
    d.close()


def test_driver_dead_letters_the_bad_output_and_keeps_the_good(driver: TestDriver) -> None:
    values = inputs(24)
    for v in values:
        driver.send("events", v)
    outputs = [to_reading(v) for v in values]
    bad = {i: problem(o) for i, o in enumerate(outputs) if problem(o) is not None}
    assert len(bad) >= 6  # both kinds of fault occur
    assert driver.output("out") == [o for i, o in enumerate(outputs) if i not in bad]
    letters = driver.dead_letters()
    assert [d.offset for d in letters] == sorted(bad)
    for d in letters:
        field = bad[d.offset or 0]
        assert (d.step, d.error_class) == ("out", "SchemaError")
        assert (d.topic, d.partition) == ("events", 0)
        assert d.error_message.startswith(f"sink 'out', schema 'Reading': {field}: ")
        assert "\n" not in d.error_message
        assert d.value == outputs[d.offset or 0]
        assert d.key == outputs[d.offset or 0]["user"].encode()
    c = driver.counters()["out"]
    assert (c["in"], c["out"], c["dead_lettered"]) == (24, 24 - len(bad), len(bad))
    assert reconciles(c)


def test_driver_output_of_good_records_is_what_the_job_emitted(driver: TestDriver) -> None:
    good = {"user": "u1", "amount": 2**40, "n": 1, "t": T0}
    driver.send("events", good)
    (out,) = driver.output("out")
    assert out == to_reading(good)
    assert driver.dead_letters() == []


@pytest.mark.parametrize("policy", [ErrorPolicy.SKIP, ErrorPolicy.FAIL])
def test_the_error_policy_decides(schemas: Path, policy: ErrorPolicy) -> None:
    driver = TestDriver(reading_job(schemas, on_error=policy))
    bad = {"user": "u1", "amount": 1, "n": 1, "t": T0, "drop": "label"}
    try:
        driver.send("events", {**bad, "drop": None})
        if policy is ErrorPolicy.FAIL:
            with pytest.raises(SchemaError, match=r"sink 'out', schema 'Reading': label: .*"):
                driver.send("events", bad)
            return
        driver.send("events", bad)
        assert driver.dead_letters() == []
        assert len(driver.output("out")) == 1
        c = driver.counters()["out"]
        assert (c["in"], c["out"], c["dead_lettered"]) == (2, 1, 1) and reconciles(c)
    finally:
        driver.close()


def test_a_window_result_that_does_not_fit_names_no_source_record(schemas: Path) -> None:
    job = Job("window-readings", schemas=schemas)
    (
        job.source("events", schema="", timestamp=lambda e: e["t"])
        .key_by("by_user", lambda e: e["user"])
        .window("per_second", windows.tumbling(timedelta(seconds=1)))
        .aggregate(Count(), output=lambda k, w, n: {"user": k, "total": n})  # no label
        .sink("out", Avro("Reading"))
    )
    driver = TestDriver(job)
    try:
        values = inputs(5)
        for v in values:
            driver.send("events", v)
        driver.advance_watermark(T0 + 5_000)
        letters = driver.dead_letters()
        per_user = {u: sum(v["user"] == u for v in values) for u in {v["user"] for v in values}}
        assert sorted((d.value["user"], d.value["total"]) for d in letters) == sorted(
            per_user.items()
        )
        for d in letters:
            assert (d.topic, d.partition, d.offset, d.step) == (None, None, None, "out")
            assert d.error_message.startswith("sink 'out', schema 'Reading': label: missing")
        assert driver.output("out") == []
        c = driver.counters()["out"]
        n = len(per_user)
        assert (c["in"], c["out"], c["dead_lettered"]) == (n, 0, n) and reconciles(c)
    finally:
        driver.close()


# -- a real worker on FakeKafka ---------------------------------------------------------


def worker_on(kafka: FakeKafka, job: Job) -> Worker:
    worker = Worker(
        job,
        Bindings.for_job(job),
        kafka,
        codec_factory(job.schema_dirs),
        MemoryBackend(),
        offsets=kafka,
        changelog=kafka.read_changelog,
        options=WorkerOptions(batch_size=10, checkpoint_interval_ms=10**9),
        clock=lambda: T0,
    )
    kafka.position = max(0, worker.on_assign([TP])[TP])
    return worker


def committed(kafka: FakeKafka, topic: str, schema: str, job: Job) -> list[dict[str, Any]]:
    values, failures = codec_factory(job.schema_dirs)(schema).decode_batch(
        [v for _, v in kafka.topics.get((topic, 0), [])]
    )
    assert not failures
    return values


def test_worker_writes_good_records_and_dead_letters_exactly_once(schemas: Path) -> None:
    values = inputs(40)
    kafka = FakeKafka([json.dumps(v).encode() for v in values])
    job = reading_job(schemas)
    bindings = Bindings.for_job(job)
    worker = worker_on(kafka, job)
    worker.step(kafka)
    worker.step(kafka)
    worker.checkpoint()  # 20 records committed
    worker.step(kafka)
    kafka.abort_next = True
    worker.checkpoint()  # 10 more, aborted with their dead letters: rewind to 20
    assert worker.rewinds == 1
    while worker.step(kafka):
        pass
    worker.checkpoint()

    outputs = [to_reading(v) for v in values]
    bad = {i: problem(o) for i, o in enumerate(outputs) if problem(o) is not None}
    good = [o for i, o in enumerate(outputs) if i not in bad]
    assert committed(kafka, bindings.sinks["out"], "Reading", job) == good
    assert [k for k, _ in kafka.topics[(bindings.sinks["out"], 0)]] == [
        o["user"].encode() for o in good
    ]
    letters = committed(kafka, bindings.dead_letters, "DeadLetter", job)
    assert [d["source_offset"] for d in letters] == sorted(bad)  # once each
    for d in letters:
        field = bad[d["source_offset"]]
        assert (d["job"], d["step"], d["error_class"]) == ("readings", "out", "SchemaError")
        assert (d["source_topic"], d["source_partition"]) == ("events", 0)
        assert d["error_message"].startswith(f"sink 'out', schema 'Reading': {field}: ")
        assert json.loads(d["original_value"]) == outputs[d["source_offset"]]
    # Counters count what was processed, the replayed records 20..29 too.
    replayed_bad = sum(20 <= i < 30 for i in bad)
    c = worker.counters()["out"]
    assert (c["in"], c["dead_lettered"]) == (50, len(bad) + replayed_bad) and reconciles(c)
    worker.close()
