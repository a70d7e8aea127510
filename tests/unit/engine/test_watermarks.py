"""Task watermarks: minimum over live partitions, idleness, never backwards, force()."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Job, Json, WatermarkStrategy, windows
from runtime.aggregates import Count
from runtime.engine.watermarks import NO_WATERMARK, WatermarkTracker
from runtime.testing import TestDriver

T0 = 1_700_000_000_000
NOW = 1_700_000_100_000
IDLE_MS = 30_000
STRATEGY = WatermarkStrategy.bounded(timedelta(seconds=5), idle_timeout=timedelta(seconds=30))
STATES = ("memory", "rocksdb")


def tracker(*partitions: int, strategy: WatermarkStrategy = STRATEGY) -> WatermarkTracker:
    t = WatermarkTracker()
    for p in partitions:
        t.add_partition("src", p, strategy, NOW)
    return t


def test_watermark_is_the_minimum_over_partitions() -> None:
    t = tracker(0, 1)
    assert t.advance(NOW) == NO_WATERMARK
    t.observe("src", 0, T0 + 20_000, NOW)
    assert t.advance(NOW) == NO_WATERMARK  # partition 1 has seen nothing yet
    t.observe("src", 1, T0 + 10_000, NOW)
    assert t.advance(NOW) == T0 + 5_000
    assert t.partition_watermark("src", 0) == T0 + 15_000
    assert t.partition_watermark("src", 1) == T0 + 5_000
    t.observe("src", 1, T0 + 30_000, NOW)
    assert t.advance(NOW) == T0 + 15_000


def test_watermark_never_goes_backwards() -> None:
    t = tracker(0)
    t.observe("src", 0, T0 + 20_000, NOW)
    assert t.advance(NOW) == T0 + 15_000
    t.observe("src", 0, T0 + 1_000, NOW)  # an older batch maximum changes nothing
    assert t.advance(NOW) == T0 + 15_000
    assert t.partition_watermark("src", 0) == T0 + 15_000
    t.add_partition("src", 1, STRATEGY, NOW)  # a new partition with no progress
    assert t.advance(NOW) == T0 + 15_000
    t.observe("src", 1, T0 + 2_000, NOW)
    assert t.advance(NOW) == T0 + 15_000
    assert t.current == T0 + 15_000


def test_idle_partition_stops_holding_back_after_the_timeout() -> None:
    t = tracker(0, 1)
    t.observe("src", 0, T0 + 10_000, NOW)
    t.observe("src", 1, T0 + 1_000, NOW)
    assert t.advance(NOW) == T0 - 4_000
    # Partition 0 keeps going; partition 1 goes quiet.
    t.observe("src", 0, T0 + 20_000, NOW + IDLE_MS - 1)
    assert t.advance(NOW + IDLE_MS - 1) == T0 - 4_000  # one ms short of the timeout
    t.observe("src", 0, T0 + 21_000, NOW + IDLE_MS)
    assert t.advance(NOW + IDLE_MS) == T0 + 16_000  # partition 1 is idle now
    # It speaks again, far behind: it counts again, but the watermark holds.
    t.observe("src", 1, T0 + 2_000, NOW + IDLE_MS + 1)
    assert t.advance(NOW + IDLE_MS + 1) == T0 + 16_000
    t.observe("src", 0, T0 + 40_000, NOW + IDLE_MS + 2)
    assert t.advance(NOW + IDLE_MS + 2) == T0 + 16_000  # held back by partition 1 again
    t.observe("src", 1, T0 + 50_000, NOW + IDLE_MS + 3)
    assert t.advance(NOW + IDLE_MS + 3) == T0 + 35_000


def test_touch_keeps_a_partition_alive_without_event_time() -> None:
    t = tracker(0, 1)
    t.observe("src", 0, T0 + 10_000, NOW)
    t.touch("src", 1, NOW + IDLE_MS - 1)  # e.g. a batch of only bad records
    assert t.advance(NOW + IDLE_MS) == NO_WATERMARK
    assert t.advance(NOW + 2 * IDLE_MS) == NO_WATERMARK  # now both are idle: it stays put


def test_all_partitions_idle_keeps_the_watermark() -> None:
    t = tracker(0, 1)
    t.observe("src", 0, T0 + 10_000, NOW)
    t.observe("src", 1, T0 + 12_000, NOW)
    assert t.advance(NOW) == T0 + 5_000
    assert t.advance(NOW + 10 * IDLE_MS) == T0 + 5_000


def test_no_idle_timeout_means_a_quiet_partition_holds_forever() -> None:
    strategy = WatermarkStrategy.bounded(timedelta(0), idle_timeout=None)
    t = tracker(0, 1, strategy=strategy)
    t.observe("src", 0, T0 + 10_000, NOW)
    t.observe("src", 1, T0, NOW)
    t.observe("src", 0, T0 + 20_000, NOW + 1000 * IDLE_MS)
    assert t.advance(NOW + 1000 * IDLE_MS) == T0


def test_force_moves_the_watermark_and_it_stays() -> None:
    t = tracker(0)
    t.observe("src", 0, T0 + 10_000, NOW)
    t.force(T0 + 60_000)
    assert t.advance(NOW) == T0 + 60_000
    t.force(T0 + 1_000)  # forcing lower does nothing
    t.observe("src", 0, T0 + 20_000, NOW)
    assert t.advance(NOW) == T0 + 60_000
    t.observe("src", 0, T0 + 100_000, NOW)
    assert t.advance(NOW) == T0 + 95_000


def test_remove_partition_and_snapshot_restore() -> None:
    t = tracker(0, 1)
    t.observe("src", 0, T0 + 10_000, NOW)
    t.observe("src", 1, T0 + 30_000, NOW)
    assert t.advance(NOW) == T0 + 5_000
    snap = t.snapshot()
    t.remove_partition("src", 0)
    assert t.partitions() == [("src", 1)]
    assert t.advance(NOW) == T0 + 25_000

    restored = tracker(0, 1)
    restored.restore(snap)
    assert restored.current == T0 + 5_000
    assert restored.partition_watermark("src", 1) == T0 + 25_000
    assert restored.advance(NOW) == T0 + 5_000


# -- against a model -----------------------------------------------------------------

ops = st.one_of(
    st.tuples(st.just("observe"), st.integers(0, 2), st.integers(0, 60_000)),
    st.tuples(st.just("clock"), st.integers(0, 20_000), st.just(0)),
    st.tuples(st.just("force"), st.integers(0, 60_000), st.just(0)),
    st.tuples(st.just("touch"), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(bound=st.integers(0, 5000), steps=st.lists(ops, max_size=40))
def test_tracker_matches_model(bound: int, steps: list[tuple[str, int, int]]) -> None:
    strategy = WatermarkStrategy.bounded(
        timedelta(milliseconds=bound), idle_timeout=timedelta(milliseconds=IDLE_MS)
    )
    t = tracker(0, 1, 2, strategy=strategy)
    now = NOW
    highest = {p: None for p in range(3)}
    active = {p: NOW for p in range(3)}
    forced = None
    current = None
    for op, a, b in steps:
        if op == "observe":
            t.observe("src", a, T0 + b, now)
            highest[a] = T0 + b if highest[a] is None else max(highest[a], T0 + b)
            active[a] = now
        elif op == "touch":
            t.touch("src", a, now)
            active[a] = now
        elif op == "clock":
            now += a
        else:
            t.force(T0 + a)
            forced = T0 + a if forced is None else max(forced, T0 + a)
        live = [highest[p] for p in range(3) if now - active[p] < IDLE_MS]
        candidates = []
        if live and None not in live:
            candidates.append(min(live) - bound)
        if forced is not None:
            candidates.append(forced)
        if candidates and (current is None or max(candidates) > current):
            current = max(candidates)
        assert t.advance(now) == (NO_WATERMARK if current is None else current)


# -- through the test driver, two partitions -------------------------------------------


@contextmanager
def two_partition_driver(state: str) -> Iterator[TestDriver]:
    job = Job("two-partitions")
    (
        job.source("events", schema="Event", timestamp=lambda e: e["ts"], watermarks=STRATEGY)
        .key_by("by_key", lambda e: e["k"])
        .window("w", windows.tumbling(timedelta(seconds=10)))
        .aggregate(Count())
        .sink("out", Json())
    )
    driver = TestDriver(job, state=state, partitions=2)
    try:
        yield driver
    finally:
        driver.close()


@pytest.mark.parametrize("state", STATES)
def test_driver_two_partitions_minimum_and_idleness(state: str) -> None:
    with two_partition_driver(state) as driver:
        driver.send("events", {"k": "a", "ts": T0 + 1_000}, partition=0)
        driver.send("events", {"k": "a", "ts": T0 + 20_000}, partition=0)
        assert driver.watermark_ms == NO_WATERMARK  # partition 1 has seen nothing
        assert driver.output("out") == []
        driver.send("events", {"k": "b", "ts": T0 + 12_000}, partition=1)
        assert driver.watermark_ms == T0 + 7_000  # min(20000, 12000) - 5000
        assert driver.output("out") == []
        driver.send("events", {"k": "b", "ts": T0 + 16_000}, partition=1)
        assert driver.watermark_ms == T0 + 11_000
        assert [(r["key"], r["value"]) for r in driver.output("out")] == [("a", 1)]
        # Partition 1 goes quiet; partition 0 keeps sending.
        driver.advance_time(IDLE_MS - 1)
        driver.send("events", {"k": "a", "ts": T0 + 40_000}, partition=0)
        assert driver.watermark_ms == T0 + 11_000  # not idle yet
        driver.advance_time(1)
        assert driver.watermark_ms == T0 + 35_000  # idle: partition 0 alone decides
        windows_out = sorted((r["key"], r["window_start_ms"] - T0) for r in driver.output("out"))
        assert windows_out == [("a", 0), ("a", 20_000), ("b", 10_000)]
        # Partition 1 wakes up far behind: the watermark does not go back, and its
        # record is late for the window that already closed.
        driver.send("events", {"k": "b", "ts": T0 + 18_000}, partition=1)
        assert driver.watermark_ms == T0 + 35_000
        assert driver.late("w") == [{"k": "b", "ts": T0 + 18_000}]
        c = driver.counters()["w"]
        assert (c["in"], c["late"], c["processed"]) == (6, 1, 5)


@pytest.mark.parametrize("state", STATES)
def test_driver_advance_watermark_forces_and_never_goes_back(state: str) -> None:
    with two_partition_driver(state) as driver:
        driver.send("events", {"k": "a", "ts": T0 + 1_000}, partition=0)
        driver.advance_watermark(T0 + 10_000)
        assert driver.watermark_ms == T0 + 10_000
        assert [(r["key"], r["value"]) for r in driver.output("out")] == [("a", 1)]
        driver.advance_watermark(T0 + 5_000)
        assert driver.watermark_ms == T0 + 10_000
        driver.send("events", {"k": "a", "ts": T0 + 3_000}, partition=1)
        assert driver.watermark_ms == T0 + 10_000
        assert driver.late("w") == [{"k": "a", "ts": T0 + 3_000}]
