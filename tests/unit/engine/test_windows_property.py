"""Window steps against the brute-force reference (``tests.reference.windows``), on both backends.

Every window kind (tumbling, hopping, session, cumulative): random out-of-order
streams of a few keys arrive in random batches; at the end the watermark is forced
far ahead so that every window fires and is purged. The engine's *final view* (the
last emission per ``(key, window start)``, per ``(key, start, end)`` for cumulative
windows, which share starts; a session result of ``None`` retracts that start) must
equal the reference's exactly, the late side output must hold exactly the
reference's late records, and the step counters must reconcile. The same holds when
the driver crashes anywhere and restores from its last checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Job, Json, WatermarkStrategy, Window, windows
from runtime.aggregates import Count, Max, Mean, Min, Quantiles, Sum
from runtime.api.graph import default_window_output
from runtime.api.windows import WindowSpec
from runtime.testing import TestDriver
from tests.reference import windows as ref
from tests.reference.windows import Event

STATES = ("memory", "rocksdb")
# Opening RocksDB stores costs far more than a scenario: fewer examples there.
EXAMPLES = {"memory": 150, "rocksdb": 25}
KINDS = ("tumbling", "hopping", "session", "cumulative")
KEYS = ("a", "b", "c")
BASE = 1_700_000_000_000
FAR = BASE + 10 * 24 * 3600 * 1000  # beyond every window end, lateness and gap
# (window step, sink, reference aggregate) of the three aggregates run side by side.
STEPS = (
    ("w_count", "counts", ref.count),
    ("w_sum", "sums", ref.total),
    ("w_ids", "ids", ref.ids),
    ("w_max", "maxes", ref.maximum),
    ("w_collect", "collected", ref.ids),
)


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


class CollectIds:
    """Collects record ids; the result is a sorted tuple (never the accumulator itself)."""

    def create(self) -> list[int]:
        return []

    def add(self, acc: list[int], value: dict[str, Any]) -> list[int]:
        acc.append(value["id"])
        return acc

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return a + b

    def result(self, acc: list[int]) -> tuple[int, ...]:
        return tuple(sorted(acc))


def api_spec(spec: ref.RefSpec, early_ms: int | None = None) -> WindowSpec:
    """The job API's window spec for a reference spec."""
    early = None if early_ms is None else ms(early_ms)
    late = ms(spec.lateness)
    if isinstance(spec, ref.RefTumbling):
        return windows.tumbling(ms(spec.size), allowed_lateness=late, early_updates=early)
    if isinstance(spec, ref.RefHopping):
        return windows.hopping(
            ms(spec.size), ms(spec.slide), allowed_lateness=late, early_updates=early
        )
    if isinstance(spec, ref.RefCumulative):
        return windows.cumulative(
            ms(spec.size), ms(spec.step), allowed_lateness=late, early_updates=early
        )
    return windows.session(ms(spec.gap), allowed_lateness=late, early_updates=early)


def window_job(spec: WindowSpec, bound: int) -> Job:
    """Count, Sum, CollectIds, ``reduce(max)`` and ``collect()`` over the same keyed
    stream, each to its own sink."""
    job = Job("windows-property")
    keyed = job.source(
        "events",
        schema="Event",
        timestamp=lambda e: e["ts"],
        watermarks=WatermarkStrategy.bounded(ms(bound)),
    ).key_by("by_key", lambda e: e["k"])
    keyed.window("w_count", spec).aggregate(Count()).sink("counts", Json())
    keyed.window("w_sum", spec).aggregate(Sum(of=lambda e: e["v"])).sink("sums", Json())
    keyed.window("w_ids", spec).aggregate(CollectIds()).sink("ids", Json())
    keyed.window("w_max", spec).reduce(max, of=lambda e: e["v"]).sink("maxes", Json())
    keyed.window("w_collect", spec).collect(of=lambda e: e["id"], output=sorted_ids).sink(
        "collected", Json()
    )
    return job


def sorted_ids(key: Any, window: Window, ids: list[int] | None) -> dict[str, Any]:
    """A ``collect()`` result with its ids sorted (they come in arrival order)."""
    return default_window_output(key, window, None if ids is None else tuple(sorted(ids)))


