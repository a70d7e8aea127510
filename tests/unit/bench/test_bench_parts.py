"""The pure parts of ``bench/``: workload selection, latency percentiles, output checks.

No broker and no timing: the bench measures, these tests only check its arithmetic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.checks import (
    KeyedReference,
    SessionReference,
    check_keyed,
    check_sessions,
    final_sessions,
    same_session,
)
from bench.impl_flink import steady_figures
from bench.inputs import keyed_events
from bench.runner import Outcome, merge_reports
from bench.scenarios import match_latencies, percentiles
from bench.workloads import WORKLOADS, all_impl_names, select


def test_workloads_are_selected_by_name_in_registry_order() -> None:
    assert [w.name for w in select("")] == list(WORKLOADS)
    assert [w.name for w in select("w7, W2")] == ["W2", "W7"]
    with pytest.raises(ValueError, match="W9"):
        select("W1,W9")


def test_every_workload_has_implementations_with_distinct_names() -> None:
    for w in WORKLOADS.values():
        names = [i.name for i in w.impls]
        assert names and len(names) == len(set(names)), w.name
    assert "shoal-flink" in all_impl_names() and "shoal-2-workers" in all_impl_names()
    # The Flink engine has its own, smaller input: not in W1's million-event run.
    assert "shoal-flink" in [i.name for i in WORKLOADS["W1F"].impls]
    assert "shoal-flink" not in [i.name for i in WORKLOADS["W1"].impls]


def test_flink_steady_rate_counts_from_the_first_commit_to_the_last_before_the_end() -> None:
    # Samples four times a second; commits of 1,000 records a second from t=10 s, the
    # last (to the end of 5,000 records) after a slow final checkpoint at t=20 s.
    samples = [(t / 4, 0) for t in range(40)]
    for i, t in enumerate(range(40, 80)):
        samples.append((t / 4, 1_000 * (1 + i // 4)))
    samples += [(20.0, 5_000), (20.25, 5_000)]
    samples = [(t, min(n, 4_000) if t < 20 else n) for t, n in samples]
    figures = steady_figures(samples, 5_000)
    assert figures == {"startup_s": 10.0, "steady_events_per_s": 1_000}
    assert steady_figures([(0.25, 0), (0.5, 0)], 5_000) == {}
    # One commit only: a startup time, no rate.
    assert steady_figures([(3.0, 5_000), (3.25, 5_000)], 5_000) == {"startup_s": 3.0}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1 .. 100, unsorted
    assert percentiles(values) == {"p50": 50.0, "p99": 99.0}
    assert percentiles([7.0]) == {"p50": 7.0, "p99": 7.0}
    assert percentiles([]) == {}


def test_latencies_lead_back_to_the_produce_time_of_the_reflected_event() -> None:
    produced = {("u1", 1_000): 5_000, ("u2", 2_000): 5_010}
    outputs = [("u1", 1_000, 5_040), ("u2", 2_000, 5_110), ("u3", 3_000, 6_000)]
    assert match_latencies(produced, outputs) == ([40.0, 100.0], 1)


def _summary(user: str, start: int, end: int, revision: int = 0, **kw: object) -> dict:
    return {
        "user_id": user, "device_id": "d", "session_start_ms": start, "session_end_ms": end,
        "avg_bitrate_kbps": 1000.0, "plays": 1, "revision": revision, **kw,
    }  # fmt: skip


def test_final_sessions_keep_the_highest_revision_and_drop_retracted() -> None:
    view, emitted, repeated = final_sessions(
        [_summary("a", 0, 10, 0), _summary("a", 0, 20, 1), _summary("b", 0, 5)],
        [{"user_id": "b", "device_id": "d", "session_start_ms": 0}],
    )
    assert list(view) == [("a", "d", 0)] and view[("a", "d", 0)]["session_end_ms"] == 20
    assert (emitted, repeated) == (3, 1)


def test_session_check_compares_only_sessions_closed_by_the_final_watermark() -> None:
    gap = 100
    want = {k: v for k, v in _summary("a", 0, 10).items() if k not in ("user_id", "device_id")}
    want.pop("revision")
    late = dict(want, session_start_ms=900, session_end_ms=950)
    ref = SessionReference(gap, 500, {("a", "d", 0): want, ("a", "d", 900): late})
    good = {"sessions": [(None, json.dumps(_summary("a", 0, 10)).encode())]}
    verdict = check_sessions(ref, "sessions-json", good)
    assert verdict.correct and verdict.compared == 1
    wrong = {"sessions": [(None, json.dumps(_summary("a", 0, 10, plays=2)).encode())]}
    assert not check_sessions(ref, "sessions-json", wrong).correct
    assert not check_sessions(ref, "sessions-json", {"sessions": []}).correct


def test_same_session_allows_float_rounding_of_the_average_bitrate_only() -> None:
    want = {"plays": 1, "avg_bitrate_kbps": 1000.0}
    assert same_session(want, {"plays": 1, "avg_bitrate_kbps": 1000.0 * (1 + 1e-12)})
    assert not same_session(want, {"plays": 1, "avg_bitrate_kbps": 1001.0})
    assert not same_session(want, {"plays": 2, "avg_bitrate_kbps": 1000.0})


def test_keyed_input_and_check() -> None:
    assert list(keyed_events(3, 2, 100)) == [
        ("k0", 100), ("k1", 101), ("k2", 102), ("k0", 103), ("k1", 104),
    ]  # fmt: skip
    ref = KeyedReference(keys=3, repeats=2)
    rows = [(None, json.dumps({"key": k, "count": 2}).encode()) for k in ("k0", "k1")]
    assert check_keyed(ref, "keyed", {"counts": rows}).correct
    lost = [(None, json.dumps({"key": "k0", "count": 1}).encode()), rows[1]]
    assert not check_keyed(ref, "keyed", {"counts": lost}).correct


def test_reports_of_two_workers_span_first_start_to_last_end() -> None:
    out = Outcome("two")
    merge_reports(
        [
            {
                "records": 60,
                "elapsed_s": 3.0,
                "cpu_measured_s": 2.0,
                "wall_first": 10.0,
                "wall_last": 13.0,
                "outputs": 5,
            },
            {
                "records": 40,
                "elapsed_s": 2.0,
                "cpu_measured_s": 1.0,
                "wall_first": 11.0,
                "wall_last": 15.0,
                "outputs": 7,
            },
        ],  # fmt: skip
        out,
    )
    assert out.records == 100 and out.elapsed_s == 5.0 and out.events_per_s == 20.0
    assert out.cpu_measured_s == 3.0 and out.extra["outputs"] == 12


def test_breakdown_per_event_sums_the_workers_phases() -> None:
    from bench.report import breakdown

    phases = ("fetch", "decode", "operators", "emit", "state", "commit")
    out = Outcome("shoal-memory")
    merge_reports(
        [
            {"records": 60, "elapsed_s": 1.0, "cpu_measured_s": 1.0, "wall_first": 1.0,
             "wall_last": 2.0, **{f"phase_{p}_s": 0.001 * (i + 1) for i, p in enumerate(phases)}},
            {"records": 40, "elapsed_s": 1.0, "cpu_measured_s": 1.0, "wall_first": 1.0,
             "wall_last": 2.0,
             **{f"phase_{p}_s": 0.001 * (i + 1) for i, p in enumerate(phases)}},
        ],  # fmt: skip
        out,
    )
    text = breakdown([out, Outcome("raw", records=100, events_per_s=1.0)])
    # Two workers' 2 ms of decode over 100 records: 40 us per record; total 420.
    assert "| shoal-memory | 20.00 | 40.00 | 60.00 | 80.00 | 100.00 | 120.00 | 420.00 |" in text
    assert "| raw |" not in text  # no counters, no row
    assert breakdown([Outcome("raw", records=100)]) == ""


def test_update_keeps_the_workloads_this_run_did_not_measure(tmp_path: Any) -> None:
    from bench import report

    machine = {"cores": 2, "load_average_before": [0.5], "load_average_after": [0.7]}
    old = {
        "date": "2026-01-01T00:00:00+00:00",
        "machine": machine,
        "config": {"events": 1000, "partitions": 8, "input_records": {"W1": 1000, "W4": 1000}},
        "W1": {"raw": {"events_per_s": 100.0, "correct": True},
               "shoal-memory": {"events_per_s": 80.0, "correct": True}},
        "W4": {"shoal-alo": {"events_per_s": 1.0, "correct": False}},
    }  # fmt: skip
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(old))
    w4 = WORKLOADS["W4"]
    new_w4 = [Outcome("shoal-alo", events_per_s=5.0, correct=True)]
    document: dict[str, Any] = {
        "date": "2026-02-02T00:00:00+00:00",
        "machine": machine,
        "config": {"events": 500, "partitions": 8, "input_records": {"W4": 500}},
        "W4": report.as_json(new_w4),
        "measured": {"W4": "2026-02-02T00:00:00+00:00"},
    }
    sections = report.merge_previous(path, document, [(w4, new_w4, {"events": 500})])
    assert [w.name for w, _, _ in sections] == ["W1", "W4"]
    assert document["W4"]["shoal-alo"]["correct"] is True  # this run's figures win
    assert document["W1"] == old["W1"]
    assert document["config"]["input_records"] == {"W4": 500, "W1": 1000}
    assert document["measured"]["W1"] == old["date"]
    w1_outcomes = sections[0][1]
    assert report.ratios(w1_outcomes)["shoal-memory"] == pytest.approx(0.8)
    text = report.markdown_all(sections, document)
    assert "1,000 input records" in text and "measured 2026-01-01" in text
    assert "500 input records" in text and "measured 2026-02-02" in text
