"""Interval joins against the brute-force reference (``tests.reference.joins``), on both backends.

Random streams of left and right records of a few keys, out of order, with
duplicates (the same record twice) and records behind the watermark, arrive in
random batches at random forced watermarks; random bounds (negative ones too),
allowed lateness, inner and left joins. At the end the watermark goes far ahead, so
every left join's unmatched record is out and all state is dropped. The emitted pairs
(with their event times and multiplicity) must equal the reference's, the late side
outputs must hold exactly its late records, the counters must reconcile, and the
store must be empty. The same holds with a crash anywhere and a restore from the last
checkpoint, the records since then delivered again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Job, Json, WatermarkStrategy
from runtime.testing import TestDriver
from tests.reference.joins import Arrival, JoinResult, interval_join

BASE = 1_700_000_000_000
FAR = BASE + 10 * 24 * 3600 * 1000
KEYS = ("a", "b", "c")
# Opening RocksDB stores costs far more than a scenario: fewer examples there.
EXAMPLES = {"memory": 200, "rocksdb": 30}
# The sources' own watermarks stay far behind: the forced ones are the watermarks.
NEVER = WatermarkStrategy.bounded(timedelta(days=300))


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def pair_output(key: str, left: dict[str, Any], right: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": key, "left": left["id"], "right": None if right is None else right["id"]}


def join_job(lower: int, upper: int, lateness: int, how: str) -> Job:
    job = Job("joins-property")
    left = job.source("lefts", schema="JoinSide", timestamp=lambda e: e["ts"], watermarks=NEVER)
    right = job.source("rights", schema="JoinSide", timestamp=lambda e: e["ts"], watermarks=NEVER)
    joined = left.key_by("lk", lambda e: e["k"]).join(
        right.key_by("rk", lambda e: e["k"]),
        "pairs",
        within=(ms(lower), ms(upper)),
        how=how,  # type: ignore[arg-type]
        allowed_lateness=ms(lateness),
        output=pair_output,
    )
    joined.sink("out", Json())
    joined.late_left().sink("late_lefts", Json())
    joined.late_right().sink("late_rights", Json())
    return job


@dataclass(frozen=True)
class Rec:
    side: str
    key: str
    ts: int
    id: int

    def value(self) -> dict[str, Any]:
        return {"k": self.key, "ts": self.ts, "id": self.id}


@dataclass(frozen=True)
class Scenario:
    lower: int
    upper: int
    lateness: int
    how: str
    batches: list[list[Rec]]
    watermarks: list[int]  # forced before each batch (non-decreasing)
    checkpoints: list[bool]  # checkpoint after each batch
    crash_after: int | None  # crash after this batch (then restore and replay)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    lower = draw(st.sampled_from([-3000, -1000, -250, 0, 0, 250, 1000]))
    upper = lower + draw(st.sampled_from([0, 0, 1, 250, 1000, 3000, 6000]))
    lateness = draw(st.sampled_from([0, 0, 500, 2000]))
    how = draw(st.sampled_from(["inner", "left"]))
    n = draw(st.integers(1, 40))
    cursor, recs = 0, []
    for i in range(n):
        cursor += draw(st.sampled_from([0, 250, 500, 1000, 3000]))
        lag = draw(st.sampled_from([0, 0, 0, 1, 250, 1000, 2500, 6000]))
        rec = Rec(
            draw(st.sampled_from(["left", "right"])),
            draw(st.sampled_from(KEYS)),
            BASE + 10_000 + max(0, cursor - lag),
            i,
        )
        recs.append(rec)
        if draw(st.integers(0, 9)) == 0:
            recs.append(rec)  # a duplicate: the same record again
    batches, i = [], 0
    while i < len(recs):
        size = draw(st.integers(1, 6))
        batches.append(recs[i : i + size])
        i += size
    watermarks, wm = [], BASE
    for batch in batches:
        # The watermark trails the batch's records by a random distance (or not at all).
        behind = draw(st.sampled_from([0, 1, 500, 2000, 5000, 10**6]))
        wm = max(wm, max(r.ts for r in batch) - behind)
        watermarks.append(wm)
    checkpoints = [draw(st.booleans()) for _ in batches]
    crash = draw(st.one_of(st.none(), st.integers(0, len(batches) - 1)))
    return Scenario(lower, upper, lateness, how, batches, watermarks, checkpoints, crash)


def send(driver: TestDriver, watermark: int, batch: list[Rec]) -> None:
    """Force the watermark, then send the batch in runs of one side each."""
    driver.advance_watermark(watermark)
    run: list[Rec] = []
    for rec in [*batch, None]:
        if run and (rec is None or rec.side != run[0].side):
            source = "lefts" if run[0].side == "left" else "rights"
            driver.send_many(source, [r.value() for r in run])
            run = []
        if rec is not None:
            run.append(rec)


def run_engine(s: Scenario, state: str) -> tuple[JoinResult, dict[str, int], int]:
    driver = TestDriver(join_job(s.lower, s.upper, s.lateness, s.how), state=state)
    try:
        done = 0  # batches up to the last checkpoint
        for i, (wm, batch) in enumerate(zip(s.watermarks, s.batches, strict=True)):
            send(driver, wm, batch)
            if s.checkpoints[i]:
                driver.checkpoint()
                done = i + 1
            if s.crash_after == i:
                driver.crash()
                driver.restore()
                for j in range(done, i + 1):  # Kafka delivers them again
                    send(driver, s.watermarks[j], s.batches[j])
        driver.advance_watermark(FAR)
        result = JoinResult()
        for key, value, ts in driver.records("out"):
            assert key == value["key"]
            result.pairs[(value["key"], value["left"], value["right"], ts)] += 1
        result.late_left = Counter(v["id"] for v in driver.late("pairs", "left"))
        result.late_right = Counter(v["id"] for v in driver.late("pairs", "right"))
        assert Counter(v["id"] for v in driver.output("late_lefts")) == result.late_left
        assert Counter(v["id"] for v in driver.output("late_rights")) == result.late_right
        counters = driver.counters()["pairs"]
        entries = sum(len(store) for store in driver.task.stores)
        return result, counters, entries
    finally:
        driver.close()


def reference(s: Scenario) -> JoinResult:
    arrivals = [
        Arrival(r.side, r.key, r.ts, r.id, wm)
        for wm, batch in zip(s.watermarks, s.batches, strict=True)
        for r in batch
    ]
    return interval_join(arrivals, s.lower, s.upper, s.lateness, s.how)


def check(s: Scenario, state: str) -> None:
    got, counters, entries = run_engine(s, state)
    want = reference(s)
    assert got.pairs == want.pairs
    assert got.late_left == want.late_left
    assert got.late_right == want.late_right
    total = sum(len(b) for b in s.batches)
    late = sum(want.late_left.values()) + sum(want.late_right.values())
    if s.crash_after is None:
        # Counters are the task's since it started: compare them on runs without a crash.
        assert counters["in"] == total
        assert counters["late"] == late
        assert counters["dead_lettered"] == 0
        assert counters["processed"] == total - late
        assert counters["out"] == sum(want.pairs.values())
    assert entries == 0, "state left behind after every record expired"


@settings(max_examples=EXAMPLES["memory"], deadline=None)
@given(scenarios())
def test_interval_join_equals_brute_force_memory(s: Scenario) -> None:
    check(s, "memory")


@settings(max_examples=EXAMPLES["rocksdb"], deadline=None)
@given(scenarios())
def test_interval_join_equals_brute_force_rocksdb(s: Scenario) -> None:
    check(s, "rocksdb")
