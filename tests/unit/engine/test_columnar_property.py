"""The columnar path (``runtime.engine.columnar``) against the row path and the reference.

A job whose event time and key are field expressions and whose window step has a
built-in aggregate runs its ``key_by`` and window steps per batch in the native fold.
It must give exactly what the row path gives (``SHOAL_COLUMNAR=0``): the same outputs,
late records, dead letters, counters and state, on both backends, for clean input
and for input full of what the fold cannot take (bad event times, missing fields,
keys and numbers of other types, ints beyond 64 bits), which it hands to the row path
a batch at a time. On clean input it must run every batch and give the brute-force
reference's final view.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Job, Json, WatermarkStrategy, field, windows
from runtime.aggregates import Count, Max, Mean, Min, Sum
from runtime.api.windows import WindowSpec
from runtime.engine import columnar
from runtime.testing import TestDriver
from tests.reference import windows as ref
from tests.reference.windows import Event
from tests.unit.engine.test_windows_property import (
    BASE,
    FAR,
    Scenario,
    api_spec,
    engine_view,
    scenarios,
)

STATES = ("memory", "rocksdb")
EXAMPLES = {"memory": 120, "rocksdb": 20}
FIXED_KINDS = ("tumbling", "hopping")


def _minimum(events: list[Event]) -> int:
    return min(e.value for e in events)


def _sum(events: list[Event]) -> float:
    acc = 0.0
    for e in events:
        acc += float(e.value)
    return acc


def _mean(events: list[Event]) -> float:
    return _sum(events) / len(events)


# name -> (aggregate, brute-force result of a window's events)
AGGREGATES: dict[str, tuple[Any, Any]] = {
    "count": (Count(), ref.count),
    "sum": (Sum(of=field("v")), _sum),
    "min": (Min(of=field("v")), _minimum),
    "max": (Max(of=field("v")), ref.maximum),
    "mean": (Mean(of=field("v")), _mean),
}


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def columnar_job(spec: WindowSpec, bound: int) -> Job:
    """One source per aggregate (the same records go to each): event time, key and
    number are fields, so every chain can take the columnar path. Records are kept as
    sent (a schema the driver does not know), so they can be anything."""
    job = Job("columnar")
    for name, (agg, _) in AGGREGATES.items():
        (
            job.source(
                f"in_{name}",
                schema="Loose",
                timestamp=field("ts"),
                watermarks=WatermarkStrategy.bounded(ms(bound)),
            )
            .key_by(f"by_{name}", field("k"))
            .window(f"w_{name}", spec)
            .aggregate(agg)
            .sink(f"out_{name}", Json())
        )
    return job


@contextmanager
def driving(job: Job, state: str, *, on: bool) -> Iterator[TestDriver]:
    """A driver whose task takes the columnar path (``on``) or the row path."""
    before = os.environ.get("SHOAL_COLUMNAR")
    os.environ["SHOAL_COLUMNAR"] = "1" if on else "0"
    try:
        driver = TestDriver(job, state=state)
    finally:
        if before is None:
            del os.environ["SHOAL_COLUMNAR"]
        else:
            os.environ["SHOAL_COLUMNAR"] = before
    try:
        yield driver
    finally:
        driver.close()


def send(driver: TestDriver, batch: list[dict[str, Any]]) -> None:
    for name in AGGREGATES:
        driver.send_many(f"in_{name}", batch)


def play(driver: TestDriver, batches: list[list[dict[str, Any]]], pauses: list[int]) -> None:
    for batch, pause in zip(batches, pauses, strict=True):
        send(driver, batch)
        if pause:
            driver.advance_time(pause)
    driver.advance_watermark(FAR)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def observe(driver: TestDriver) -> dict[str, Any]:
    """Everything a job's run shows: outputs (as multisets: windows completed by one
    batch may go out in any order), late records in order, dead letters, counters and
    state."""
    seen: dict[str, Any] = {"counters": driver.counters()}
    for name in AGGREGATES:
        seen[f"out_{name}"] = Counter(canonical(r) for r in driver.records(f"out_{name}"))
        seen[f"late_{name}"] = [
            (canonical(k), canonical(v), t) for k, v, t, _ in driver._late[f"w_{name}"]
        ]
    seen["dead"] = [
        (d.step, d.error_class, d.error_message, d.topic, d.offset) for d in driver.dead_letters()
    ]
    seen["state"] = [sorted(map(repr, s.items())) for s in driver.task.stores]
    return seen


def columnar_batches(driver: TestDriver) -> int:
    return sum(plan.batches for plan in driver.task.columnar.values())


# -- clean input: every batch columnar, equal to the reference and to the row path ----


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", FIXED_KINDS)
def test_columnar_windows_match_reference_and_row_path(kind: str, state: str) -> None:
    assert columnar.enabled(), "the native fold is not built: run make"

    @settings(max_examples=EXAMPLES[state], deadline=None)
    @given(sc=scenarios(kind))
    def check(sc: Scenario) -> None:
        job = columnar_job(api_spec(sc.spec, sc.early_ms), sc.bound)
        batches = [[e.as_record() for e in b] for b in sc.batches]
        with driving(job, state, on=True) as fast:
            play(fast, batches, sc.pauses)
            assert len(fast.task.columnar) == len(AGGREGATES)
            assert columnar_batches(fast) == len(AGGREGATES) * len(batches)
            got = observe(fast)
            for name, (_, aggregate) in AGGREGATES.items():
                expected = ref.final_view(sc.batches, sc.spec, sc.bound, aggregate)
                assert engine_view(fast.output(f"out_{name}")) == expected, name
            expected_late = ref.late_events(sc.batches, sc.spec, sc.bound)
            assert [v["id"] for v in fast.late("w_count")] == [e.id for e in expected_late]
        with driving(job, state, on=False) as slow:
            play(slow, batches, sc.pauses)
            assert slow.task.columnar == {}
            assert observe(slow) == got

    check()


# -- anything at all: the same as the row path ----------------------------------------

KEYS = st.sampled_from(["a", "b", "c", 1, 2, -7, True, 1.0, 2**70])
NUMBERS = st.one_of(
    st.integers(-50, 50),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)),
    st.sampled_from([0.0, -0.0, 2**53 + 1, 2**63 - 1, -(2**63), 2**64]),
)
ODD_NUMBERS = st.sampled_from([None, "2.5", True, [1]])


@st.composite
def loose_records(draw: st.DrawFn, bad: float) -> list[dict[str, Any]]:
    """Records with mostly good event times, keys and numbers; with ``bad`` > 0 some
    of them carry what only the row path handles."""
    n = draw(st.integers(0, 30))
    cursor, out = 0, []
    floats = draw(st.booleans())  # a batch of floats or of ints (min and max mix neither)
    for i in range(n):
        cursor += draw(st.sampled_from([0, 250, 700, 1500, 4000]))
        ts: Any = BASE + max(0, cursor - draw(st.sampled_from([0, 0, 1, 900, 3000, 12000])))
        key: Any = draw(st.sampled_from(["a", "b", "c"]))
        value: Any = draw(st.integers(-50, 50))
        if floats:
            value = value / 4
        rec: dict[str, Any] = {"k": key, "ts": ts, "v": value, "id": i}
        if bad and draw(st.floats(0, 1)) < bad:
            what = draw(st.sampled_from(["ts", "k", "v", "missing", "far", "type"]))
            if what == "ts":
                rec["ts"] = draw(st.sampled_from([0, None, float(ts), str(ts), 2**80]))
            elif what == "k":
                rec["k"] = draw(KEYS)
            elif what == "v":
                rec["v"] = draw(st.one_of(NUMBERS, ODD_NUMBERS))
            elif what == "missing":
                del rec[draw(st.sampled_from(["k", "ts", "v"]))]
            elif what == "far":
                rec["ts"] = BASE + 3_600_000  # an hour ahead of the clock: dead-lettered
            else:
                return [*out, rec, [("not", "a dict")]]  # type: ignore[list-item]
        out.append(rec)
    return out


@st.composite
def loose_runs(draw: st.DrawFn) -> tuple[WindowSpec, int, list[list[dict[str, Any]]], list[int]]:
    if draw(st.booleans()):
        spec = windows.tumbling(
            ms(draw(st.sampled_from([1000, 5000]))),
            allowed_lateness=ms(draw(st.sampled_from([0, 2500]))),
            early_updates=draw(st.sampled_from([None, ms(1000)])),
        )
    else:
        size, slide = draw(st.sampled_from([(2000, 1000), (5000, 2500)]))
        spec = windows.hopping(
            ms(size), ms(slide), allowed_lateness=ms(draw(st.sampled_from([0, 1000])))
        )
    bad = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))
    batches = draw(st.lists(loose_records(bad), min_size=1, max_size=6))
    pauses = [draw(st.sampled_from([0, 600, 1500])) for _ in batches]
    return spec, draw(st.sampled_from([0, 1000, 3000])), batches, pauses


@pytest.mark.parametrize("state", STATES)
def test_columnar_path_gives_what_the_row_path_gives_on_any_input(state: str) -> None:
    @settings(max_examples=EXAMPLES[state] * 2, deadline=None)
    @given(run=loose_runs())
    def check(run: tuple[WindowSpec, int, list[list[dict[str, Any]]], list[int]]) -> None:
        spec, bound, batches, pauses = run
        job = columnar_job(spec, bound)
        outcomes = []
        for on in (True, False):
            with driving(job, state, on=on) as driver:
                try:
                    play(driver, batches, pauses)
                except Exception as exc:  # the same failure on both paths counts as equal
                    outcomes.append(("raised", type(exc).__name__, str(exc)))
                    continue
                outcomes.append(observe(driver))
        assert outcomes[0] == outcomes[1]

    check()


def test_the_fold_takes_floats_in_order_and_hands_back_what_it_cannot_do_exactly() -> None:
    # Sequential float sums differ from pairwise ones: 0.1 + 0.2 + 0.3 != 0.1 + (0.2 + 0.3).
    job = columnar_job(windows.tumbling(ms(10_000)), 0)
    batch = [{"k": "a", "ts": BASE + i, "v": v, "id": i} for i, v in enumerate([0.1, 0.2, 0.3])]
    with driving(job, "memory", on=True) as driver:
        send(driver, batch)
        assert columnar_batches(driver) == len(AGGREGATES)
        # An int beyond 64 bits: the row path takes the batch (and gets it right); a
        # count does not read it.
        send(driver, [{"k": "b", "ts": BASE + 5, "v": 2**70, "id": 9}])
        assert columnar_batches(driver) == len(AGGREGATES) + 1
        driver.advance_watermark(FAR)
        sums = {r["key"]: r["value"] for r in driver.output("out_sum")}
        assert sums["a"] == (0.0 + 0.1) + 0.2 + 0.3 != 0.1 + (0.2 + 0.3)
        assert sums["b"] == float(2**70)
        means = {r["key"]: r["value"] for r in driver.output("out_mean")}
        assert means["a"] == ((0.0 + 0.1) + 0.2 + 0.3) / 3
        assert {r["key"]: r["value"] for r in driver.output("out_max")}["b"] == 2**70


# -- which jobs take it ------------------------------------------------------------------


def test_lambdas_and_other_shapes_keep_the_row_path() -> None:
    spec = windows.tumbling(ms(1000))
    job = Job("shapes")
    strategy = WatermarkStrategy.bounded(ms(0))
    # a lambda key: row path
    job.source("lam", schema="Loose", timestamp=field("ts"), watermarks=strategy).key_by(
        "by_lam", lambda e: e["k"]
    ).window("w_lam", spec).aggregate(Count()).sink("o_lam", Json())
    # a lambda event time: row path
    job.source("lts", schema="Loose", timestamp=lambda e: e["ts"], watermarks=strategy).key_by(
        "by_lts", field("k")
    ).window("w_lts", spec).aggregate(Count()).sink("o_lts", Json())
    # a comparison is no field: row path
    job.source("cmp", schema="Loose", timestamp=field("ts"), watermarks=strategy).key_by(
        "by_cmp", field("k") == "a"
    ).window("w_cmp", spec).aggregate(Count()).sink("o_cmp", Json())
    # an aggregate of a lambda: row path
    job.source("agl", schema="Loose", timestamp=field("ts"), watermarks=strategy).key_by(
        "by_agl", field("k")
    ).window("w_agl", spec).aggregate(Sum(of=lambda e: e["v"])).sink("o_agl", Json())
    # a session window: row path
    job.source("ses", schema="Loose", timestamp=field("ts"), watermarks=strategy).key_by(
        "by_ses", field("k")
    ).window("w_ses", windows.session(ms(1000))).aggregate(Count()).sink("o_ses", Json())
    # a source with a second step: row path
    two = job.source("two", schema="Loose", timestamp=field("ts"), watermarks=strategy)
    two.key_by("by_two", field("k")).window("w_two", spec).aggregate(Count()).sink("o_two", Json())
    two.sink("o_raw", Json())
    # fields all the way, a nested key, and a map after the window: columnar
    job.source("ok", schema="Loose", timestamp=field("t.ms"), watermarks=strategy).key_by(
        "by_ok", field("u.id")
    ).window("w_ok", spec).aggregate(Max(of=field("v"))).map(
        lambda r: {**r, "label": "max"}, name="label"
    ).sink("o_ok", Json())
    with driving(job, "memory", on=True) as driver:
        assert set(driver.task.columnar) == {"ok"}
        driver.send_many(
            "ok",
            [
                {"t": {"ms": BASE + 10}, "u": {"id": 7}, "v": 3},
                {"t": {"ms": BASE + 20}, "u": {"id": 7}, "v": 5},
                {"t": {"ms": BASE + 30}, "u": {"id": 8}, "v": 1},
            ],
        )
        assert driver.task.columnar["ok"].batches == 1
        driver.advance_watermark(FAR)
        assert sorted((r["key"], r["value"], r["label"]) for r in driver.output("o_ok")) == [
            (7, 5, "max"),
            (8, 1, "max"),
        ]


def test_a_live_tap_on_the_key_by_sends_batches_down_the_row_path() -> None:
    job = columnar_job(windows.tumbling(ms(1000)), 0)
    with driving(job, "memory", on=True) as driver:
        tapped: list[Any] = []
        driver.task.taps["by_count"] = lambda step, batch: tapped.extend(batch)
        driver.send_many("in_count", [{"k": "a", "ts": BASE + 5, "v": 1, "id": 0}])
        assert driver.task.columnar["in_count"].batches == 0
        assert [(k, v["id"]) for k, v, _, _ in tapped] == [("a", 0)]
        del driver.task.taps["by_count"]
        driver.send_many("in_count", [{"k": "a", "ts": BASE + 6, "v": 1, "id": 1}])
        assert driver.task.columnar["in_count"].batches == 1
        driver.advance_watermark(FAR)
        assert [r["value"] for r in driver.output("out_count")] == [2]


@pytest.mark.parametrize("state", STATES)
def test_columnar_windows_survive_crash_and_restore(state: str) -> None:
    """Crash after any batch, restore from the last checkpoint and replay what followed
    it: the final views are the reference's."""

    @settings(max_examples=EXAMPLES[state] // 2, deadline=None)
    @given(sc=scenarios("hopping"), crashes=st.lists(st.booleans(), min_size=40, max_size=40))
    def check(sc: Scenario, crashes: list[bool]) -> None:
        job = columnar_job(api_spec(sc.spec), sc.bound)
        with driving(job, state, on=True) as driver:
            since: list[list[dict[str, Any]]] = []
            for i, (batch, cp) in enumerate(zip(sc.batches, sc.checkpoints, strict=True)):
                records = [e.as_record() for e in batch]
                send(driver, records)
                since.append(records)
                if crashes[i % len(crashes)]:
                    driver.crash()
                    driver.restore()
                    driver.advance_time(0)
                    for again in since:
                        send(driver, again)
                if cp:
                    driver.checkpoint()
                    since = []
            driver.advance_watermark(FAR)
            assert columnar_batches(driver) > 0
            for name, (_, aggregate) in AGGREGATES.items():
                expected = ref.final_view(sc.batches, sc.spec, sc.bound, aggregate)
                assert engine_view(driver.output(f"out_{name}")) == expected, name

    check()
