"""A job's state survives a restart, tested without a broker (the driver's fake checkpoint).

The driver commits like a worker (state changes, outputs, read positions, event-time
progress), crashes like a killed one (everything after the last checkpoint is gone)
and restores from its changelog. A run with a crash and the replay of the records after
the checkpoint must give exactly the output of a run without one: checked against a
brute-force count, on both state backends, for windows and for keyed process state.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from runtime import ConfigError, Job, Json, ValueState, WatermarkStrategy, windows
from runtime.aggregates import Count
from runtime.testing import TestDriver
from tests.reference.counts import window_counts

T0 = 1_700_000_000_000
STATES = ("memory", "rocksdb")
WINDOW_MS = 10_000


TOTAL = ValueState("total", default=0)


class RunningTotal:
    """Per key: a running total in a value state, emitted with every record."""

    states = (TOTAL,)

    def process(self, value: Any, ctx: Any) -> Any:
        state = ctx.state(TOTAL)
        total = state.get() + value["n"]
        state.set(total)
        return [{"k": value["k"], "total": total}]

    def on_timer(self, ts_ms: int, ctx: Any) -> Any:
        return []


def counting_job() -> Job:
    job = Job("restartable")
    events = job.source(
        "events",
        schema="Event",
        timestamp=lambda e: e["ts"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=0)),
    )
    (
        events.key_by("by_k", lambda e: e["k"])
        .window("per_10s", windows.tumbling(timedelta(milliseconds=WINDOW_MS)))
        .aggregate(Count(), output=lambda k, w, n: {"k": k, "start": w.start_ms, "n": n})
        .sink("counts", Json())
    )
    events.key_by("by_k2", lambda e: e["k"]).process("running", RunningTotal()).sink(
        "totals", Json()
    )
    return job


def events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"k": f"k{rng.randrange(5)}", "ts": T0 + i * 700, "n": rng.randrange(1, 9)}
        for i in range(n)
    ]


@pytest.mark.parametrize("state", STATES)
def test_crash_and_restore_give_the_same_output(state: str) -> None:
    evs = events(200, seed=3)
    driver = TestDriver(counting_job(), state=state)
    try:
        for e in evs[:80]:
            driver.send("events", e)
        assert driver.checkpoint() == 1
        for e in evs[80:130]:
            driver.send("events", e)  # processed, then lost with the crash
        driver.crash()
        with pytest.raises(ConfigError, match="restore"):
            driver.send("events", evs[130])
        driver.restore()
        for e in evs[80:]:  # Kafka delivers everything after the checkpoint again
            driver.send("events", e)
        driver.advance_watermark(T0 + 10**7)
        counts = {(o["k"], o["start"]): o["n"] for o in driver.output("counts")}
        totals = driver.output("totals")
    finally:
        driver.close()
    reference = window_counts(evs, WINDOW_MS, "k", time="ts")
    running: Counter[str] = Counter()
    expected_totals = []
    for e in evs:
        running[e["k"]] += e["n"]
        expected_totals.append({"k": e["k"], "total": running[e["k"]]})
    assert counts == dict(reference)
    assert len(driver.output("counts")) == len(reference)  # nothing emitted twice
    assert totals == expected_totals


@pytest.mark.parametrize("state", STATES)
def test_state_inspection(state: str) -> None:
    driver = TestDriver(counting_job(), state=state)
    try:
        driver.send("events", {"k": "a", "ts": T0, "n": 4})
        driver.send("events", {"k": "a", "ts": T0 + 1, "n": 3})
        [(key, stored)] = driver.state("running", "a")
        assert key == ("a", "total") and stored[0] == 7  # (value, last write ms) for TTL
        assert driver.state("per_10s", "a")  # its open window
        assert driver.state("running", "nobody") == []
        with pytest.raises(ConfigError, match="keeps no state"):
            driver.state("by_k", "a")
    finally:
        driver.close()


def lateness_job(lateness_ms: int, kind: str) -> Job:
    """Counts per key in 10 s windows of ``kind`` with ``lateness_ms`` of allowed lateness."""
    job = Job("restored_lateness")
    events = job.source(
        "events",
        schema="Event",
        timestamp=lambda e: e["ts"],
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=0)),
    )
    late = timedelta(milliseconds=lateness_ms)
    size = timedelta(milliseconds=WINDOW_MS)
    spec = {
        "tumbling": windows.tumbling(size, allowed_lateness=late),
        "hopping": windows.hopping(size, size / 2, allowed_lateness=late),
        "session": windows.session(size / 2, allowed_lateness=late),
    }[kind]
    (
        events.key_by("by_k", lambda e: e["k"])
        .window("counted", spec)
        .aggregate(Count(), output=lambda k, w, n: {"k": k, "start": w.start_ms, "n": n})
        .sink("counts", Json())
    )
    return job


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session"])
@pytest.mark.parametrize("lateness_ms", [0, 15_000])
@pytest.mark.parametrize("state", STATES)
def test_a_restored_task_judges_lateness_and_fires_as_the_uncrashed_one(
    state: str, lateness_ms: int, kind: str
) -> None:
    """Event time resumes where the checkpoint left it, before the first replayed batch.

    Records after the checkpoint include one that was late before the crash (a window
    that had fired and, with no allowed lateness, was gone): after the restore it is
    late again, not counted into a window emitted a second time. Windows that fired
    before the checkpoint and are kept for allowed lateness do not fire again when event
    time moves on after the restore. The run with a crash must equal the run without.
    """
    evs = events(60, seed=5)
    end = evs[-1]["ts"]
    stragglers = [
        {"k": "k1", "ts": evs[10]["ts"], "n": 1},  # far behind: late with any lateness here
        {"k": "k2", "ts": end - WINDOW_MS - 2_000, "n": 1},  # within 15 s of lateness
    ]

    def run(crash: bool) -> tuple[list[Any], list[Any]]:
        driver = TestDriver(lateness_job(lateness_ms, kind), state=state)
        try:
            for e in evs:
                driver.send("events", e)
            driver.checkpoint()
            if crash:
                driver.crash()
                driver.restore()
            for e in stragglers:
                driver.send("events", e)
            driver.advance_watermark(end + 10**7)
            # Windows firing at one watermark come in the store's order: compare sorted.
            return sorted(driver.output("counts"), key=repr), driver.late("counted")
        finally:
            driver.close()

    assert run(crash=True) == run(crash=False)