@contextmanager
def driving(job: Job, state: str) -> Iterator[TestDriver]:
    driver = TestDriver(job, state=state)
    try:
        yield driver
    finally:
        driver.close()


def window_key(rec: dict[str, Any], spec: ref.RefSpec | None = None) -> ref.WindowKey:
    """How the final view names a result's window: ``(key, start)``; cumulative windows,
    which share starts, ``(key, start, end)``."""
    if isinstance(spec, ref.RefCumulative):
        return (rec["key"], rec["window_start_ms"], rec["window_end_ms"])
    return (rec["key"], rec["window_start_ms"])


def engine_view(
    outputs: list[dict[str, Any]], spec: ref.RefSpec | None = None
) -> dict[ref.WindowKey, tuple[int, Any]]:
    """The final view of a window sink: last emission per window wins (windows named by
    ``(key, start)``, cumulative ones of ``spec`` by ``(key, start, end)``); None retracts."""
    view: dict[ref.WindowKey, tuple[int, Any]] = {}
    for rec in outputs:
        wk = window_key(rec, spec)
        if rec["value"] is None:
            assert wk in view, f"retraction of {wk}, which is not in the view"
            del view[wk]
        else:
            view[wk] = (rec["window_end_ms"], rec["value"])
    return view


def send_batch(driver: TestDriver, batch: list[Event]) -> None:
    driver.send_many("events", [e.as_record() for e in batch])


def checkpoint(driver: TestDriver) -> None:
    """Checkpoint every store, as the worker does at the end of a micro-batch."""
    for store in driver.task.stores:
        store.checkpoint()


# -- generated scenarios -------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    spec: ref.RefSpec
    bound: int
    early_ms: int | None
    batches: list[list[Event]]
    pauses: list[int]  # processing time to advance after each batch
    checkpoints: list[bool]  # checkpoint the stores after each batch


@st.composite
def event_streams(draw: st.DrawFn) -> list[Event]:
    """Mostly advancing event times with random lags: out of order, some very late."""
    n = draw(st.integers(1, 40))
    cursor = 0
    events = []
    for i in range(n):
        cursor += draw(st.sampled_from([0, 250, 500, 1000, 3000]))
        # Multiples of 250 ms hit window bounds exactly; lags of 1 and 2 ms probe the
        # last instants before them.
        lag = draw(st.sampled_from([0, 0, 0, 1, 2, 250, 500, 1000, 2500, 6000, 15000]))
        key = draw(st.sampled_from(KEYS))
        value = draw(st.integers(-5, 20))
        events.append(Event(key, BASE + max(0, cursor - lag), value, i))
    return events


