"""The attribution job against an independent brute-force reference.

The reference (``tests.reference.attribution``) shares no code with the job: it scans
every distinct impression against every play start. Generated traffic is delivered
with disorder within the watermark bound and duplicates but nothing late, so every
record counts; the job must report no late record and emit exactly the reference's
metrics. A hand-made run checks the edges: the inclusive 30-minute bound, several
starts and duplicate deliveries of one impression, a title missing from the catalogue,
and late records going to ``attribution-late``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs.attribution import build
from runtime.generator import Generator, GeneratorConfig, catalogue_entries
from tests.reference.attribution import MINUTE, reference_metrics, sort_metrics
from tests.unit.jobs import BACKENDS, CHECKPOINT_EVERY, DiskDriver, arrival_batches

CLOCK_AFTER_MS = 24 * 3_600_000
HOUR = 60 * MINUTE
T0 = 1_700_000_100_000 - 1_700_000_100_000 % (5 * MINUTE)


@pytest.mark.parametrize("state", BACKENDS)
def test_attribution_matches_the_reference(state: str) -> None:
    config = GeneratorConfig(
        seed=7,
        users=120,
        out_of_order_ms=3_000,
        out_of_order_rate=0.1,
        late_rate=0.0,
        duplicate_rate=0.03,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
    )
    records = Generator(config).take(20_000)
    batches = arrival_batches(records, 50, ("interactions", "playback"))
    catalogue = {k.decode(): v for k, v in catalogue_entries(config)}
    now = config.start_ms + CLOCK_AFTER_MS
    driver = DiskDriver(build(max_out_of_order=timedelta(seconds=4)), state=state, start_ms=now)
    for title_id, entry in catalogue.items():
        driver.send_table("title-catalogue", title_id, entry)
    for i, (stream, values) in enumerate(batches):
        driver.send_many(stream, values)
        if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            driver.checkpoint()
    driver.advance_watermark(now + 10 * 24 * 3_600_000)
    driver.checkpoint()

    interactions = [v for s, vs in batches if s == "interactions" for v in vs]
    playback = [v for s, vs in batches if s == "playback" for v in vs]
    want = reference_metrics(interactions, playback, catalogue)
    got = driver.output("attribution-metrics")
    assert driver.output("attribution-late") == []
    assert driver.dead_letters() == []
    assert len(want) > 1_000
    assert sort_metrics(got) == want
    # the traffic exercised both verdicts in a realistic share
    genre = [m for m in want if m["group_kind"] == "genre"]
    impressions = sum(m["impressions"] for m in genre)
    attributed = sum(m["attributed_plays"] for m in genre)
    assert 0.02 < attributed / impressions < 0.3
    # and duplicate impressions were delivered (they must count once)
    ids = [v["event_id"] for v in interactions if v["event_type"] == "impression"]
    assert len(ids) > len(set(ids))
    driver.close()


def _impression(event_id: str, t: int, user: str, title: str, rank: int = 0) -> dict[str, Any]:
    return {
        "event_id": event_id, "user_id": user, "profile_id": "p", "device_id": "d",
        "device_type": "tv", "country": "NL", "event_type": "impression",
        "event_time_ms": t, "title_id": title, "genre": None, "row_name": "Trending Now",
        "row_index": 0, "rank": rank, "search_query": None, "rating": None,
    }  # fmt: skip


def _start(event_id: str, t: int, user: str, title: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "user_id": user, "profile_id": "p", "device_id": "d",
        "device_type": "tv", "app_version": "1", "country": "NL", "isp": "i", "cdn": "c",
        "title_id": title, "playback_id": "pb-" + event_id, "event_type": "start",
        "event_time_ms": t, "position_ms": 0, "bitrate_kbps": 1000, "buffer_ms": 0,
        "error_code": None, "seek_from_ms": None,
    }  # fmt: skip


@pytest.mark.parametrize("state", BACKENDS)
def test_attribution_edges(state: str) -> None:
    # the processing clock an hour after the traffic: no event time is too far ahead
    driver = DiskDriver(build(max_out_of_order=timedelta(0)), state=state, start_ms=T0 + HOUR)
    entry = {"title_id": "t1", "genre": "drama", "kind": "movie", "duration_ms": 1}
    driver.send_table("title-catalogue", "t1", entry)
    interactions = [
        _impression("i1", T0, "u1", "t1"),  # start exactly 30 min later: attributed
        _impression("i2", T0 + 1, "u2", "t1", rank=1),  # start 30 min + 1 ms later: not
        _impression("i3", T0 + 2, "u3", "t1"),  # two starts, and delivered twice
        _impression("i3", T0 + 2, "u3", "t1"),
        _impression("i4", T0 + 3, "u4", "t9"),  # t9 not in the catalogue; no start
    ]
    playback = [
        _start("s3a", T0 + 5, "u3", "t1"),
        _start("s3b", T0 + 6, "u3", "t1"),
        _start("s1", T0 + 30 * MINUTE, "u1", "t1"),
        _start("s2", T0 + 1 + 30 * MINUTE + 1, "u2", "t1"),
    ]
    driver.send_many("interactions", interactions)
    driver.send_many("playback", playback)
    # the join's watermark is now the lower of both sources': about T0 + 3
    driver.send("playback", _start("s0", T0 - 1, "u1", "t1"))
    driver.send("interactions", _impression("i5", T0, "u5", "t1"))
    driver.advance_watermark(T0 + HOUR)

    want = reference_metrics(interactions, playback, {"t1": entry})
    assert sort_metrics(driver.output("attribution-metrics")) == want
    by_genre = {m["genre"]: m for m in want if m["group_kind"] == "genre"}
    assert (by_genre["drama"]["impressions"], by_genre["drama"]["attributed_plays"]) == (3, 2)
    assert (by_genre["unknown"]["impressions"], by_genre["unknown"]["attributed_plays"]) == (1, 0)
    late_out = driver.output("attribution-late")
    assert sorted((r["late"], r["event"]["event_time_ms"]) for r in late_out) == [
        ("impression", T0),
        ("play_start", T0 - 1),
    ]
    assert driver.dead_letters() == []
    driver.close()
