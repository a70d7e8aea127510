"""The personalization job against an independent brute-force reference, on both backends.

The reference (``tests.reference.personalization.EmissionReference``) keeps every
contributing event of a user as ``(amount, t, title, genre)`` and recomputes, at
each point where the job may emit, the decayed sums
``sum amount * 2**(-(T - t) / half_life)`` from scratch, the model's features and
score of every catalogue title, the top N, and the emission rule. Scores and
affinities must match within ``TOL`` (relative to ``max(1, |value|)``).
"""

from __future__ import annotations

import ast
import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs.personalization import Catalogue, CatalogueTitle, Model, build
from jobs.personalization.train import TrainConfig, shipped_catalogue, train
from runtime import ConfigError
from runtime.generator import Generator, GeneratorConfig, catalogue
from runtime.testing import TestDriver
from tests.reference.personalization import (
    GAP_MS,
    HALF_LIFE_MS,
    MIN_CHANGE,
    TOP_N,
    EmissionReference,
)

TOL = 1e-9
SINK = "personalization-scores"
START = 1_735_689_600_000
# The drivers' processing clock: a day after START, so every event time of a test lies
# behind it (event times beyond the skew bound ahead of the clock are dead-lettered).
CLOCK = START + 24 * 3_600_000

def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(b))


def assert_matches(
    got: list[dict[str, Any]], want: dict[str, list[dict[str, Any]]], version: str
) -> None:
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in got:
        by_user[r["user_id"]].append(r)
    assert by_user.keys() == want.keys()
    for uid, records in by_user.items():
        expected = want[uid]
        assert len(records) == len(expected), uid
        for r, w in zip(records, expected, strict=True):
            assert r["model_version"] == version
            assert r["updated_ms"] == w["updated_ms"]
            assert [x["title_id"] for x in r["top_titles"]] == w["ids"], (uid, r["updated_ms"])
            assert all(
                _close(x["score"], s) for x, s in zip(r["top_titles"], w["scores"], strict=True)
            )
            assert r["genre_affinity"].keys() == w["affinity"].keys()
            assert all(_close(v, w["affinity"][g]) for g, v in r["genre_affinity"].items())


def _job(cat: Catalogue, min_change: float = MIN_CHANGE) -> Any:
    return build(
        half_life=timedelta(milliseconds=HALF_LIFE_MS), top_n=TOP_N, catalogue=cat,
        abandon_after=timedelta(milliseconds=GAP_MS), min_change=min_change,
    )  # fmt: skip


