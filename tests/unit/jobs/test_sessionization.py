"""The sessionization job against an independent brute-force reference.

The reference (``tests.reference.sessionization``) shares no code with the job:
from the generated records and the order in which they are sent, it decides which
events are late, rebuilds each (user, device)'s sessions from scratch and
summarizes them straight from the definitions in ``jobs/sessionization/summary.py``.
The job's output, read as a final view (the latest summary per session key, minus
retracted ones), must equal it: integers and lists exactly, the average bitrate
within a relative 1e-9.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import pytest

from connectors.codecs import codec_factory
from jobs.sessionization import build
from runtime.generator import Generator, GeneratorConfig
from runtime.testing import TestDriver
from tests.reference.sessionization import (
    assert_same_sessions,
    reference_lateness,
    reference_sessions,
    summarize,
)
from tests.unit.jobs import BACKENDS, DiskDriver, arrival_batches, run_batches

# The processing clock of the runs below: a day after the traffic starts, so the
# simulated stretch lies behind it (as it does behind a real clock for past traffic).
CLOCK_AFTER_MS = 24 * 3_600_000


# --- reading the job's output -------------------------------------------------------


def final_view(driver: TestDriver) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Latest summary per session key, retracted keys removed.

    Checks on the way that the revisions of each key (summaries and retraction) are
    0, 1, 2, ... and that a retraction is the last word on its key.
    """
    view: dict[tuple[Any, ...], dict[str, Any]] = {}
    revisions: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for v in driver.output("sessions"):
        key = (v["user_id"], v["device_id"], v["session_start_ms"])
        revisions[key].append(v["revision"])
        if key not in view or view[key]["revision"] < v["revision"]:
            view[key] = v
    for v in driver.output("session-retractions"):
        key = (v["user_id"], v["device_id"], v["session_start_ms"])
        revisions[key].append(v["revision"])
        assert view[key]["revision"] < v["revision"], "a retraction follows what it retracts"
        del view[key]
    for key, seen in revisions.items():
        assert sorted(seen) == list(range(len(seen))), (key, seen)
    return view


# --- tests --------------------------------------------------------------------------

# "short": a 15 s gap and 45 s of allowed lateness, so that the generated late events
# re-emit sessions, bridge emitted ones and also miss their sessions entirely.
# "default": the job as deployed (30-minute gap, 5 minutes of lateness, 5 s disorder).
SCENARIOS = {
    "short": (timedelta(seconds=15), timedelta(seconds=45), timedelta(seconds=2)),
    "default": (timedelta(minutes=30), timedelta(minutes=5), timedelta(seconds=5)),
}


def ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("state", BACKENDS)
def test_sessions_match_the_reference(state: str, scenario: str) -> None:
    gap, lateness, bound = SCENARIOS[scenario]
    config = GeneratorConfig(
        seed=23,
        users=200,
        out_of_order_ms=3_000,
        out_of_order_rate=0.1,
        late_rate=0.04,
        late_delay_ms=(5_000, 100_000),
        duplicate_rate=0.03,
        malformed_rate=0.0,
        bad_timestamp_rate=0.002,
    )
    records = Generator(config).take(30_000)
    batches = arrival_batches(records, 40, ("playback", "interactions"))
    if scenario == "default":
        driver = run_batches(build(), batches, state, config.start_ms + CLOCK_AFTER_MS)
    else:
        job = build(gap=gap, allowed_lateness=lateness, max_out_of_order=bound)
        driver = run_batches(job, batches, state, config.start_ms + CLOCK_AFTER_MS)

    on_time, late, bad = reference_lateness(
        batches, bound_ms=ms(bound), reach_ms=ms(gap + lateness),
        now_ms=config.start_ms + CLOCK_AFTER_MS,
    )
    want = reference_sessions(on_time, ms(gap))
    got = final_view(driver)
    assert len(want) > (400 if scenario == "short" else 100)
    assert_same_sessions(got, want)

    # late events: exactly the reference's, and nothing is lost anywhere
    assert Counter(e["event_id"] for e in driver.output("sessions-late-events")) == Counter(
        e["event_id"] for e in late
    )
    assert len(driver.dead_letters()) == bad > 0
    for step, c in driver.counters().items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    if scenario == "short":  # the input exercised lateness, re-emissions and merges
        assert len(late) > 100
        assert sum(v["revision"] > 0 for v in driver.output("sessions")) > 100
        assert len(driver.output("session-retractions")) > 5
    codec = codec_factory()("SessionSummary")  # every output is a valid SessionSummary
    for v in driver.output("sessions"):
        codec.encode(v)
    driver.close()


