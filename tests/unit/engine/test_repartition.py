"""Internal (repartition) records: a safe wire format, and junk is dead-lettered.

Anyone who can produce to ``<group>.<step>.repartition`` can write anything there. A
task reading it decodes records and watermark markers without running code, and
dead-letters whatever does not decode with its topic, partition and offset, keeping
``in = processed + late + dead-lettered`` for the step.
"""

from __future__ import annotations

import pickle  # only to write hostile payloads that must be refused
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.codecs import codec_factory
from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count
from runtime.api.errors import DecodeError
from runtime.engine.repartition import (
    MARK,
    RECORD,
    decode,
    encode_marker,
    encode_record,
    internal_source,
)
from runtime.engine.task import Task
from runtime.state.codec import pack
from runtime.state.memory import MemoryBackend

T0 = 1_700_000_000_000
TOPIC = "g.by_cdn.repartition"


class Hostile:
    """Creates a file when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "pwned"))


@dataclass
class Msg:
    """A stand-in for a Kafka message read from the internal topic."""

    off: int
    data: bytes | None
    part: int = 0

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes | None:
        return self.data

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


def counting_job() -> Job:
    job = Job("repartition_counts")
    events = job.source(
        "events",
        schema="",
        timestamp=lambda e: e["t"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=0)),
    )

    def out(cdn: str, w: Window, n: int) -> dict[str, Any]:
        return {"cdn": cdn, "start": w.start_ms, "n": n}

    (
        events.key_by("by_cdn", lambda e: e["cdn"])
        .window("per_10s", windows.tumbling(timedelta(seconds=10)))
        .aggregate(Count(), output=out)
        .sink("counts", Json())
    )
    return job


def make_task() -> Task:
    task = Task(
        counting_job(), 0, codec_factory(), MemoryBackend(), lambda: T0, repartition_partitions=2
    )
    task.add_partition(internal_source("by_cdn"), 0)
    return task


@given(
    key=st.one_of(st.text(), st.integers(-(2**70), 2**70), st.none(), st.tuples(st.text())),
    value=st.dictionaries(st.text(), st.one_of(st.integers(), st.text(), st.none())),
    ts=st.integers(-(2**63), 2**63 - 1),
)
def test_records_round_trip(key: Any, value: dict[str, Any], ts: int) -> None:
    assert decode(encode_record(key, value, ts)) == (RECORD, key, value, ts)


def test_markers_round_trip() -> None:
    assert decode(encode_marker(1, T0), upstream_tasks=2) == (MARK, 1, T0)


@pytest.mark.parametrize(
    "data,reason",
    [
        (None, "without a value"),
        (b"", "without a value"),
        (b"\x80\x05junk", "unknown tag byte 0x80"),
        (b"junk bytes 14!", "unknown tag byte 0x6a"),
        (b"R\xc1", "does not decode"),
        (b"R" + pack([1, 2]), "is not \\[key, value, event time\\]"),
        (b"R" + pack(["k", {}, "soon"]), "is not \\[key, value, event time\\]"),
        (b"R" + pack(["k", {}, True]), "is not \\[key, value, event time\\]"),
        (b"R" + pack(["k", {}, 2**64]), "is not \\[key, value, event time\\]"),
        (b"R" + pack([1.5, {}, T0]), "cannot be a state key"),
        (b"R" + pack([[1], {}, T0]), "cannot be a state key"),
        (b"W" + pack([0, "late"]), "is not \\[task id, watermark\\]"),
        (b"W" + pack(["0", T0]), "names no upstream task"),
        (b"W" + pack([5, T0]), "names no upstream task"),
        (b"W" + pack([-1, T0]), "names no upstream task"),
        (b"W" + pack([True, T0]), "names no upstream task"),
        (b"W" + pack({"task": 0}), "is not \\[task id, watermark\\]"),
    ],
)
def test_malformed_internal_records_are_decode_errors(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data, upstream_tasks=2)


def test_a_pickle_on_the_internal_topic_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for body in (pickle.dumps(Hostile(marker)), b"R" + pickle.dumps(Hostile(marker))):
        with pytest.raises(DecodeError):
            decode(body)
    assert not marker.exists()


def test_task_dead_letters_junk_and_goes_on(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    task = make_task()
    source = internal_source("by_cdn")
    good = [encode_record("cdn-a", {"cdn": "cdn-a", "t": T0 + i}, T0 + i) for i in range(3)]
    hostile = [
        pickle.dumps(Hostile(marker), protocol=5),
        b"junk bytes 14!",
        None,
        b"W" + pack(["zero", T0]),
        b"R" + pack([1.5, {}, T0]),
    ]
    raws = [Msg(0, good[0]), Msg(1, good[1])]
    raws += [Msg(2 + i, data) for i, data in enumerate(hostile)]
    raws += [Msg(10, good[2]), Msg(11, encode_marker(0, T0 + 20_000))]
    raws += [Msg(12, encode_marker(1, T0 + 20_000))]
    task.ingest_internal(source, 0, raws)
    task.advance()

    assert not marker.exists()
    counts = task.counters()["by_cdn"]
    assert counts["in"] == 3 + len(hostile)
    assert counts["dead_lettered"] == len(hostile)
    assert counts["in"] == counts["processed"] + counts["late"] + counts["dead_lettered"]
    letters = task.drain_dead_letters()
    assert [(d.topic, d.partition, d.offset) for d in letters] == [
        (TOPIC, 0, 2 + i) for i in range(len(hostile))
    ]
    assert {d.step for d in letters} == {"by_cdn"} and {d.error_class for d in letters} == {
        "DecodeError"
    }
    assert [d.value for d in letters] == hostile
    assert all(f"{TOPIC}[0]@{d.offset}" in d.error_message for d in letters)
    # The good records were counted, and both markers moved event time on.
    out = task.drain_sinks()["counts"]
    assert [v for _, v, _, _ in out] == [{"cdn": "cdn-a", "start": T0, "n": 3}]
    assert (
        Counter(d.error_message.split(" (")[0] for d in letters)["internal record without a value"]
        == 1
    )


def test_a_value_the_codec_cannot_encode_is_dead_lettered_upstream() -> None:
    task = make_task()
    task.add_partition("events", 0)
    good = {"cdn": "cdn-a", "t": T0, "tags": ("a", 1)}
    bad = {"cdn": "cdn-b", "t": T0 + 1, "when": object()}
    task.ingest_values("events", 0, [good, bad, good])
    drained = task.drain_internal()["by_cdn"]
    assert [(k, decode(data), t) for k, data, t in drained] == [
        ("cdn-a", (RECORD, "cdn-a", good, T0), T0),
        ("cdn-a", (RECORD, "cdn-a", good, T0), T0),
    ]
    counts = task.counters()["by_cdn.out"]
    assert (counts["in"], counts["out"], counts["dead_lettered"]) == (3, 2, 1)
    assert counts["in"] == counts["processed"] + counts["late"] + counts["dead_lettered"]
    (letter,) = task.drain_dead_letters()
    assert letter.step == "by_cdn.out" and letter.error_class == "RecordError"
    assert "builtins.object" in letter.error_message and letter.value is bad
