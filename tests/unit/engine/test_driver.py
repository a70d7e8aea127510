"""Bad input through the test driver: dead letters, error policies, counters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from runtime import (
    ConfigError,
    Job,
    Json,
    RecordError,
    ShoalError,
    UserFunctionError,
    WatermarkStrategy,
    windows,
)
from runtime.aggregates import Count, Sum
from runtime.testing import TestDriver

T0 = 1_700_000_000_000
STATES = ("memory", "rocksdb")


@contextmanager
def driving(job: Job, state: str = "memory") -> Iterator[TestDriver]:
    driver = TestDriver(job, state=state)
    try:
        yield driver
    finally:
        driver.close()


def checked(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("bad"):
        raise ValueError(f"bad record {value['id']}")
    return {**value, "checked": True}


def reconcile(counters: dict[str, dict[str, int]]) -> None:
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
        assert min(c.values()) >= 0, step


def records(*bad_ids: int, n: int = 6, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": i, "k": f"k{i % 2}", "ts": T0 + 1000 * i, "v": i, "bad": i in bad_ids}
        for i in range(start, start + n)
    ]


def map_job(**job_kwargs: Any) -> Job:
    job = Job("dead-letters", **job_kwargs)
    checked_stream = job.source("events", schema="Event", timestamp=lambda e: e["ts"]).map(
        checked, name="check"
    )
    checked_stream.sink("checked", Json())
    (
        checked_stream.key_by("by_key", lambda e: e["k"])
        .window("per_minute", windows.tumbling(timedelta(minutes=1)))
        .aggregate(Count())
        .sink("counts", Json())
    )
    return job


@pytest.mark.parametrize("state", STATES)
def test_failing_map_dead_letters_only_the_failing_records(state: str) -> None:
    with driving(map_job(), state) as driver:
        driver.send_many("events", records(1, 4))
        driver.send_many("events", records(7, start=6))
        assert [v["id"] for v in driver.output("checked")] == [0, 2, 3, 5, 6, 8, 9, 10, 11]
        assert all(v["checked"] for v in driver.output("checked"))
        dead = driver.dead_letters()
        assert [(d.step, d.error_class, d.offset) for d in dead] == [
            ("check", "ValueError", 1),
            ("check", "ValueError", 4),
            ("check", "ValueError", 7),
        ]
        assert [d.error_message for d in dead] == [f"bad record {i}" for i in (1, 4, 7)]
        assert {(d.job, d.topic, d.partition) for d in dead} == {("dead-letters", "events", 0)}
        driver.advance_watermark(T0 + 60_000)
        counts = {v["key"]: v["value"] for v in driver.output("counts")}
        assert counts == {"k0": 5, "k1": 4}  # the dead-lettered 1, 4, 7 are not counted
        c = driver.counters()
        assert (c["events"]["in"], c["events"]["dead_lettered"]) == (12, 0)
        assert (c["check"]["in"], c["check"]["dead_lettered"], c["check"]["out"]) == (12, 3, 9)
        assert c["per_minute"]["in"] == c["per_minute"]["processed"] == 9
        reconcile(c)


def boom(value: Any) -> Any:
    if value.get("bad"):
        raise KeyError("boom")
    return value


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.filter(lambda v: boom(v) is not None, name="step"),
        lambda s: s.flat_map(lambda v: [boom(v)], name="step"),
        lambda s: s.key_by("step", lambda v: boom(v)["k"]),
        lambda s: (
            s.key_by("by_key", lambda v: v["k"])
            .window("step", windows.tumbling(timedelta(minutes=1)))
            .aggregate(Sum(of=lambda v: boom(v)["v"]))
        ),
    ],
    ids=["filter", "flat_map", "key_by", "window_aggregate"],
)
def test_every_step_kind_dead_letters_its_failures(build: Callable[[Any], Any]) -> None:
    job = Job("kinds")
    build(job.source("events", schema="Event", timestamp=lambda e: e["ts"])).sink(
        "out", Json()
    )
    with driving(job) as driver:
        driver.send_many("events", records(2, 3))
        driver.advance_watermark(T0 + 60_000)
        assert [(d.step, d.error_class, d.offset) for d in driver.dead_letters()] == [
            ("step", "KeyError", 2),
            ("step", "KeyError", 3),
        ]
        c = driver.counters()
        assert (c["step"]["in"], c["step"]["dead_lettered"], c["step"]["processed"]) == (6, 2, 4)
        assert driver.output("out")
        reconcile(c)


def stamp_job(future: str = "dead_letter", **job_kwargs: Any) -> Job:
    job = Job("stamps", **job_kwargs)
    job.source(
        "events",
        schema="Event",
        timestamp=lambda e: e.get("ts"),
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=1), future=future),  # type: ignore[arg-type]
    ).sink("out", Json())
    return job


@pytest.mark.parametrize("state", STATES)
def test_absurd_and_missing_timestamps_are_dead_lettered_at_the_source(state: str) -> None:
    now = T0  # the driver's processing clock starts at T0
    bound = 10 * 60 * 1000  # the default skew bound: ten minutes ahead
    values = [
        {"id": 0, "ts": T0},
        {"id": 1, "ts": 5},  # 1970: absurd
        {"id": 2},  # missing
        {"id": 3, "ts": float(T0)},  # not an int
        {"id": 4, "ts": now + bound + 1},  # beyond the bound ahead of the clock
        {"id": 5, "ts": now + bound},  # exactly at the bound: still valid
        {"id": 6, "ts": T0 + 2000},
    ]
    with driving(stamp_job(), state) as driver:
        assert driver.processing_time_ms == now
        driver.send_many("events", values)
        driver.send("events", {"id": 7, "ts": T0 + 3000}, timestamp_ms=999)  # explicit, absurd
        assert [v["id"] for v in driver.output("out")] == [0, 5, 6]
        dead = driver.dead_letters()
        assert [(d.step, d.error_class, d.offset) for d in dead] == [
            ("events", "TimestampError", 1),
            ("events", "TimestampError", 2),
            ("events", "TimestampError", 3),
            ("events", "TimestampError", 4),
            ("events", "TimestampError", 7),
        ]
        # Rejected times do not move event time: only the valid maximum does.
        assert driver.watermark_ms == now + bound - 1000
        assert "ahead of the processing clock" in dead[3].error_message
        c = driver.counters()["events"]
        assert (c["in"], c["dead_lettered"], c["out"]) == (8, 5, 3)
        reconcile(driver.counters())


@pytest.mark.parametrize("state", STATES)
def test_event_times_ahead_of_the_bound_are_clamped_when_the_job_says_so(state: str) -> None:
    bound = 10 * 60 * 1000
    two_hours = 2 * 3600 * 1000
    values = [
        {"id": 0, "ts": T0},
        {"id": 1, "ts": T0 + two_hours},  # a device clock two hours ahead: clamped
        {"id": 2, "ts": 5},  # absurd in the past: still dead-lettered
    ]
    with driving(stamp_job(future="clamp"), state) as driver:
        driver.send_many("events", values)
        records = driver.records("out")
        assert [(v["id"], t) for _, v, t in records] == [(0, T0), (1, T0 + bound)]
        assert records[1][1]["ts"] == T0 + two_hours  # the value itself is unchanged
        assert [d.offset for d in driver.dead_letters()] == [2]
        assert driver.watermark_ms == T0 + bound - 1000  # not two hours ahead
        reconcile(driver.counters())


def test_an_unknown_future_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="future must be one of"):
        WatermarkStrategy.bounded(timedelta(0), future="drop")  # type: ignore[arg-type]


def test_a_failing_timestamp_function_is_dead_lettered_at_the_source() -> None:
    job = Job("stamp-fn")
    job.source("events", schema="Event", timestamp=lambda e: e["ts"]).sink("out", Json())
    with driving(job) as driver:
        driver.send_many("events", [{"id": 0, "ts": T0}, {"id": 1}])
        assert [v["id"] for v in driver.output("out")] == [0]
        assert [(d.step, d.offset) for d in driver.dead_letters()] == [("events", 1)]


def test_fail_policy_raises_naming_the_job_and_step() -> None:
    with driving(map_job(on_error="fail")) as driver:
        driver.send_many("events", records(n=2))
        with pytest.raises(UserFunctionError) as info:
            driver.send_many("events", records(3, n=2, start=2))
        assert isinstance(info.value, ShoalError)
        message = str(info.value)
        assert "'dead-letters'" in message and "'check'" in message
        assert "ValueError" in message and "bad record 3" in message
        assert "events[0]@3" in message
        assert isinstance(info.value.__cause__, ValueError)
        assert driver.dead_letters() == []


def test_fail_policy_on_a_bad_timestamp_raises_a_record_error() -> None:
    with driving(stamp_job(on_error="fail")) as driver:
        with pytest.raises(RecordError) as info:
            driver.send("events", {"id": 0, "ts": 12})
        assert isinstance(info.value, ShoalError)
        assert "'stamps'" in str(info.value) and "'events'" in str(info.value)


def test_skip_policy_counts_but_keeps_no_dead_letters() -> None:
    with driving(map_job(on_error="skip")) as driver:
        driver.send_many("events", records(0, 5))
        assert len(driver.output("checked")) == 4
        assert driver.dead_letters() == []
        assert driver.counters()["check"]["dead_lettered"] == 2


def test_unknown_source_or_sink_is_a_config_error() -> None:
    with driving(map_job()) as driver:
        with pytest.raises(ConfigError, match="no source 'nope'"):
            driver.send("nope", {})
        with pytest.raises(ConfigError, match="no sink 'nope'"):
            driver.output("nope")
        with pytest.raises(ConfigError, match="no window step 'check'"):
            driver.late("check")


def playback(event_time_ms: int) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "user_id": "u1",
        "profile_id": "p1",
        "device_id": "d1",
        "device_type": "tv",
        "app_version": "1.0",
        "country": "NL",
        "isp": "isp",
        "cdn": "cdn",
        "title_id": "t1",
        "playback_id": "pb1",
        "event_type": "start",
        "event_time_ms": event_time_ms,
        "position_ms": 0,
        "bitrate_kbps": 3000,
        "buffer_ms": 0,
        "error_code": None,
        "seek_from_ms": None,
    }


@pytest.mark.parametrize("state", STATES)
def test_send_raw_garbage_is_a_decode_error_dead_letter(state: str) -> None:
    from connectors.codecs import codec_for_schema

    job = Job("raw")
    job.source("playback", schema="PlaybackEvent", timestamp=lambda e: e["event_time_ms"]).sink(
        "out", Json()
    )
    good = codec_for_schema("PlaybackEvent").encode(playback(T0))
    with driving(job, state) as driver:
        driver.send_raw("playback", good, key=b"u1")
        driver.send_raw("playback", b"\x00\x01garbage", key=b"u2")
        driver.send_raw("playback", good[:-3], key=b"u3")  # truncated body
        assert [v["event_time_ms"] for v in driver.output("out")] == [T0]
        dead = driver.dead_letters()
        assert [(d.step, d.error_class, d.offset, d.key) for d in dead] == [
            ("playback", "DecodeError", 1, b"u2"),
            ("playback", "DecodeError", 2, b"u3"),
        ]
        assert dead[0].value == b"\x00\x01garbage"
        assert dead[0].topic == "playback" and dead[0].job == "raw"
        c = driver.counters()["playback"]
        assert (c["in"], c["dead_lettered"], c["out"]) == (3, 2, 1)
