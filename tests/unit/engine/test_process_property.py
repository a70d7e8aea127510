"""``process()`` steps against a brute-force model: keyed state, timers and TTL.

The process function keeps per key a running sum (ValueState), a histogram
(MapState), the ids it saw (ListState) and the last id (ValueState with a TTL of
processing time); it registers an event-time timer at ``ts + delay`` and a
processing-time timer ``PROC_DELAY`` after the record's processing time. The model
replays the same script of batches and clock moves with plain dicts and sets and
predicts, step by step, every output the job writes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Job, Json, ListState, MapState, ValueState, WatermarkStrategy
from runtime.testing import TestDriver
from tests.reference.windows import Event

STATES = ("memory", "rocksdb")
EXAMPLES = {"memory": 150, "rocksdb": 40}  # opening RocksDB stores is the slow part
KEYS = ("a", "b", "c")
BASE = 1_700_000_000_000  # event times
PROC_BASE = 1_800_000_000_000  # the processing clock: timers at or after it are processing-time
PROC_DELAY = 2000
TTL_MS = 3000
FAR = BASE + 10 * 24 * 3600 * 1000

TOTAL = ValueState("total", default=0)
BUCKETS = MapState("buckets")
LOG = ListState("log")
RECENT = ValueState("recent", ttl=timedelta(milliseconds=TTL_MS))


class Tracker:
    """Running sum, histogram, id log and a TTL'd last id per key; two timers per record."""

    states = (TOTAL, BUCKETS, LOG, RECENT)

    def __init__(self, delay_ms: int) -> None:
        self.delay_ms = delay_ms

    def process(self, value: dict[str, Any], ctx: Any) -> list[tuple[Any, ...]]:
        total = ctx.state(TOTAL).get() + value["v"]
        ctx.state(TOTAL).set(total)
        buckets = ctx.state(BUCKETS).get()
        bucket = value["v"] % 3
        buckets[bucket] = buckets.get(bucket, 0) + 1
        ctx.state(BUCKETS).set(buckets)
        log = ctx.state(LOG).get()
        log.append(value["id"])
        ctx.state(LOG).set(log)
        recent = ctx.state(RECENT)
        previous = recent.get()
        recent.set(value["id"])
        due = ctx.timestamp_ms + self.delay_ms
        if due > ctx.watermark_ms:  # a timer in the past would only fire at the next advance
            ctx.timers.register_event_time(due)
        ctx.timers.register_processing_time(ctx.processing_time_ms + PROC_DELAY)
        return [("record", ctx.key, value["id"], total, previous)]

    def on_timer(self, ts_ms: int, ctx: Any) -> list[tuple[Any, ...]]:
        assert ctx.timestamp_ms == ts_ms
        if ts_ms >= PROC_BASE:
            assert ctx.processing_time_ms >= ts_ms
            log = ctx.state(LOG).get()
            return [("proc", ctx.key, ts_ms, len(log), ctx.state(RECENT).get())]
        assert ctx.watermark_ms >= ts_ms
        buckets = tuple(sorted(ctx.state(BUCKETS).get().items()))
        return [
            ("event", ctx.key, ts_ms, ctx.state(TOTAL).get(), buckets, tuple(ctx.state(LOG).get()))
        ]


def process_job(delay_ms: int, bound: int) -> Job:
    job = Job("process-property")
    (
        job.source(
            "events",
            schema="Event",
            timestamp=lambda e: e["ts"],
            watermarks=WatermarkStrategy.bounded(timedelta(milliseconds=bound)),
        )
        .key_by("by_key", lambda e: e["k"])
        .process("tracker", Tracker(delay_ms))
        .sink("out", Json())
    )
    return job


@contextmanager
def driving(job: Job, state: str) -> Iterator[TestDriver]:
    driver = TestDriver(job, state=state, start_ms=PROC_BASE)
    try:
        yield driver
    finally:
        driver.close()


# -- the model -------------------------------------------------------------------------


@dataclass
class KeyModel:
    total: int = 0
    buckets: Counter[int] = field(default_factory=Counter)
    log: list[int] = field(default_factory=list)
    recent: tuple[int, int] | None = None  # (id, written at processing time)

    def recent_at(self, now: int) -> int | None:
        if self.recent is None or now - self.recent[1] >= TTL_MS:
            return None
        return self.recent[0]


