"""The QoE job against an independent brute-force reference.

The reference below shares no code with the job. From the generated records and the
order in which they are sent it decides which events count (on time and first of
their ``event_id``), replays each playback from the definitions in
``jobs/qoe/playbacks.py`` and ``jobs/qoe/metrics.py``, and recomputes every window
of every group from scratch. Integers must match exactly, ratios and averages
within a relative 1e-9, startup quantiles within the sketch's relative accuracy
(1%) of the exact quantile: the value of rank ``floor(q * (n - 1))`` in sorted order.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import pytest

from connectors.codecs import codec_factory
from jobs.qoe import build
from runtime.generator import Degradation, Generator, GeneratorConfig
from tests.unit.jobs import BACKENDS, Batches, DiskDriver, arrival_batches, run_batches

FLOAT_TOLERANCE = 1e-9
SKETCH_ACCURACY = 0.01
MIN_VALID_MS = 1_000_000_000_000
MAX_FUTURE_MS = 10 * 60_000  # the default skew bound ahead of the processing clock
# The processing clock of the generated run: a day after the traffic starts, so the
# simulated stretch lies behind it.
CLOCK_AFTER_MS = 24 * 3_600_000
MINUTE = 60_000
HOUR = 3_600_000
TIMEOUT_MS = 10 * MINUTE  # the job's default playback timeout
BOUND_MS = 2_000

RANK = [
    "start",
    "play",
    "resume",
    "bitrate_change",
    "heartbeat",
    "seek",
    "pause",
    "rebuffer_start",
    "rebuffer_end",
    "error",
    "stop",
]


# --- the reference ------------------------------------------------------------------


def counted_events(batches: Batches, now_ms: int) -> tuple[list[dict[str, Any]], list[str], int]:
    """(events that count, event ids of excluded copies, bad timestamps).

    The watermark before a batch is the largest valid event time of the previous
    batches minus the bound. A copy counts when it is the first copy of its event id
    to arrive and its event time is after that watermark.
    """
    watermark = None
    arrived: set[str] = set()
    counted, excluded, bad = [], [], 0
    for _, values in batches:
        valid = [v for v in values if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
        bad += len(values) - len(valid)
        for v in valid:
            first = v["event_id"] not in arrived
            arrived.add(v["event_id"])
            if first and (watermark is None or v["event_time_ms"] > watermark):
                counted.append(v)
            else:
                excluded.append(v["event_id"])
        if valid:
            candidate = max(v["event_time_ms"] for v in valid) - BOUND_MS
            watermark = candidate if watermark is None else max(watermark, candidate)
    return counted, excluded, bad


def facts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replay every playback; one fact per event with what the event completes."""
    playbacks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        playbacks[(e["user_id"], e["playback_id"])].append(e)
    out = []
    for (_, playback_id), evs in playbacks.items():
        evs.sort(key=lambda e: (e["event_time_ms"], RANK.index(e["event_type"]), e["event_id"]))
        dims = {k: evs[0][k] for k in ("title_id", "device_type", "country", "cdn")}
        # split where the playback was quiet for longer than the timeout
        runs, run = [], [evs[0]]
        for a, b in zip(evs, evs[1:], strict=False):
            if b["event_time_ms"] - a["event_time_ms"] > TIMEOUT_MS:
                runs.append(run)
                run = []
            run.append(b)
        runs.append(run)
        for run in runs:
            out.extend(replay(run, dims, playback_id))
    return out


def replay(
    run: list[dict[str, Any]], dims: dict[str, str], playback_id: str
) -> list[dict[str, Any]]:
    starts = [e["event_time_ms"] for e in run if e["event_type"] == "start"]
    playing = [e for e in run if e["event_type"] == "play"]
    first_play = playing[0]["event_id"] if playing else None
    out = []
    open_attempt = False
    stall = None
    for i, e in enumerate(run):
        t, kind = e["event_time_ms"], e["event_type"]
        fact = {
            **dims,
            "playback_id": playback_id,
            "ts": t,
            "startup": None,
            "attempts": 0,
            "failures": 0,
            "plays": 0,
            "watch": 0,
            "weighted": 0,
            "rebuffers": 0,
            "stalled": 0,
            "switches": 0,
        }
        if i:
            prev = run[i - 1]
            to = e["seek_from_ms"] if kind == "seek" else e["position_ms"]
            fact["watch"] = max(0, to - prev["position_ms"])
            fact["weighted"] = fact["watch"] * prev["bitrate_kbps"]
        if kind == "start":
            open_attempt = True
        if kind in ("play", "error", "stop") and open_attempt:
            open_attempt = False
            fact["attempts"] = 1
            fact["failures"] = int(kind == "error")
        if e["event_id"] == first_play:
            fact["plays"] = 1
            earlier = [s for s in starts if s <= t]
            if earlier:
                fact["startup"] = t - min(earlier)
        if kind == "rebuffer_start":
            fact["rebuffers"] = 1
            stall = t
        if kind == "rebuffer_end" and stall is not None:
            fact["stalled"] = t - stall
            stall = None
        fact["switches"] = int(kind == "bitrate_change")
        out.append(fact)
    return out