@st.composite
def batchings(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    batches, i = [], 0
    while i < len(events):
        size = draw(st.integers(1, 6))
        batches.append(events[i : i + size])
        i += size
    return batches


@st.composite
def scenarios(draw: st.DrawFn, kind: str) -> Scenario:
    lateness = draw(st.sampled_from([0, 0, 1000, 2500, 5000]))
    spec: ref.RefSpec
    if kind == "tumbling":
        spec = ref.RefTumbling(draw(st.sampled_from([1000, 2000, 5000])), lateness)
    elif kind == "hopping":
        size, slide = draw(
            st.sampled_from([(2000, 1000), (3000, 1000), (4000, 2000), (5000, 2500), (2000, 2000)])
        )
        spec = ref.RefHopping(size, slide, lateness)
    elif kind == "cumulative":
        size, step = draw(
            st.sampled_from([(4000, 1000), (3000, 1000), (6000, 2000), (5000, 2500), (2000, 2000)])
        )
        spec = ref.RefCumulative(size, step, lateness)
    else:
        spec = ref.RefSession(draw(st.sampled_from([500, 1000, 2000, 5000])), lateness)
    bound = draw(st.sampled_from([0, 500, 1000, 3000, 10000]))
    early_ms = draw(st.sampled_from([None, None, 1000]))
    batches = draw(batchings(draw(event_streams())))
    pause = st.sampled_from([0, 0, 500, 1000]) if early_ms else st.just(0)
    pauses = [draw(pause) for _ in batches]
    checkpoints = [draw(st.booleans()) for _ in batches]
    return Scenario(spec, bound, early_ms, batches, pauses, checkpoints)


def run(driver: TestDriver, sc: Scenario) -> None:
    for batch, pause, cp in zip(sc.batches, sc.pauses, sc.checkpoints, strict=True):
        send_batch(driver, batch)
        if pause:
            driver.advance_time(pause)
        if cp:
            checkpoint(driver)
    driver.advance_watermark(FAR)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", KINDS)
def test_windows_match_reference(kind: str, state: str) -> None:
    @settings(max_examples=EXAMPLES[state], deadline=None)
    @given(sc=scenarios(kind))
    def check(sc: Scenario) -> None:
        check_against_reference(sc, state)

    check()


def check_against_reference(sc: Scenario, state: str) -> None:
    n = sum(len(b) for b in sc.batches)
    expected_late = ref.late_events(sc.batches, sc.spec, sc.bound)
    with driving(window_job(api_spec(sc.spec, sc.early_ms), sc.bound), state) as driver:
        run(driver, sc)
        counters = driver.counters()
        for step, sink, aggregate in STEPS:
            outputs = driver.output(sink)
            expected = ref.final_view(sc.batches, sc.spec, sc.bound, aggregate)
            assert engine_view(outputs, sc.spec) == expected, step
            assert Counter(v["id"] for v in driver.late(step)) == Counter(
                e.id for e in expected_late
            ), step
            # A result's event time is the last instant of its window.
            for _, value, ts in driver.records(sink):
                assert ts == value["window_end_ms"] - 1
            c = counters[step]
            assert c["in"] == n
            assert c["late"] == len(expected_late)
            assert c["dead_lettered"] == 0
            assert c["out"] == len(outputs) == counters[sink]["in"]
            if sc.early_ms is not None:
                continue
            if sc.spec.lateness == 0 and not isinstance(sc.spec, ref.RefSession):
                # Every window is emitted exactly once. (A session can legitimately be
                # emitted again: a record on time by its own proto-session may still
                # extend a session that already fired.)
                emissions = Counter(window_key(v, sc.spec) for v in outputs)
                assert set(emissions.values()) <= {1}, step
            if step == "w_ids":
                # A window is re-emitted only when it changed (then its ids changed).
                last: dict[ref.WindowKey, Any] = {}
                for v in outputs:
                    wk = window_key(v, sc.spec)
                    assert last.get(wk) != (v["window_end_ms"], v["value"]), (step, wk)
                    last[wk] = (v["window_end_ms"], v["value"])
        assert counters["events"]["in"] == counters["by_key"]["in"] == n
        for step, c in counters.items():
            assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
            assert min(c.values()) >= 0, step


@st.composite
def crash_points(draw: st.DrawFn, kind: str) -> tuple[Scenario, list[bool]]:
    """A scenario (without early updates) and, per batch, whether the driver crashes
    after it (and before its checkpoint, if it has one)."""
    sc = draw(scenarios(kind))
    sc = Scenario(sc.spec, sc.bound, None, sc.batches, [0] * len(sc.batches), sc.checkpoints)
    return sc, [draw(st.booleans()) for _ in sc.batches]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", KINDS)
def test_windows_survive_crash_and_restore(kind: str, state: str) -> None:
    """Crash anywhere, restore from the last checkpoint and send what was sent since
    again (as Kafka would): the final view and the late output are the reference's."""

    @settings(max_examples=EXAMPLES[state] // 2, deadline=None)
    @given(case=crash_points(kind))
    def check(case: tuple[Scenario, list[bool]]) -> None:
        sc, crashes = case
        with driving(window_job(api_spec(sc.spec), sc.bound), state) as driver:
            since: list[list[Event]] = []  # batches sent since the last checkpoint
            for batch, cp, crash in zip(sc.batches, sc.checkpoints, crashes, strict=True):
                send_batch(driver, batch)
                since.append(batch)
                if crash:
                    driver.crash()
                    driver.restore()
                    # The restored watermark reaches the steps at the next advance;
                    # replayed records must be judged against it, as before the crash.
                    driver.advance_time(0)
                    for again in since:
                        send_batch(driver, again)
                if cp:
                    driver.checkpoint()
                    since = []
            driver.advance_watermark(FAR)
            expected_late = ref.late_events(sc.batches, sc.spec, sc.bound)
            for step, sink, aggregate in STEPS:
                expected = ref.final_view(sc.batches, sc.spec, sc.bound, aggregate)
                assert engine_view(driver.output(sink), sc.spec) == expected, step
                assert Counter(v["id"] for v in driver.late(step)) == Counter(
                    e.id for e in expected_late
                ), step

    check()


@pytest.mark.parametrize("state", STATES)
def test_windows_stored_under_start_only_are_read_and_rewritten(state: str) -> None:
    spec = windows.hopping(ms(2000), ms(1000), allowed_lateness=ms(1000))
    with driving(count_job(spec), state) as driver:
        store = driver.task.stores[0]
        # The older layout: (key, window start) -> accumulator.
        store.put(("a", BASE), 2)
        store.put(("a", BASE + 1000), 5)
        driver.task.reindex()
        assert sorted(k for k, _ in store.items()) == [
            ("a", BASE, BASE + 2000),
            ("a", BASE + 1000, BASE + 3000),
        ]
        driver.send("events", rec("a", 1500))  # joins both windows
        driver.advance_watermark(FAR)
        assert engine_view(driver.output("out")) == {
            ("a", BASE): (BASE + 2000, 3),
            ("a", BASE + 1000): (BASE + 3000, 6),
        }
        assert list(store.items()) == []


@pytest.mark.parametrize("state", STATES)
def test_sessions_stored_as_lists_are_read_and_rewritten(state: str) -> None:
    from runtime.state.records import WindowState

    spec = windows.session(ms(1000), allowed_lateness=ms(5000))
    with driving(count_job(spec), state) as driver:
        store = driver.task.stores[0]
        # The older layout: key -> [[start, end, acc, status]]; status 1: emitted as is,
        # 2: emitted, then changed (its result must go out again).
        store.put("a", [[BASE, BASE + 1000, 1, 1]])
        store.put("b", [[BASE, BASE + 1500, 2, 2]])
        driver.task.reindex()
        assert store.get("a") == [WindowState(BASE, BASE + 1000, 1, emitted=True, pending=False)]
        driver.send("events", rec("c", 3000))  # watermark 3000: both sessions are complete
        assert summary(driver.output("out")) == [("b", 0, 1500, 2)]
        driver.send("events", rec("a", 900))  # on time: extends a's emitted session
        driver.advance_watermark(FAR)
        assert engine_view(driver.output("out")) == {
            ("a", BASE): (BASE + 1900, 2),
            ("b", BASE): (BASE + 1500, 2),
            ("c", BASE + 3000): (BASE + 4000, 1),
        }


# -- deterministic examples ----------------------------------------------------------


def count_job(spec: WindowSpec, bound: int = 0) -> Job:
    job = Job("windows-example")
    (
        job.source(
            "events",
            schema="Event",
            timestamp=lambda e: e["ts"],
            watermarks=WatermarkStrategy.bounded(ms(bound)),
        )
        .key_by("by_key", lambda e: e["k"])
        .window("w", spec)
        .aggregate(Count())
        .sink("out", Json())
    )
    return job


def rec(key: str, offset_ms: int, ident: int = 0) -> dict[str, Any]:
    return {"k": key, "ts": BASE + offset_ms, "v": 1, "id": ident}


def summary(outputs: list[dict[str, Any]]) -> list[tuple[str, int, int, Any]]:
    """(key, start, end, value) with times relative to BASE."""
    return [
        (v["key"], v["window_start_ms"] - BASE, v["window_end_ms"] - BASE, v["value"])
        for v in outputs
    ]


@pytest.mark.parametrize("state", STATES)
def test_late_record_bridging_two_emitted_sessions_retracts_the_later(state: str) -> None:
    spec = windows.session(ms(1000), allowed_lateness=ms(10_000))
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("u", 0))
        driver.send("events", rec("u", 1500))
        driver.send("events", rec("x", 5000))  # another key drives the watermark to 5000
        assert summary(driver.output("out")) == [("u", 0, 1000, 1), ("u", 1500, 2500, 1)]
        # Late (its own session ended at 1800 < 5000) but within lateness; it overlaps both.
        driver.send("events", rec("u", 800))
        assert summary(driver.output("out"))[2:] == [
            ("u", 1500, 2500, None),  # the later session is absorbed: retracted
            ("u", 0, 2500, 3),  # the merged session, re-emitted at once (already complete)
        ]
        driver.advance_watermark(FAR)
        assert engine_view(driver.output("out")) == {
            ("u", BASE): (BASE + 2500, 3),
            ("x", BASE + 5000): (BASE + 6000, 1),
        }
        assert driver.late("w") == []


@pytest.mark.parametrize("state", STATES)
def test_two_late_records_extending_a_session_retract_only_what_was_emitted(state: str) -> None:
    spec = windows.session(ms(1000), allowed_lateness=ms(10_000))
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("u", 5000))
        driver.send("events", rec("x", 8000))  # watermark 8000: u's [5000, 6000) fires
        assert summary(driver.output("out")) == [("u", 5000, 6000, 1)]
        # One batch: 4700 moves the start to 4700, then 4400 moves it to 4400. Only
        # 5000 was ever emitted, so only 5000 is retracted.
        driver.send_many("events", [rec("u", 4700), rec("u", 4400)])
        assert summary(driver.output("out"))[1:] == [
            ("u", 5000, 6000, None),
            ("u", 4400, 6000, 3),
        ]