@dataclass
class Model:
    delay_ms: int
    bound: int
    now: int = PROC_BASE
    watermark: float = -math.inf
    highest: float = -math.inf
    keys: dict[str, KeyModel] = field(default_factory=dict)
    event_timers: set[tuple[str, int]] = field(default_factory=set)
    proc_timers: set[tuple[str, int]] = field(default_factory=set)

    def batch(self, events: list[Event]) -> list[tuple[Any, ...]]:
        out = []
        for e in events:
            km = self.keys.setdefault(e.key, KeyModel())
            km.total += e.value
            km.buckets[e.value % 3] += 1
            km.log.append(e.id)
            out.append(("record", e.key, e.id, km.total, km.recent_at(self.now)))
            km.recent = (e.id, self.now)
            if e.ts + self.delay_ms > self.watermark:
                self.event_timers.add((e.key, e.ts + self.delay_ms))
            self.proc_timers.add((e.key, self.now + PROC_DELAY))
            self.highest = max(self.highest, e.ts)
        out += self.fire_proc()
        self.watermark = max(self.watermark, self.highest - self.bound)
        return out + self.fire_event()

    def advance_time(self, ms: int) -> list[tuple[Any, ...]]:
        self.now += ms
        return self.fire_proc()

    def force(self, watermark: int) -> list[tuple[Any, ...]]:
        self.watermark = max(self.watermark, watermark)
        return self.fire_event()

    def fire_proc(self) -> list[tuple[Any, ...]]:
        due = {t for t in self.proc_timers if t[1] <= self.now}
        self.proc_timers -= due
        out = []
        for key, ts in due:
            km = self.keys[key]
            out.append(("proc", key, ts, len(km.log), km.recent_at(self.now)))
        return out

    def fire_event(self) -> list[tuple[Any, ...]]:
        due = {t for t in self.event_timers if t[1] <= self.watermark}
        self.event_timers -= due
        out = []
        for key, ts in due:
            km = self.keys[key]
            buckets = tuple(sorted((b, n) for b, n in km.buckets.items() if n))
            out.append(("event", key, ts, km.total, buckets, tuple(km.log)))
        return out


# -- generated scripts -----------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    delay_ms: int
    bound: int
    steps: list[tuple[list[Event], int, bool]]  # (batch, then advance the clock, checkpoint)


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    n = draw(st.integers(1, 30))
    cursor, events = 0, []
    for i in range(n):
        cursor += draw(st.sampled_from([0, 250, 500, 1000, 3000]))
        lag = draw(st.sampled_from([0, 0, 500, 2000, 8000]))
        events.append(
            Event(
                draw(st.sampled_from(KEYS)),
                BASE + max(0, cursor - lag),
                draw(st.integers(-5, 20)),
                i,
            )
        )
    steps, i = [], 0
    while i < n:
        size = draw(st.integers(1, 5))
        pause = draw(st.sampled_from([0, 0, 500, 1000, 2000, 3000, 5000]))
        steps.append((events[i : i + size], pause, draw(st.booleans())))
        i += size
    return Script(
        delay_ms=draw(st.sampled_from([1, 1000, 2500])),
        bound=draw(st.sampled_from([0, 500, 2000])),
        steps=steps,
    )


@pytest.mark.parametrize("state", STATES)
def test_process_state_and_timers_match_model(state: str) -> None:
    @settings(max_examples=EXAMPLES[state], deadline=None)
    @given(script=scripts())
    def check(script: Script) -> None:
        check_against_model(script, state)

    check()


def check_against_model(script: Script, state: str) -> None:
    model = Model(script.delay_ms, script.bound)
    seen = 0
    with driving(process_job(script.delay_ms, script.bound), state) as driver:

        def new_outputs() -> Counter[tuple[Any, ...]]:
            nonlocal seen
            out = driver.output("out")
            fresh, seen = out[seen:], len(out)
            return Counter(fresh)

        for batch, pause, cp in script.steps:
            driver.send_many("events", [e.as_record() for e in batch])
            assert new_outputs() == Counter(model.batch(batch))
            if pause:
                driver.advance_time(pause)
                assert new_outputs() == Counter(model.advance_time(pause))
            if cp:
                for store in driver.task.stores:
                    store.checkpoint()
        driver.advance_watermark(FAR)
        assert new_outputs() == Counter(model.force(FAR))
        assert model.event_timers == set()

        outputs = driver.output("out")
        event_fired = Counter((o[1], o[2]) for o in outputs if o[0] == "event")
        proc_fired = Counter((o[1], o[2]) for o in outputs if o[0] == "proc")
        assert set(event_fired.values()) <= {1}
        assert set(proc_fired.values()) <= {1}
        n = sum(len(b) for b, _, _ in script.steps)
        assert len(event_fired) >= 1  # the first record's timer is always in the future
        c = driver.counters()["tracker"]
        assert (c["in"], c["late"], c["dead_lettered"], c["out"]) == (n, 0, 0, len(outputs))
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"]


