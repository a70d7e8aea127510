"""The QoE job against an independent brute-force reference.

The reference (``tests.reference.qoe``) shares no code with the job. From the
generated records and the order in which they are sent it decides which events
count (on time and first of their ``event_id``), replays each playback from the
definitions in ``jobs/qoe/playbacks.py`` and ``jobs/qoe/metrics.py``, and
recomputes every window of every group from scratch. Integers must match exactly,
ratios and averages within a relative 1e-9, startup quantiles within the sketch's
relative accuracy (1%) of the exact quantile: the value of rank
``floor(q * (n - 1))`` in sorted order.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from connectors.codecs import codec_factory
from jobs.qoe import build
from runtime.generator import Degradation, Generator, GeneratorConfig
from tests.reference.qoe import (
    GROUPS,
    HOUR,
    MINUTE,
    SKETCH_ACCURACY,
    assert_same_metrics,
    counted_events,
    facts,
    reference_metrics,
)
from tests.unit.jobs import BACKENDS, DiskDriver, arrival_batches, run_batches

# The processing clock of the generated run: a day after the traffic starts, so the
# simulated stretch lies behind it.
CLOCK_AFTER_MS = 24 * 3_600_000
BOUND_MS = 2_000


# --- tests --------------------------------------------------------------------------


@pytest.mark.parametrize("state", BACKENDS)
def test_qoe_matches_the_reference(state: str) -> None:
    config = GeneratorConfig(
        seed=31,
        users=250,
        out_of_order_ms=3_000,
        out_of_order_rate=0.1,
        late_rate=0.02,
        late_delay_ms=(1_000, 30_000),
        duplicate_rate=0.03,
        malformed_rate=0.0,
        bad_timestamp_rate=0.002,
        degradations=(Degradation("cdn-b", 5 * MINUTE, 15 * MINUTE),),
    )
    records = Generator(config).take(28_000)
    batches = arrival_batches(records, 50, ("playback",))
    job = build(max_out_of_order=timedelta(milliseconds=BOUND_MS))
    driver = run_batches(job, batches, state, config.start_ms + CLOCK_AFTER_MS)

    counted, excluded, bad = counted_events(batches, config.start_ms + CLOCK_AFTER_MS, BOUND_MS)
    want = reference_metrics(facts(counted))
    got = driver.output("qoe-metrics")
    assert len(want) > 2_000
    assert_same_metrics(got, want)

    excluded_out = driver.output("qoe-excluded-events")
    assert Counter(r["event"]["event_id"] for r in excluded_out) == Counter(excluded)
    reasons = Counter(r["excluded"] for r in excluded_out)
    assert reasons["late"] > 50 and reasons["duplicate"] > 50
    assert len(driver.dead_letters()) == bad > 0
    for step, c in driver.counters().items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step
    # the input exercised every metric; every output is a valid QoeMetric
    assert sum(r["play_failures"] for r in got) > 0 and sum(r["rebuffer_time_ms"] for r in got) > 0
    assert {(r["window_kind"], r["group_kind"]) for r in got} == {
        (w, g) for w in ("tumbling_1m", "hopping_5m") for g in GROUPS
    }
    codec = codec_factory()("QoeMetric")
    for r in got:
        codec.encode(r)
    driver.close()


# --- one playback by hand -----------------------------------------------------------

T0 = 1_735_689_600_000  # a minute boundary
CLOCK = T0 + 24 * 3_600_000  # the processing clock: every event time lies behind it
S = 1_000


def event(
    n: int,
    kind: str,
    t: int,
    pos: int,
    *,
    playback: str = "pb1",
    bitrate: int = 3_000,
    seek_from: int | None = None,
    cdn: str = "cdn-a",
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
        "cdn": cdn,
        "title_id": "t1",
        "playback_id": playback,
        "event_type": kind,
        "event_time_ms": T0 + t,
        "position_ms": pos,
        "bitrate_kbps": bitrate,
        "buffer_ms": 0,
        "error_code": "E" if kind == "error" else None,
        "seek_from_ms": seek_from,
    }


@pytest.mark.parametrize("state", BACKENDS)
def test_one_minute_of_two_playbacks(state: str) -> None:
    driver = DiskDriver(build(max_out_of_order=timedelta(0)), state=state, start_ms=CLOCK)
    driver.send_many(
        "playback",
        [
            event(1, "start", 0, 0),
            event(2, "play", 1_500, 0),
            event(3, "heartbeat", 10 * S, 8_500),
            event(4, "rebuffer_start", 15 * S, 13_500),
            event(5, "rebuffer_end", 17 * S, 13_500),
            event(6, "bitrate_change", 20 * S, 16_500, bitrate=1_500),
            event(7, "seek", 30 * S, 60_000, bitrate=1_500, seek_from=26_500),
            event(8, "heartbeat", 40 * S, 70_000, bitrate=1_500),
            event(9, "start", 41 * S, 0, playback="pb2"),
            event(10, "error", 43 * S, 0, playback="pb2"),
        ],
    )
    driver.send("playback", event(11, "stop", 50 * S, 80_000, bitrate=1_500))
    driver.send("playback", event(3, "heartbeat", 10 * S, 8_500))  # a duplicate
    driver.send("playback", event(12, "heartbeat", 20 * S, 1))  # late: behind the watermark
    driver.checkpoint()
    driver.advance_watermark(T0 + 10 * MINUTE)
    rows = {
        (r["window_kind"], r["group_kind"], r["window_start_ms"] - T0): r
        for r in driver.output("qoe-metrics")
    }
    assert len(rows) == 2 * (1 + 5)  # per group: 1 tumbling and 5 hopping windows
    minute = rows[("tumbling_1m", "cdn", 0)]
    watch = 8_500 + 5_000 + 3_000 + 10_000 + 10_000 + 10_000  # the seek skips 26.5 s -> 60 s
    assert minute == {
        "window_start_ms": T0,
        "window_end_ms": T0 + MINUTE,
        "window_kind": "tumbling_1m",
        "group_kind": "cdn",
        "title_id": None,
        "device_type": None,
        "country": None,
        "cdn": "cdn-a",
        "plays_started": 1,
        "startup_p50_ms": pytest.approx(1_500, rel=SKETCH_ACCURACY),
        "startup_p90_ms": pytest.approx(1_500, rel=SKETCH_ACCURACY),
        "startup_p99_ms": pytest.approx(1_500, rel=SKETCH_ACCURACY),
        "watch_time_ms": watch,
        "rebuffer_time_ms": 2_000,
        "rebuffer_count": 1,
        "rebuffer_ratio": pytest.approx(2_000 / (watch + 2_000)),
        "rebuffers_per_hour": pytest.approx(HOUR / watch),
        "avg_bitrate_kbps": pytest.approx((16_500 * 3_000 + 30_000 * 1_500) / watch),
        "bitrate_switches": 1,
        "play_attempts": 2,
        "play_failures": 1,
        "failure_rate": 0.5,
        "concurrent_streams": 2,
    }
    by_title = rows[("tumbling_1m", "title_device_country_cdn", 0)]
    assert (by_title["title_id"], by_title["device_type"], by_title["country"]) == (
        "t1",
        "tv",
        "NL",
    )
    assert {k: by_title[k] for k in minute if k.endswith("_ms") and "startup" not in k} == {
        k: minute[k] for k in minute if k.endswith("_ms") and "startup" not in k
    }
    for start in range(-4 * MINUTE, MINUTE, MINUTE):
        assert rows[("hopping_5m", "cdn", start)]["watch_time_ms"] == watch
    excluded = driver.output("qoe-excluded-events")
    assert [(r["excluded"], r["event"]["event_id"]) for r in excluded] == [
        ("duplicate", "e3"),
        ("late", "e12"),
    ]
    driver.close()


@pytest.mark.parametrize("state", BACKENDS)
def test_a_playback_quiet_past_the_timeout_starts_over(state: str) -> None:
    driver = DiskDriver(build(max_out_of_order=timedelta(0)), state=state, start_ms=CLOCK)
    driver.send_many(
        "playback",
        [
            event(1, "start", 0, 0),
            event(2, "play", 1 * S, 0),
            event(3, "heartbeat", 10 * S, 9_000),
            event(4, "heartbeat", 11 * MINUTE + 30 * S, 20_000),  # 11 min 20 s later
            event(5, "heartbeat", 11 * MINUTE + 40 * S, 30_000),
        ],
    )
    driver.advance_watermark(T0 + 30 * MINUTE)
    watch = {
        r["window_start_ms"] - T0: r["watch_time_ms"]
        for r in driver.output("qoe-metrics")
        if r["window_kind"] == "tumbling_1m" and r["group_kind"] == "cdn"
    }
    assert watch == {0: 9_000, 11 * MINUTE: 10_000}  # no advance across the reset
    # every playback's state is dropped once it has been quiet for the timeout
    assert len(driver.task.stores[0]) == 0
    driver.close()
