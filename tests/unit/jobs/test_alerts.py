"""QoE alert rules: the text form, and the alert job on crafted QoeMetric sequences.

The job runs in the test driver on both state backends; a brute-force reference
(``tests.reference.alerts``: a look-back over each group's whole series, written
independently of the job's counters) checks random sequences.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from jobs.qoe.alerts import SINK, SOURCE, alert_id, build_alerts
from jobs.qoe.alerts_rules import Rule, RuleSyntaxError, parse_rule, parse_rules
from runtime import ConfigError
from runtime.testing import TestDriver
from tests.reference.alerts import lookback_alerts

T0 = 1_735_689_600_000
MIN = 60_000
EXAMPLE = (
    "rebuffer_ratio > 0.02 for 3 windows where plays_started >= 50 group by cdn, country "
    "resolve < 0.01 cooldown 10m"
)


def metric(
    k: int, *, cdn: str = "cdn-a", country: str | None = None, title: str | None = None,
    device: str | None = None, kind: str = "tumbling_1m", width: int = 1, **values: Any,
) -> dict[str, Any]:  # fmt: skip
    """A QoeMetric of window ``k`` (minutes after T0); group kind from the dimensions given."""
    group_kind = "cdn" if title is None else "title_device_country_cdn"
    rec: dict[str, Any] = {
        "window_start_ms": T0 + k * MIN, "window_end_ms": T0 + (k + width) * MIN,
        "window_kind": kind, "group_kind": group_kind, "title_id": title,
        "device_type": device, "country": country, "cdn": cdn, "plays_started": 100,
        "startup_p50_ms": 800.0, "startup_p90_ms": 1500.0, "startup_p99_ms": 3000.0,
        "watch_time_ms": 1_000_000, "rebuffer_time_ms": 0, "rebuffer_count": 0,
        "rebuffer_ratio": 0.0, "rebuffers_per_hour": 0.0, "avg_bitrate_kbps": 3000.0,
        "bitrate_switches": 0, "play_attempts": 100, "play_failures": 0, "failure_rate": 0.0,
        "concurrent_streams": 100,
    }  # fmt: skip
    rec.update(values)
    return rec


@pytest.fixture(params=["memory", "rocksdb"])
def state(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(
    rules: list[Rule] | str, batches: list[list[dict[str, Any]]], state: str
) -> list[dict[str, Any]]:
    """Send each batch (one window's records), then close every window; return the alerts."""
    parsed = parse_rules(rules) if isinstance(rules, str) else rules
    driver = TestDriver(build_alerts(parsed), state=state, start_ms=T0 + 10 * 24 * 3_600_000)
    try:
        for batch in batches:
            driver.send_many(SOURCE, batch)
        last = max(r["window_end_ms"] for b in batches for r in b)
        driver.advance_watermark(last + 1)
        return driver.output(SINK)
    finally:
        driver.close()


CDN_RULE = (
    "r: rebuffer_ratio > 0.02 for 3 windows where plays_started >= 50 group by cdn resolve < 0.01"
)


def series(ratios: list[float | None], **kw: Any) -> list[list[dict[str, Any]]]:
    """One window per ratio (None: no record for that window)."""
    return [[metric(k, rebuffer_ratio=r, **kw)] for k, r in enumerate(ratios) if r is not None]


# -- the text form -------------------------------------------------------------------


def test_text_form_equals_constructed_rule() -> None:
    rule = parse_rule(EXAMPLE, name="cdn_country_rebuffering")
    assert rule == Rule(
        "cdn_country_rebuffering", metric="rebuffer_ratio", fire_above=0.02, resolve_below=0.01,
        for_windows=3, where_min={"plays_started": 50}, group_by=("cdn", "country"),
        cooldown=timedelta(minutes=10),
    )  # fmt: skip
    assert rule.group_kind == "title_device_country_cdn" and rule.rolls_up
    other = parse_rule(
        "slow: avg_bitrate_kbps < 1500 resolve > 2000 for 2 windows where play_attempts >= 5 "
        "and plays_started >= 10 on hopping_5m cooldown 90s GROUP BY cdn"
    )
    assert (other.name, other.fire_below, other.resolve_above, other.resolve_windows) == (
        "slow", 1500.0, 2000.0, 2,
    )  # fmt: skip
    assert other.where_min == {"play_attempts": 5.0, "plays_started": 10.0}
    assert other.window_kind == "hopping_5m" and other.cooldown == timedelta(seconds=90)
    assert other.group_kind == "cdn" and not other.rolls_up
    assert parse_rule("failure_rate > 0.1").name == "failure_rate_cdn"


@pytest.mark.parametrize(
    "text,message",
    [
        ("rebuffer_ratio >> 0.02", "expected a threshold"),
        ("rebuffer_ratio > 0.02 for x windows", "whole number of windows"),
        ("rebuffer_ratio > 0.02 for 3", "expected 'windows'"),
        ("rebuffer_ratio > 0.02 resolve > 0.01", "resolves with '<'"),
        ("rebuffer_ratio > 0.02 group by cdn group by country", "given twice"),
        ("rebuffer_ratio > 0.02 cooldown 10", "duration"),
        ("__import__('os').system('true') > 1", "unexpected text"),
        ("rebuffer_ratio > 0.02 where plays_started > 5", "expected '>='"),
        ("rebuffer_ratio > 0.02 or 1", "expected a clause"),
    ],
)
def test_bad_text_is_a_syntax_error_naming_the_place(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError, match=message) as info:
        parse_rule(text)
    assert "<here>" in str(info.value) and "column" in str(info.value)


@pytest.mark.parametrize(
    "text,message",
    [
        ("bogus_metric > 1", "unknown metric"),
        ("rebuffer_ratio > 0.02 resolve < 0.03", "must not be above"),
        ("startup_p90_ms > 2000 group by cdn, country", "cannot be rolled up"),
        ("rebuffer_ratio > 0.02 group by isp", "group_by"),
        ("rebuffer_ratio > 0.02 where bogus >= 1", "unknown where"),
    ],
)
def test_invalid_rules_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rule(text)


def test_rule_files_have_unique_names_and_report_the_line() -> None:
    with pytest.raises(ConfigError, match="unique"):
        parse_rules("a: rebuffer_ratio > 1\na: failure_rate > 1\n")
    with pytest.raises(RuleSyntaxError, match="line 3"):
        parse_rules("# comment\na: rebuffer_ratio > 1\nb: failure_rate >\n")


# -- the job -------------------------------------------------------------------------


def test_fires_once_stays_quiet_then_resolves(state: str) -> None:
    alerts = run(CDN_RULE, series([0.0, 0.03, 0.05, 0.04, 0.06, 0.05, 0.005, 0.0]), state)
    assert [(a["state"], a["window_end_ms"]) for a in alerts] == [
        ("fired", T0 + 4 * MIN), ("resolved", T0 + 7 * MIN),
    ]  # fmt: skip
    fired, resolved = alerts
    assert (
        fired["alert_id"] == resolved["alert_id"] == alert_id("r", {"cdn": "cdn-a"}, T0 + 4 * MIN)
    )
    assert fired["group"] == {"cdn": "cdn-a"} and fired["metric"] == "rebuffer_ratio"
    assert (fired["value"], fired["threshold"]) == (0.04, 0.02)
    assert (resolved["value"], resolved["threshold"]) == (0.005, 0.01)
    assert resolved["incident_started_ms"] == fired["incident_started_ms"] == T0 + 4 * MIN
    assert all(a["emitted_ms"] >= a["window_end_ms"] for a in alerts)


def test_hysteresis_holds_between_thresholds_and_flapping_does_not_fire(state: str) -> None:
    # flapping: never 3 breaching windows in a row
    flapping = [0.03, 0.03, 0.015, 0.03, 0.03, 0.0, 0.03, 0.03, 0.019]
    assert run(CDN_RULE, series(flapping), state) == []
    # firing, then between the thresholds (0.01 .. 0.02) for a long time: still firing
    held = [0.03, 0.03, 0.03, 0.015, 0.012, 0.019, 0.011, 0.03, 0.015, 0.009]
    alerts = run(CDN_RULE, series(held), state)
    assert [(a["state"], a["window_end_ms"]) for a in alerts] == [
        ("fired", T0 + 3 * MIN), ("resolved", T0 + 10 * MIN),
    ]  # fmt: skip


def test_where_minimum_and_gaps_break_the_streak(state: str) -> None:
    few = [[metric(k, rebuffer_ratio=0.05, plays_started=10 if k == 2 else 100)] for k in range(6)]
    alerts = run(CDN_RULE, few, state)
    assert [a["window_end_ms"] for a in alerts] == [T0 + 6 * MIN]  # windows 3, 4 and 5
    # a missing window (no record at all) restarts the count too
    gap = series([0.05, 0.05, None, 0.05, 0.05, 0.05])
    assert [a["window_end_ms"] for a in run(CDN_RULE, gap, state)] == [T0 + 6 * MIN]


def test_cooldown_delays_the_next_incident(state: str) -> None:
    rules = CDN_RULE + " cooldown 5m"
    ratios = [0.05, 0.05, 0.05, 0.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.0, 0.05, 0.05, 0.05]
    alerts = run(rules, series(ratios), state)
    # fired at end 3, resolved at end 4: quiet until end 9; the breach that is long
    # enough at end 7 waits, and fires at end 9. Resolved at end 11, the breach at
    # end 14 is inside the next cooldown (until 16) and the series ends.
    assert [(a["state"], (a["window_end_ms"] - T0) // MIN) for a in alerts] == [
        ("fired", 3), ("resolved", 4), ("fired", 9), ("resolved", 11),
    ]  # fmt: skip
    ids = [a["alert_id"] for a in alerts]
    assert ids[0] == ids[1] and ids[2] == ids[3] and len(set(ids)) == 2


def test_rolls_up_the_grain_to_cdn_and_country(state: str) -> None:
    rule = parse_rule(
        EXAMPLE.replace("cooldown 10m", "for 1 windows").replace("for 3 windows ", ""), name="cc"
    )
    assert rule.for_windows == 1 and rule.resolve_windows == 1

    def window(k: int, stalled_us: int) -> list[dict[str, Any]]:
        # two titles in US on cdn-a: 30 plays each (60 >= 50 together), and one in GB
        return [
            metric(k, title="t1", device="tv", country="US", plays_started=30,
                   watch_time_ms=900_000, rebuffer_time_ms=stalled_us, avg_bitrate_kbps=2000.0),
            metric(k, title="t2", device="tv", country="US", plays_started=30,
                   watch_time_ms=100_000, rebuffer_time_ms=stalled_us, avg_bitrate_kbps=4000.0),
            metric(k, title="t1", device="tv", country="GB", plays_started=30,
                   watch_time_ms=100_000, rebuffer_time_ms=50_000),
        ]  # fmt: skip

    # stalls of 15 s per title in US: 30 / (1000 + 30) > 0.02; then 4 s each: 8/1008 < 0.01
    # window 0 arrives twice (a replayed input): GB would reach 60 plays if it counted twice
    batches = [window(0, 15_000), window(0, 15_000), window(1, 15_000), window(2, 4_000)]
    alerts = run([rule], batches, state)
    assert [(a["state"], a["group"]) for a in alerts] == [
        ("fired", {"cdn": "cdn-a", "country": "US"}),
        ("resolved", {"cdn": "cdn-a", "country": "US"}),
    ]  # GB has 30 plays only: its windows never count
    assert alerts[0]["value"] == pytest.approx(30_000 / 1_030_000)
    assert alerts[1]["value"] == pytest.approx(8_000 / 1_008_000)


def test_late_records_are_ignored_and_replays_count_once(state: str) -> None:
    batches = series([0.05, 0.05, 0.0])
    batches.insert(2, [metric(0, rebuffer_ratio=0.05)])  # window 0 again, after it was evaluated
    batches.insert(1, [metric(0, rebuffer_ratio=0.05)])  # replayed before it was evaluated
    alerts = run(CDN_RULE.replace("3 windows", "2 windows"), batches, state)
    assert [(a["state"], (a["window_end_ms"] - T0) // MIN) for a in alerts] == [
        ("fired", 2), ("resolved", 3),
    ]  # fmt: skip


def test_below_rules_and_records_of_other_kinds(state: str) -> None:
    rule = "low: avg_bitrate_kbps < 1500 for 2 windows resolve > 2000 group by cdn"
    batches = [
        [metric(k, avg_bitrate_kbps=v),
         metric(k - 4, kind="hopping_5m", width=5, avg_bitrate_kbps=1.0),
         metric(k, cdn="cdn-b", title="t", device="tv", country="US", avg_bitrate_kbps=1.0)]
        for k, v in enumerate([1000.0, 1400.0, 1800.0, 2500.0, None])
    ]  # fmt: skip
    alerts = run(rule, batches, state)
    assert [(a["state"], (a["window_end_ms"] - T0) // MIN) for a in alerts] == [
        ("fired", 2), ("resolved", 4),
    ]  # fmt: skip
    assert {a["group"]["cdn"] for a in alerts} == {"cdn-a"}


def test_groups_are_independent_and_ids_are_stable(state: str) -> None:
    batches = [
        [metric(k, cdn="cdn-a", rebuffer_ratio=a), metric(k, cdn="cdn-b", rebuffer_ratio=b)]
        for k, (a, b) in enumerate([(0.05, 0.0), (0.05, 0.05), (0.05, 0.05), (0.0, 0.05)])
    ]
    first = run(CDN_RULE, batches, state)
    again = run(CDN_RULE, batches, state)
    assert first == again
    assert [(a["group"]["cdn"], a["state"]) for a in first] == [
        ("cdn-a", "fired"), ("cdn-a", "resolved"), ("cdn-b", "fired"),
    ]  # fmt: skip


# -- against a brute-force reference -------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_series_match_the_reference(state: str, seed: int) -> None:
    rng = random.Random(seed)
    rule = parse_rule(
        "rr: rebuffer_ratio > 0.02 for 3 windows where plays_started >= 50 group by cdn "
        "resolve < 0.01 for 2 windows cooldown 4m"
    )
    windows = []
    for k in range(400):
        if rng.random() < 0.05:
            continue  # no traffic in this window
        level = 0.03 if (k // 25) % 2 else 0.005  # degraded stretches
        value = max(0.0, rng.gauss(level, 0.01))
        windows.append((T0 + k * MIN, T0 + (k + 1) * MIN, value, rng.choice([30, 80, 120, 200])))
    batches = [
        [metric((s - T0) // MIN, cdn="c", rebuffer_ratio=v, plays_started=p)]
        for s, e, v, p in windows
    ]
    got = run([rule], batches, state)
    want = lookback_alerts(rule, windows)
    assert len(want) >= 6 and sum(1 for w in want if w[0] == "fired") >= 3
    assert [(a["state"], a["window_end_ms"], a["alert_id"]) for a in got] == want


@pytest.mark.parametrize("phase_s", [0, 15, 30, 40, 50])
def test_demo_rule_fires_on_the_scripted_incident_whatever_the_start_phase(phase_s: int) -> None:
    """``make demo`` starts at any second of a minute; its incident must fire either way.

    The demo's generator (seed 1, 1,000 viewers, cdn-b degraded from minute 5, ten
    minutes of simulated past) through the real QoE job and the demo alert job. Window
    boundaries fall on the minute, so the start phase changes what each window holds;
    with a minimum of three plays per window, starts 30-45 s into a minute did not fire
    before the demo had caught up with the wall clock.
    """
    from jobs.qoe.alerts import demo_alerts_job
    from jobs.qoe.job import job as qoe
    from runtime.generator import Degradation, Generator, GeneratorConfig

    origin = 1_796_000_000_000 - 1_796_000_000_000 % MIN + phase_s * 1000
    caught_up = origin + 10 * MIN  # where the demo's lookback of ten minutes ends
    config = GeneratorConfig(
        seed=1,
        users=1000,
        start_ms=origin,
        degradations=(Degradation("cdn-b", 5 * MIN, 20 * MIN),),
    )
    values = []
    for r in Generator(config):
        if r.stream != "playback" or r.corrupt is not None or r.label == "bad_timestamp":
            continue
        t = r.value["event_time_ms"]
        if t > caught_up + MIN:  # past the out-of-order spread of the generator
            break
        if t <= caught_up:
            values.append(r.value)
    metrics = TestDriver(qoe, start_ms=origin)
    for i in range(0, len(values), 500):
        metrics.send_many("playback", values[i : i + 500])
    alerts = TestDriver(demo_alerts_job, start_ms=origin)
    alerts.send_many(SOURCE, metrics.output("qoe-metrics"))
    fired = [a for a in alerts.output(SINK) if a["state"] == "fired"]
    assert [a["group"] for a in fired] == [{"cdn": "cdn-b"}], fired
    assert origin + 5 * MIN < fired[0]["window_end_ms"] <= caught_up