@pytest.mark.parametrize("state", STATES)
def test_record_after_session_fired_but_not_late_still_merges(state: str) -> None:
    # With no allowed lateness, a record is on time while its own proto-session is
    # open; it may still overlap a session that already fired and must merge with it.
    spec = windows.session(ms(10_000))
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("a", 0))
        driver.send("events", rec("b", 10_000))  # watermark 10000: a's [0, 10000) fires
        assert summary(driver.output("out")) == [("a", 0, 10_000, 1)]
        driver.send("events", rec("a", 5000))  # 5000 + 10000 > 10000: not late
        driver.advance_watermark(FAR)
        assert engine_view(driver.output("out")) == {
            ("a", BASE): (BASE + 15_000, 2),
            ("b", BASE + 10_000): (BASE + 20_000, 1),
        }
        assert driver.late("w") == []


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(("watermark", "merged"), [(1998, True), (1999, False)])
def test_session_is_kept_while_a_record_on_time_can_still_reach_it(
    state: str, watermark: int, merged: bool
) -> None:
    spec = windows.session(ms(1000))
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("a", 0))
        driver.send("events", rec("x", watermark))
        # 999 is the last instant of [0, 1000); it is on time while 999 + 1000 > watermark.
        driver.send("events", rec("a", 999))
        driver.advance_watermark(FAR)
        view = engine_view(driver.output("out"))
        if merged:
            assert view[("a", BASE)] == (BASE + 1999, 2)
            assert driver.late("w") == []
        else:
            assert view[("a", BASE)] == (BASE + 1000, 1)
            assert driver.late("w") == [rec("a", 999)]