@pytest.fixture(params=["memory", "rocksdb"])
def state(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_generated_traffic_matches_reference(state: str) -> None:
    config = GeneratorConfig(
        seed=23, users=40, out_of_order_rate=0.05, late_rate=0.01, late_delay_ms=(5_000, 40_000),
        duplicate_rate=0.03, malformed_rate=0.0, bad_timestamp_rate=0.0,
    )  # fmt: skip
    records = Generator(config).take(8_000)
    cat = Catalogue.of(catalogue(config))
    job = _job(cat)
    ref = EmissionReference(cat, Model.load())
    # The processing clock stands at the end of the simulated stretch: the generator's
    # time runs ahead of any wall clock, and event times beyond the source's skew bound
    # ahead of the processing clock would be dead-lettered.
    end_ms = max(r.value["event_time_ms"] for r in records)
    driver = TestDriver(job, state=state, start_ms=end_ms)
    try:
        for i in range(0, len(records), 60):
            chunk = records[i : i + 60]
            for stream in ("playback", "interactions"):
                values = [r.value for r in chunk if r.stream == stream]
                if values:
                    driver.send_many(stream, values)
                    for v in values:
                        ref.receive(stream, v)
                    ref.watermark(driver.watermark_ms)
        driver.advance_watermark(records[-1].value["event_time_ms"] + 2 * GAP_MS)
        ref.watermark(driver.watermark_ms)
        got = driver.output(SINK)
        counters = driver.counters()["scores"]
    finally:
        driver.close()
    labels = {r.label for r in records}
    assert {"out_of_order", "late", "duplicate"} <= labels
    # every kind of emission happened: by interactions, by plays and by abandonment
    assert len(got) > 500
    assert sum(p["declared"] is not None for u in ref.users.values() for p in u.plays.values()) > 3
    assert counters["in"] == counters["processed"] == len(records)
    assert_matches(got, ref.out, Model.load().version)


def _interaction(kind: str, t: int, title: CatalogueTitle, *, eid: str, rating: int | None = None,
                 user: str = "u1") -> dict[str, Any]:  # fmt: skip
    return {
        "event_id": eid, "user_id": user, "profile_id": f"{user}-p1", "device_id": f"{user}-d1",
        "device_type": "tv", "country": "US", "event_type": kind, "event_time_ms": t,
        "title_id": title.title_id, "genre": title.genre, "row_name": None, "row_index": None,
        "rank": None, "search_query": None, "rating": rating,
    }  # fmt: skip


def _play(kind: str, t: int, title: CatalogueTitle, pos: int, *, eid: str, pid: str = "p1",
          user: str = "u1") -> dict[str, Any]:  # fmt: skip
    return {
        "event_id": eid, "user_id": user, "profile_id": f"{user}-p1", "device_id": f"{user}-d1",
        "device_type": "tv", "app_version": "1", "country": "US", "isp": "x", "cdn": "cdn-a",
        "title_id": title.title_id, "playback_id": pid, "event_type": kind, "event_time_ms": t,
        "position_ms": pos, "bitrate_kbps": 3000, "buffer_ms": 1000, "error_code": None,
        "seek_from_ms": None,
    }  # fmt: skip


SMALL = Catalogue(
    [
        CatalogueTitle("a1", "action", 600_000, 1.0),
        CatalogueTitle("a2", "action", 600_000, 0.5),
        CatalogueTitle("c1", "comedy", 600_000, 0.9),
        CatalogueTitle("d1", "drama", 1_200_000, 0.8),
    ]
)


def _title(title_id: str) -> CatalogueTitle:
    title = SMALL.get(title_id)
    assert title is not None
    return title


def test_decay_halves_per_half_life_and_ignores_arrival_order(state: str) -> None:
    a1, c1 = _title("a1"), _title("c1")
    events = [
        _interaction("thumbs_up", START, a1, eid="e1"),
        _interaction("rating", START + HALF_LIFE_MS, c1, eid="e2", rating=5),
        _interaction("hover", START + 2 * HALF_LIFE_MS, a1, eid="e3"),
    ]
    finals = []
    for order in ((0, 1, 2), (2, 0, 1), (1, 2, 0)):
        driver = TestDriver(_job(SMALL, min_change=0.0), state=state, start_ms=CLOCK)
        try:
            for i in order:
                driver.send("interactions", events[i])
            out = driver.output(SINK)
        finally:
            driver.close()
        finals.append(out[-1])
    for final in finals:
        assert final["updated_ms"] == START + 2 * HALF_LIFE_MS
        # 3.0 two half-lives ago + 0.3 now; 2 stars above neutral one half-life ago
        assert final["genre_affinity"]["action"] == pytest.approx(3.0 / 4 + 0.3, rel=1e-12)
        assert final["genre_affinity"]["comedy"] == pytest.approx(2.0 / 2, rel=1e-12)
    for final in finals[1:]:
        assert final["top_titles"] == [
            {**x, "score": pytest.approx(x["score"], rel=1e-12)} for x in finals[0]["top_titles"]
        ]
    assert [x["title_id"] for x in finals[0]["top_titles"]][:2] == ["a1", "c1"]


def test_duplicates_count_once_and_do_not_emit(state: str) -> None:
    a1 = _title("a1")
    driver = TestDriver(_job(SMALL, min_change=0.0), state=state, start_ms=CLOCK)
    try:
        driver.send("interactions", _interaction("add_to_list", START, a1, eid="e1"))
        driver.send("interactions", _interaction("add_to_list", START, a1, eid="e1"))
        driver.send("interactions", _interaction("search", START + 5, a1, eid="e2"))
        out = driver.output(SINK)
    finally:
        driver.close()
    assert len(out) == 1
    assert out[0]["genre_affinity"] == {"action": 2.0}


def test_stop_completion_and_abandonment_with_retraction(state: str) -> None:
    d1 = _title("d1")  # 1_200_000 ms long
    driver = TestDriver(_job(SMALL, min_change=0.0), state=state, start_ms=CLOCK)
    try:
        driver.send("playback", _play("start", START, d1, 0, eid="s1", pid="p1"))
        driver.send("playback", _play("stop", START + 1000, d1, 900_000, eid="s2", pid="p1"))
        after_stop = driver.output(SINK)[-1]["genre_affinity"]["drama"]
        driver.send("playback", _play("start", START + 2000, d1, 0, eid="s3", pid="p2"))
        driver.send("playback", _play("heartbeat", START + 12_000, d1, 300_000, eid="s4", pid="p2"))
        n = len(driver.output(SINK))
        driver.advance_watermark(START + 12_000 + GAP_MS - 1)
        assert len(driver.output(SINK)) == n  # not yet quiet for 5 minutes
        driver.advance_watermark(START + 12_000 + GAP_MS)
        abandoned = driver.output(SINK)[-1]
        # a late heartbeat of the same playback: the abandonment is taken back
        driver.send("playback", _play("heartbeat", START + 22_000, d1, 310_000, eid="s5", pid="p2"))
        retracted = driver.output(SINK)[-1]
    finally:
        driver.close()
    h = HALF_LIFE_MS
    # start 0.5; stop at 75% of the title: 2.0 * 0.75
    assert after_stop == pytest.approx(0.5 * 2 ** (-1000 / h) + 1.5, rel=1e-12)
    # the second play starts (0.5) and goes quiet at 25%: 2.0 * 0.25 - 1.0, dated at its
    # last event, which is also the time the scores are evaluated at
    plays = 0.5 * 2 ** (-12_000 / h) + 1.5 * 2 ** (-11_000 / h) + 0.5 * 2 ** (-10_000 / h)
    assert abandoned["updated_ms"] == retracted["updated_ms"] == START + 12_000
    assert abandoned["genre_affinity"]["drama"] == pytest.approx(plays - 0.5, rel=1e-12)
    assert retracted["genre_affinity"]["drama"] == pytest.approx(plays, rel=1e-12)


def test_forward_decay_survives_many_half_lives(state: str) -> None:
    a1 = _title("a1")
    half_life = 60_000
    job = build(
        half_life=timedelta(milliseconds=half_life), top_n=2, catalogue=SMALL, min_change=0.0
    )
    driver = TestDriver(job, state=state, start_ms=START + 10 * 3_600_000)
    try:
        for k in range(4):  # 3 hours apart: 180 half-lives, past the rescaling limit
            t = START + k * 3 * 3_600_000
            driver.send("interactions", _interaction("thumbs_up", t, a1, eid=f"e{k}"))
            driver.send("interactions", _interaction("hover", t - 30_000, a1, eid=f"l{k}"))
        out = driver.output(SINK)
    finally:
        driver.close()
    assert out[-1]["genre_affinity"]["action"] == pytest.approx(3.0 + 0.3 * 2**-0.5, rel=1e-12)
    assert all(math.isfinite(v) for r in out for v in r["genre_affinity"].values())


def test_unknown_titles_are_not_scored(state: str) -> None:
    ghost = CatalogueTitle("zz", "action", 1, 1.0)
    driver = TestDriver(_job(SMALL), state=state, start_ms=CLOCK)
    try:
        driver.send("playback", _play("start", START, ghost, 0, eid="e1"))
        assert driver.output(SINK) == []
        driver.send("interactions", _interaction("thumbs_up", START, ghost, eid="e2"))
        out = driver.output(SINK)
    finally:
        driver.close()
    # an interaction names its genre, so it still counts for the genre
    assert len(out) == 1 and out[0]["genre_affinity"] == {"action": 3.0}
    assert "zz" not in [x["title_id"] for x in out[0]["top_titles"]]


def test_invalid_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="top_n"):
        build(top_n=0, catalogue=SMALL)
    with pytest.raises(ConfigError, match="half_life"):
        build(half_life=timedelta(0), catalogue=SMALL)
    with pytest.raises(ConfigError, match="play_retention"):
        build(play_retention=timedelta(minutes=1), catalogue=SMALL)


def test_training_reproduces_the_committed_model() -> None:
    committed = Model.load()
    retrained = train(TrainConfig())
    assert retrained.weights == pytest.approx(committed.weights, abs=1e-6)
    assert retrained.version == committed.version
    holdout = retrained.info["holdout"]
    assert holdout["model_hit_rate_at_10"] > holdout["popularity_hit_rate_at_10"]
    assert holdout["model_mrr"] > holdout["popularity_mrr"]
    shipped = Catalogue.load()
    assert [(t.title_id, t.genre, t.duration_ms) for t in shipped.titles] == [
        (t.title_id, t.genre, t.duration_ms) for t in shipped_catalogue().titles
    ]


def test_job_modules_import_neither_numpy_nor_the_generator() -> None:
    folder = Path(__file__).resolve().parents[3] / "jobs" / "personalization"
    for path in folder.glob("*.py"):
        if path.name == "train.py":
            continue  # the offline trainer: numpy and generated traffic are its inputs
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
        assert not [n for n in names if n.startswith(("numpy", "runtime.generator"))], path.name