def windows_of(ts: int, kind: str) -> list[int]:
    """Starts of the windows containing ``ts``."""
    if kind == "tumbling_1m":
        return [ts // MINUTE * MINUTE]
    return [
        s for s in range((ts // MINUTE - 4) * MINUTE, ts + 1, MINUTE) if s <= ts < s + 5 * MINUTE
    ]


GROUPS = {
    "title_device_country_cdn": ("title_id", "device_type", "country", "cdn"),
    "cdn": ("cdn",),
}


def reference_metrics(all_facts: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(window kind, group kind, title, device, country, cdn, start) -> metrics."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for f in all_facts:
        for group_kind, dims in GROUPS.items():
            group = tuple(f[d] if d in dims else None for d in GROUPS["title_device_country_cdn"])
            for window_kind in ("tumbling_1m", "hopping_5m"):
                for start in windows_of(f["ts"], window_kind):
                    cells[(window_kind, group_kind, *group, start)].append(f)
    out = {}
    for key, fs in cells.items():
        total = Counter()
        for f in fs:
            total.update(
                {
                    k: f[k]
                    for k in (
                        "attempts",
                        "failures",
                        "plays",
                        "watch",
                        "weighted",
                        "rebuffers",
                        "stalled",
                        "switches",
                    )
                }
            )
        watch, stalled = total["watch"], total["stalled"]
        startups = sorted(f["startup"] for f in fs if f["startup"] is not None)
        out[key] = {
            "plays_started": total["plays"],
            "startups": startups,
            "watch_time_ms": watch,
            "rebuffer_time_ms": stalled,
            "rebuffer_count": total["rebuffers"],
            "rebuffer_ratio": stalled / (watch + stalled) if watch + stalled else 0.0,
            "rebuffers_per_hour": total["rebuffers"] / (watch / HOUR) if watch else 0.0,
            "avg_bitrate_kbps": total["weighted"] / watch if watch else None,
            "bitrate_switches": total["switches"],
            "play_attempts": total["attempts"],
            "play_failures": total["failures"],
            "failure_rate": total["failures"] / total["attempts"] if total["attempts"] else 0.0,
            "concurrent_streams": len({f["playback_id"] for f in fs}),
        }
    return out


def exact_quantile(values: list[int], q: float) -> int:
    return values[math.floor(q * (len(values) - 1))]


def assert_same_metrics(got: list[dict[str, Any]], want: dict[tuple[Any, ...], Any]) -> None:
    by_key = {}
    for r in got:
        key = (
            r["window_kind"],
            r["group_kind"],
            r["title_id"],
            r["device_type"],
            r["country"],
            r["cdn"],
            r["window_start_ms"],
        )
        assert key not in by_key, f"emitted twice: {key}"
        by_key[key] = r
    assert set(by_key) == set(want), (
        sorted(set(by_key) - set(want))[:3],
        sorted(set(want) - set(by_key))[:3],
    )
    for key, expected in want.items():
        actual = dict(by_key[key])
        size = MINUTE if key[0] == "tumbling_1m" else 5 * MINUTE
        assert actual.pop("window_end_ms") == key[-1] + size
        expected = dict(expected)
        startups = expected.pop("startups")
        for q, name in ((0.5, "startup_p50_ms"), (0.9, "startup_p90_ms"), (0.99, "startup_p99_ms")):
            estimate = actual.pop(name)
            if not startups:
                assert estimate is None, (key, name)
            else:
                exact = exact_quantile(startups, q)
                assert abs(estimate - exact) <= SKETCH_ACCURACY * exact + 1e-9, (key, name)
        for name in ("rebuffer_ratio", "rebuffers_per_hour", "avg_bitrate_kbps", "failure_rate"):
            want_value, got_value = expected.pop(name), actual.pop(name)
            if want_value is None:
                assert got_value is None, (key, name)
            else:
                assert got_value == pytest.approx(want_value, rel=FLOAT_TOLERANCE, abs=0), (
                    key,
                    name,
                )
        for name in (
            "window_kind",
            "group_kind",
            "title_id",
            "device_type",
            "country",
            "cdn",
            "window_start_ms",
        ):
            actual.pop(name)
        assert actual == expected, key


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

    counted, excluded, bad = counted_events(batches, config.start_ms + CLOCK_AFTER_MS)
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