@pytest.mark.parametrize("state", STATES)
def test_window_first_filled_within_lateness_is_emitted_once(state: str) -> None:
    spec = windows.tumbling(ms(1000), allowed_lateness=ms(5000))
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("b", 3000))  # watermark 3000
        driver.send("events", rec("a", 500))  # a's [0, 1000) is new, already complete
        assert summary(driver.output("out")) == [("a", 0, 1000, 1)]
        driver.send("events", rec("b", 4000))  # the watermark moves on: no repeat
        driver.advance_watermark(FAR)
        assert sorted(summary(driver.output("out"))) == [
            ("a", 0, 1000, 1),
            ("b", 3000, 4000, 1),
            ("b", 4000, 5000, 1),
        ]


@pytest.mark.parametrize("state", STATES)
def test_hopping_record_late_for_some_windows_only(state: str) -> None:
    spec = windows.hopping(ms(4000), ms(1000), allowed_lateness=ms(500))
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("a", 0))
        driver.send("events", rec("b", 6000))  # watermark 6000
        # 4200 is in [1000, 5000) .. [4000, 8000); [1000, 5000) ended 1000 before the
        # watermark (> lateness), so only the three later windows get it.
        driver.send("events", rec("a", 4200))
        driver.advance_watermark(FAR)
        view = engine_view(driver.output("out"))
        a = {wk[1] - BASE: value for wk, (_, value) in view.items() if wk[0] == "a"}
        assert a == {-3000: 1, -2000: 1, -1000: 1, 0: 1, 2000: 1, 3000: 1, 4000: 1}
        assert driver.late("w") == []
        assert driver.counters()["w"]["late"] == 0