def test_the_aggregate_merges_in_any_order() -> None:
    from jobs.sessionization.summary import SessionAggregate

    config = GeneratorConfig(
        seed=5,
        users=20,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
        late_rate=0.0,
        duplicate_rate=0.05,
    )
    events = [r.value for r in Generator(config).take(3_000)]
    agg = SessionAggregate()
    whole = agg.create()
    for e in events:
        whole = agg.add(whole, e)
    rng = random.Random(1)
    for _ in range(5):
        shuffled = events[:]
        rng.shuffle(shuffled)
        parts = [agg.create() for _ in range(7)]
        for e in shuffled:
            i = rng.randrange(7)
            parts[i] = agg.add(parts[i], e)
        rng.shuffle(parts)
        merged = parts[0]
        for p in parts[1:]:
            merged = agg.merge(merged, p)
        assert agg.result(merged) == agg.result(whole)


# --- a late event bridges two emitted sessions ----------------------------------------

T0 = 1_735_689_600_000
S = 1_000


def playback_event(
    n: int,
    kind: str,
    t: int,
    pos: int,
    *,
    playback: str = "pb1",
    title: str = "t1",
    bitrate: int = 3_000,
    seek_from: int | None = None,
) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "user_id": "u1",
        "profile_id": "u1-p0",
        "device_id": "u1-d0",
        "device_type": "tv",
        "app_version": "1.0",
        "country": "NL",
        "isp": "isp-1",
        "cdn": "cdn-a",
        "title_id": title,
        "playback_id": playback,
        "event_type": kind,
        "event_time_ms": T0 + t,
        "position_ms": pos,
        "bitrate_kbps": bitrate,
        "buffer_ms": 0,
        "error_code": "E" if kind == "error" else None,
        "seek_from_ms": seek_from,
    }


def interaction_event(n: int, t: int) -> dict[str, Any]:
    return {
        "event_id": f"i{n}",
        "user_id": "u1",
        "profile_id": "u1-p0",
        "device_id": "u1-d0",
        "device_type": "tv",
        "country": "NL",
        "event_type": "impression",
        "event_time_ms": T0 + t,
        "title_id": "t2",
        "genre": "drama",
        "row_name": "top",
        "row_index": 0,
        "rank": 1,
        "search_query": None,
        "rating": None,
    }