# -- deterministic examples ------------------------------------------------------------


class LastSeen:
    """Emits the previous value of a TTL'd state, then overwrites it."""

    states = (RECENT,)

    def process(self, value: dict[str, Any], ctx: Any) -> list[Any]:
        handle = ctx.state(RECENT)
        previous = handle.get()
        handle.set(value["id"])
        return [previous]

    def on_timer(self, ts_ms: int, ctx: Any) -> list[Any]:
        return []


def last_seen_job() -> Job:
    job = Job("ttl")
    (
        job.source("events", schema="Event", timestamp=lambda e: e["ts"])
        .key_by("by_key", lambda e: e["k"])
        .process("last_seen", LastSeen())
        .sink("out", Json())
    )
    return job


@pytest.mark.parametrize("state", STATES)
def test_value_state_ttl_expires_after_processing_time_without_a_write(state: str) -> None:
    with driving(last_seen_job(), state) as driver:

        def send(ident: int, key: str = "a") -> None:
            driver.send("events", {"k": key, "ts": BASE + ident, "id": ident})

        send(1)
        driver.advance_time(TTL_MS - 1)
        send(2)  # written TTL - 1 ago: still there; writing restarts the clock
        driver.advance_time(TTL_MS - 1)
        send(3)
        driver.advance_time(TTL_MS)
        send(4)  # not written for exactly TTL: expired
        send(5, key="b")  # other keys have their own state
        driver.advance_time(TTL_MS - 1)
        send(6)
        assert driver.output("out") == [None, 1, 2, None, None, 4]


class Countdown:
    """Registers an event-time timer at ``ts + 1000`` for each record; emits on firing."""

    states = ()

    def process(self, value: dict[str, Any], ctx: Any) -> list[Any]:
        ctx.timers.register_event_time(ctx.timestamp_ms + 1000)
        return []

    def on_timer(self, ts_ms: int, ctx: Any) -> list[Any]:
        return [(ctx.key, ts_ms - BASE)]


@pytest.mark.parametrize("state", STATES)
def test_event_timers_fire_once_when_the_watermark_reaches_them(state: str) -> None:
    job = Job("timers")
    (
        job.source("events", schema="Event", timestamp=lambda e: e["ts"])
        .key_by("by_key", lambda e: e["k"])
        .process("countdown", Countdown())
        .sink("out", Json())
    )
    with driving(job, state) as driver:
        driver.send_many("events", [{"k": "a", "ts": BASE}, {"k": "a", "ts": BASE}])
        driver.send("events", {"k": "b", "ts": BASE + 999})
        assert driver.output("out") == []  # watermark 999 < 1000
        driver.send("events", {"k": "b", "ts": BASE + 1000})
        assert driver.output("out") == [("a", 1000)]  # registered twice, fires once
        driver.advance_watermark(BASE + 1999)
        assert driver.output("out") == [("a", 1000), ("b", 1999)]
        driver.advance_watermark(FAR)
        assert driver.output("out") == [("a", 1000), ("b", 1999), ("b", 2000)]


def test_timers_survive_a_restart_on_local_state(tmp_path: Any) -> None:
    """Timers live in the step's store; a task reopened on the same RocksDB folder
    rebuilds its timer index from the stored range of timer keys and fires them."""

    def timers_job() -> Job:
        job = Job("timers-restart")
        (
            job.source("events", schema="Event", timestamp=lambda e: e["ts"])
            .key_by("by_key", lambda e: e["k"])
            .process("countdown", Countdown())
            .sink("out", Json())
        )
        return job

    first = TestDriver(timers_job(), state="rocksdb", state_dir=tmp_path)
    first.send_many("events", [{"k": k, "ts": BASE + i} for i, k in enumerate("abcabc")])
    first.send("events", {"k": "z", "ts": BASE + 1000})  # fires the timer of "a" only
    assert first.output("out") == [("a", 1000)]
    for store in first.task.stores:
        store.checkpoint()
    first.close()

    second = TestDriver(timers_job(), state="rocksdb", state_dir=tmp_path)
    second.task.reindex()
    second.advance_watermark(FAR)
    assert sorted(second.output("out")) == [("a", 1003), ("b", 1001), ("b", 1004),
                                            ("c", 1002), ("c", 1005), ("z", 2000)]
    second.close()