@pytest.mark.parametrize("state", STATES)
def test_quiet_key_window_closes_when_other_keys_move_the_watermark(state: str) -> None:
    spec = windows.tumbling(ms(10_000))
    with driving(count_job(spec, bound=1000), state) as driver:
        driver.send_many("events", [rec("quiet", 1000), rec("quiet", 2000), rec("busy", 3000)])
        for t in range(4000, 11_000, 1000):
            driver.send("events", rec("busy", t))
        assert driver.output("out") == []  # watermark 10000 - 1000: nothing closed yet
        driver.send("events", rec("busy", 11_000))  # watermark 10000
        assert sorted(summary(driver.output("out"))) == [
            ("busy", 0, 10_000, 7),
            ("quiet", 0, 10_000, 2),
        ]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "spec",
    [
        windows.tumbling(ms(10_000), early_updates=ms(1000)),
        windows.session(ms(10_000), early_updates=ms(1000)),
    ],
    ids=["tumbling", "session"],
)
def test_early_updates_emit_running_results_then_the_final_one(state: str, spec: Any) -> None:
    with driving(count_job(spec), state) as driver:
        driver.send("events", rec("a", 1000))
        driver.advance_time(1000)
        driver.send("events", rec("a", 2000))
        driver.advance_time(1000)
        running = summary(driver.output("out"))
        assert running and all(key == "a" for key, *_ in running)
        assert running[-1][3] == 2  # the running count, window still open
        assert driver.watermark_ms < running[-1][2] + BASE
        driver.send("events", rec("a", 3000))
        driver.advance_time(1000)
        assert summary(driver.output("out"))[-1][3] == 3
        driver.advance_time(1000)  # nothing changed: no new early result
        before = len(driver.output("out"))
        driver.advance_time(1000)
        assert len(driver.output("out")) == before
        driver.advance_watermark(FAR)
        start, end = (0, 10_000) if isinstance(spec, windows.Tumbling) else (1000, 13_000)
        assert summary(driver.output("out"))[-1] == ("a", start, end, 3)
        assert engine_view(driver.output("out")) == {("a", BASE + start): (BASE + end, 3)}


@pytest.mark.parametrize("state", STATES)
def test_early_update_of_a_session_then_merged_into_an_earlier_start_is_retracted(
    state: str,
) -> None:
    spec = windows.session(ms(1000), early_updates=ms(1000))
    with driving(count_job(spec, bound=5000), state) as driver:
        driver.send("events", rec("a", 10_000))
        driver.advance_time(1000)
        driver.send("events", rec("a", 10_100))
        driver.advance_time(1000)  # early result of [10000, 11100)
        assert summary(driver.output("out"))[-1] == ("a", 10_000, 11_100, 2)
        driver.send("events", rec("a", 9500))  # on time; merges into [9500, 11100)
        driver.advance_watermark(FAR)
        assert engine_view(driver.output("out")) == {("a", BASE + 9500): (BASE + 11_100, 3)}


@pytest.mark.parametrize("state", STATES)
def test_cumulative_windows_emit_the_hour_so_far_every_ten_minutes(state: str) -> None:
    minute = 60_000
    hour = BASE - BASE % 3_600_000 + 3_600_000  # an hour boundary

    def at(key: str, minutes: float) -> dict[str, Any]:
        return {"k": key, "ts": hour + int(minutes * minute), "v": 1, "id": 0}

    def since_hour(outputs: list[dict[str, Any]]) -> list[tuple[int, int, Any]]:
        return [
            (
                (v["window_start_ms"] - hour) // minute,
                (v["window_end_ms"] - hour) // minute,
                v["value"],
            )
            for v in outputs
            if v["key"] == "a"
        ]

    spec = windows.cumulative(
        timedelta(hours=1), timedelta(minutes=10), allowed_lateness=timedelta(minutes=15)
    )
    with driving(count_job(spec), state) as driver:
        driver.advance_time(2 * 3_600_000)  # event times within the processing clock's bound
        driver.send_many("events", [at("a", 5), at("a", 25)])
        driver.send("events", at("b", 30))  # watermark 30 min: [0, 10) .. [0, 30) fire
        assert since_hour(driver.output("out")) == [(0, 10, 1), (0, 20, 1), (0, 30, 2)]
        driver.send("events", at("b", 61))  # watermark 61 min: the rest of the hour
        assert since_hour(driver.output("out"))[3:] == [(0, 40, 2), (0, 50, 2), (0, 60, 2)]
        # Late, within lateness: only the windows that contain 48 min and are not gone.
        driver.send("events", at("a", 48))
        assert since_hour(driver.output("out"))[6:] == [(0, 50, 3), (0, 60, 3)]
        driver.send("events", at("b", 76))  # watermark 76 min: [0, 60) gone at 75
        driver.send("events", at("a", 59))
        assert driver.late("w") == [at("a", 59)]
        assert len(since_hour(driver.output("out"))) == 8