@pytest.mark.parametrize("state", BACKENDS)
def test_a_late_event_bridges_two_sessions(state: str) -> None:
    job = build(
        gap=timedelta(seconds=60),
        allowed_lateness=timedelta(seconds=60),
        max_out_of_order=timedelta(0),
    )
    driver = DiskDriver(job, state=state, start_ms=T0)
    first = [
        playback_event(1, "start", 0, 0),
        playback_event(2, "play", 2 * S, 0),
        playback_event(3, "heartbeat", 10 * S, 8_000),
    ]
    second = [
        playback_event(4, "start", 100 * S, 0, playback="pb2", title="t2"),
        playback_event(5, "play", 101 * S, 0, playback="pb2", title="t2", bitrate=1_000),
        playback_event(6, "stop", 110 * S, 9_000, playback="pb2", title="t2", bitrate=1_000),
    ]
    driver.send_many("playback", first + second)
    driver.send("interactions", interaction_event(1, 105 * S))
    driver.advance_watermark(T0 + 175 * S)
    driver.checkpoint()
    emitted = driver.output("sessions")
    assert [(v["session_start_ms"] - T0, v["revision"]) for v in emitted] == [(0, 0), (100 * S, 0)]
    assert emitted[0]["end_reason"] == "abandoned" and emitted[1]["end_reason"] == "stop"

    # 60 s: overlaps [0 s, 70 s) and [100 s, 170 s), still within allowed lateness
    bridge = playback_event(7, "heartbeat", 60 * S, 58_000)
    driver.send("playback", bridge)
    driver.checkpoint()
    emitted = driver.output("sessions")
    retracted = driver.output("session-retractions")
    assert retracted == [
        {
            "retracted": True,
            "user_id": "u1",
            "device_id": "u1-d0",
            "session_start_ms": T0 + 100 * S,
            "session_end_ms": T0 + 110 * S,
            "revision": 1,
        }
    ]
    merged = emitted[-1]
    assert len(emitted) == 3 and merged["revision"] == 1
    assert merged["session_start_ms"] == T0 and merged["session_end_ms"] == T0 + 110 * S
    want = summarize([*first, bridge, *second, interaction_event(1, 105 * S)])
    assert_same_sessions({(T0,): merged}, {(T0,): want})
    assert merged["titles"] == ["t1", "t2"] and merged["plays"] == 2
    assert merged["watch_time_ms"] == 58_000 + 9_000
    assert merged["startup_times_ms"] == [2 * S, 1 * S]
    assert merged["avg_bitrate_kbps"] == pytest.approx((58_000 * 3_000 + 9_000 * 1_000) / 67_000)
    assert merged["end_reason"] == "stop" and merged["event_count"] == 7

    # a late duplicate changes nothing, so nothing is re-emitted
    driver.send("playback", dict(bridge))
    assert len(driver.output("sessions")) == 3
    # 120 s past the merged session's end plus lateness: too late, to the late output
    driver.advance_watermark(T0 + 300 * S)
    driver.send("playback", playback_event(8, "heartbeat", 105 * S, 9_500, playback="pb2"))
    assert [e["event_id"] for e in driver.output("sessions-late-events")] == ["e8"]
    assert len(driver.output("sessions")) == 3
    codec = codec_factory()("SessionSummary")
    for v in driver.output("sessions"):
        codec.encode(v)
    driver.close()


@pytest.mark.parametrize("state", BACKENDS)
def test_a_late_event_just_before_a_session_moves_its_start(state: str) -> None:
    job = build(
        gap=timedelta(seconds=60),
        allowed_lateness=timedelta(seconds=60),
        max_out_of_order=timedelta(0),
        revision_retention=timedelta(hours=1),
    )
    driver = DiskDriver(job, state=state, start_ms=T0)
    driver.send("interactions", interaction_event(1, 100 * S))
    driver.send("playback", playback_event(1, "start", 110 * S, 0))
    driver.advance_watermark(T0 + 175 * S)
    assert [v["session_start_ms"] - T0 for v in driver.output("sessions")] == [100 * S]
    # 60 s: 40 s before the session, within allowed lateness (60 + 60 + 60 > 175)
    driver.send("playback", playback_event(2, "heartbeat", 60 * S, 0, playback="pb0"))
    assert driver.output("session-retractions") == [
        {
            "retracted": True,
            "user_id": "u1",
            "device_id": "u1-d0",
            "session_start_ms": T0 + 100 * S,
            "session_end_ms": T0 + 110 * S,
            "revision": 1,
        }
    ]
    moved = driver.output("sessions")[-1]
    assert (moved["session_start_ms"] - T0, moved["revision"], moved["event_count"]) == (
        60 * S,
        0,
        2,
    )
    # the window state goes once no event can reach the session any more, the revisions
    # after the retention: 2 gaps + lateness + 1 hour after the session's last event
    driver.advance_watermark(T0 + 110 * S + 180 * S + 3_600 * S - 1)
    assert [len(store) for store in driver.task.stores] == [0, 2]  # 1 revision + 1 timer
    driver.advance_watermark(T0 + 110 * S + 180 * S + 3_600 * S)
    assert [len(store) for store in driver.task.stores] == [0, 0]
    driver.close()
