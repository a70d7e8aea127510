"""The verdict's comparison, checked against a brute-force count of differences."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runtime import Job, Json, WatermarkStrategy
from runtime.api.functions import KeyedProcessFunction, ProcessContext
from runtime.chaos.verdict import canonical, compare, summary_line, wall_clock_steps

Output = tuple[str, str, str]


def brute_force(reference: list[Output], actual: list[Output]) -> tuple[int, int]:
    """(lost, duplicated) by matching outputs one by one, per (sink, key)."""
    by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for sink, key, value in actual:
        by_key[(sink, key)].append(value)
    lost = 0
    for sink, key, value in reference:
        left = by_key[(sink, key)]
        if value in left:
            left.remove(value)
        else:
            lost += 1
    return lost, sum(len(v) for v in by_key.values())


outputs = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["k1", "k2", "k3"]),
        st.sampled_from(["1", "2", "3"]),
    ),  # fmt: skip
    max_size=30,
)


@given(outputs, outputs)
def test_compare_counts_like_matching_one_by_one(ref: list[Output], got: list[Output]) -> None:
    result = compare(ref, got)
    assert (result.lost, result.duplicated) == brute_force(ref, got)
    assert result.outputs == len(got) and result.expected == len(ref)
    assert result.passed == (sorted(ref) == sorted(got))


def test_a_delivery_twice_is_one_duplicate_and_order_does_not_matter() -> None:
    ref = [("s", "k", canonical({"n": i})) for i in range(50)]
    got = ref + [ref[7]]
    random.Random(1).shuffle(got)
    result = compare(ref, got)
    assert (result.lost, result.duplicated, result.passed) == (0, 1, False)
    assert result.examples == (f"extra s key=k value={ref[7][2]}",)


def test_a_wrong_value_is_lost_and_extra() -> None:
    result = compare([("s", "k", "1"), ("s", "k", "2")], [("s", "k", "1"), ("s", "k", "3")])
    assert (result.lost, result.duplicated) == (1, 1)


def test_the_same_value_under_another_key_or_sink_does_not_match() -> None:
    result = compare([("s", "k", "1")], [("s", "j", "1"), ("t", "k", "1")])
    assert (result.lost, result.duplicated) == (1, 2)


def test_canonical_sorts_mappings_and_rounds_floats() -> None:
    assert canonical({"b": 1, "a": [0.1 + 0.2, b"\x01"]}) == canonical(
        {"a": (0.3, b"\x01"), "b": 1}
    )
    assert canonical({"x": 1.0}) != canonical({"x": 1.0001})
    assert canonical(True) != canonical(1)


def test_summary_line() -> None:
    result = compare([("s", "k", "1")], [("s", "k", "1"), ("s", "k", "1")])
    assert summary_line(11, 1, 0, 500, result) == (
        "chaos: kills=11 broker_pauses=1 sink_stalls=0 events=500 outputs=2 lost=0 "
        "duplicated=1 verdict=fail"
    )


class _Deadline(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    def process(self, value: dict[str, Any], ctx: ProcessContext[str]) -> list[dict[str, Any]]:
        ctx.timers.register_processing_time(ctx.processing_time_ms + 1_000)
        return []

    def on_timer(self, ts_ms: int, ctx: ProcessContext[str]) -> list[dict[str, Any]]:
        return [{"key": ctx.key}]


class _EventTimeOnly(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    def process(self, value: dict[str, Any], ctx: ProcessContext[str]) -> list[dict[str, Any]]:
        ctx.timers.register_event_time(ctx.timestamp_ms + 1_000)
        return []


def _job(fn: Any) -> Job:
    job = Job("timers")
    (
        job.source(
            "in",
            schema="",
            timestamp=lambda e: e["ts"],
            watermarks=WatermarkStrategy.bounded(timedelta(0)),
        )  # fmt: skip
        .key_by("k", lambda e: e["k"])
        .process("p", fn)
        .sink("out", Json())
    )
    return job


def test_processing_time_steps_cannot_be_judged() -> None:
    assert wall_clock_steps(_job(_Deadline())) == [
        "step 'p' uses register_processing_time (processing time)"
    ]
    assert wall_clock_steps(_job(_EventTimeOnly())) == []


def test_a_step_can_say_it_reads_the_wall_clock() -> None:
    fn = _EventTimeOnly()
    fn.wall_clock = True  # type: ignore[attr-defined]
    assert wall_clock_steps(_job(fn)) == ["step 'p' is flagged wall_clock"]


def test_the_reference_jobs_can_be_judged() -> None:
    from jobs.sessionization import job as sessionization
    from jobs.user_counts import job as user_counts

    assert wall_clock_steps(sessionization) == []
    assert wall_clock_steps(user_counts) == []