# -- the other built-in aggregates -----------------------------------------------------

QUANTILES = (0.0, 0.25, 0.5, 0.9, 0.99, 1.0)
ACCURACY = 0.01


def stats_job(spec: WindowSpec) -> Job:
    job = Job("window-stats")
    keyed = job.source(
        "events",
        schema="Event",
        timestamp=lambda e: e["ts"],
        watermarks=WatermarkStrategy.bounded(ms(2000)),
    ).key_by("by_key", lambda e: e["k"])
    of = lambda e: e["v"]  # noqa: E731
    keyed.window("mean", spec).aggregate(Mean(of=of)).sink("means", Json())
    keyed.window("min", spec).aggregate(Min(of=of)).sink("mins", Json())
    keyed.window("max", spec).aggregate(Max(of=of)).sink("maxes", Json())
    keyed.window("q", spec).aggregate(Quantiles(QUANTILES, of=of, relative_accuracy=ACCURACY)).sink(
        "quantiles", Json()
    )
    return job


@st.composite
def stat_streams(draw: st.DrawFn) -> list[list[Event]]:
    n = draw(st.integers(1, 60))
    cursor, events = 0, []
    for i in range(n):
        cursor += draw(st.integers(0, 800))
        lag = draw(st.integers(0, 2000))  # within the bound: nothing is late
        value = draw(st.one_of(st.integers(1, 100_000), st.floats(0.001, 1e6)))
        events.append(Event(draw(st.sampled_from(KEYS)), BASE + max(0, cursor - lag), value, i))  # type: ignore[arg-type]
    return draw(batchings(events))


@pytest.mark.parametrize("state", STATES)
def test_mean_min_max_quantiles(state: str) -> None:
    @settings(max_examples=EXAMPLES[state] // 2, deadline=None)
    @given(batches=stat_streams(), session=st.booleans())
    def check(batches: list[list[Event]], session: bool) -> None:
        check_stats(batches, session, state)

    check()


def check_stats(batches: list[list[Event]], session: bool, state: str) -> None:
    spec_ref: ref.RefSpec = ref.RefSession(3000) if session else ref.RefTumbling(5000)
    members = ref.window_members(batches, spec_ref, 2000)
    assert ref.late_events(batches, spec_ref, 2000) == []
    with driving(stats_job(api_spec(spec_ref)), state) as driver:
        for batch in batches:
            send_batch(driver, batch)
        driver.advance_watermark(FAR)
        means = engine_view(driver.output("means"))
        mins = engine_view(driver.output("mins"))
        maxes = engine_view(driver.output("maxes"))
        quantiles = engine_view(driver.output("quantiles"))
    assert set(means) == set(mins) == set(maxes) == set(quantiles) == set(members)
    for wk, (end, events) in members.items():
        values = [e.value for e in events]
        assert means[wk][0] == end
        assert means[wk][1] == pytest.approx(sum(values) / len(values), rel=1e-9)
        assert mins[wk][1] == min(values)
        assert maxes[wk][1] == max(values)
        estimates = quantiles[wk][1]
        assert set(estimates) == set(QUANTILES)
        for q in QUANTILES:
            exact = ref.nearest_rank(values, q)
            assert abs(estimates[q] - exact) <= ACCURACY * exact * (1 + 1e-9), (q, exact)
