"""W4's output check: each user's last PersonalizationScore against the final scores.

The job itself (in the test driver) and the hand-written loop make the output that
must pass; edited copies of it (a score, the order, a user, a stale last record)
must not. No broker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.checks import check_personalization, personalization_reference
from bench.common import BOUND_MS
from bench.impl_raw_personalization import Personalizer, encoder
from bench.impl_shoal import build_w4
from bench.inputs import clean_config
from bench.w1 import NO_TIME
from connectors.codecs import codec_factory
from jobs.personalization import Catalogue, Model, Scorer
from runtime.generator import Generator
from runtime.testing import TestDriver
from tests.reference.personalization import FinalScoresReference

SEED, USERS, EVENTS = 3, 30, 4_000
START_MS = clean_config(SEED, USERS, interactions=True).start_ms
SINK = "personalization-scores"
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
Records = list[tuple[bytes | None, bytes | None]]


def _encoded(values: list[dict[str, Any]]) -> Records:
    encode = codec_factory()("PersonalizationScore").encode
    return [(v["user_id"].encode(), encode(v)) for v in values]


def _decoded(records: Records) -> list[dict[str, Any]]:
    decode = codec_factory().any_decoder("PersonalizationScore")
    return [decode(v) for _, v in records]


def _check(ref: FinalScoresReference, records: Records) -> Any:
    return check_personalization(ref, "scores-avro", {SINK: records})


@pytest.fixture(scope="module")
def traffic() -> tuple[FinalScoresReference, list[tuple[str, dict[str, Any]]]]:
    """Generated events (as the bench writes them) and the reference over them, in one
    task whose final watermark is the smaller largest event time of the two streams."""
    records = Generator(clean_config(SEED, USERS, interactions=True)).take(EVENTS)
    events = [(r.stream, r.value) for r in records]
    ref = personalization_reference(SEED, USERS)
    latest = {"playback": NO_TIME, "interactions": NO_TIME}
    for stream, value in events:
        ref.receive(stream, value)
        latest[stream] = max(latest[stream], value["event_time_ms"])
    ref.close({s: [t] for s, t in latest.items()}, BOUND_MS)
    return ref, events


@pytest.fixture(scope="module")
def job_output(traffic: tuple[FinalScoresReference, list[Any]]) -> Records:
    """What the bench's Shoal job writes for the traffic, in chunks of 50 per stream."""
    _, events = traffic
    # The processing clock runs after the simulated traffic: event times more than the
    # skew bound ahead of it would be dead-lettered as from a device with a wrong clock.
    after = max(v["event_time_ms"] for _, v in events) + 86_400_000
    driver = TestDriver(build_w4("w4", SEED, USERS), start_ms=after)
    try:
        for i in range(0, len(events), 50):
            for stream in ("playback", "interactions"):
                values = [v for s, v in events[i : i + 50] if s == stream]
                if values:
                    driver.send_many(stream, values)
        out = driver.output(SINK)
    finally:
        driver.close()
    return _encoded(out)


def _last_index(records: Records, user: str) -> int:
    return max(i for i, (k, _) in enumerate(records) if k == user.encode())


def _edit_last(records: Records, user: str, edit: Callable[[dict[str, Any]], None]) -> Records:
    i = _last_index(records, user)
    value = _decoded([records[i]])[0]
    edit(value)
    return records[:i] + _encoded([value]) + records[i + 1 :]


def _settled_user(ref: FinalScoresReference) -> str:
    """A user with one acceptable final state."""
    return next(u for u, finals in sorted(ref.finals().items()) if len(finals) == 1)


def test_the_jobs_output_is_correct(traffic: Any, job_output: Records) -> None:
    ref, _ = traffic
    verdict = _check(ref, job_output)
    assert verdict.correct, verdict.summary()
    assert verdict.compared == len({k for k, _ in job_output}) > 15
    assert verdict.emitted == len(job_output) > verdict.compared
    # the input abandons playbacks: the reference declares them too
    assert any(
        not ended and last_t + ref.params.abandon_after_ms <= ref.brackets[0][0]
        for viewer in ref.viewers.values()
        for _, last_t, _, ended in viewer.plays.values()
    )


def test_the_hand_written_loop_output_is_correct(traffic: Any) -> None:
    ref, events = traffic
    titles = Catalogue.of(ref.titles.values())
    loop = Personalizer(
        Scorer(Model.load(), titles), encoder(SCHEMAS / "PersonalizationScore.avsc")
    )
    latest = {"playback": NO_TIME, "interactions": NO_TIME}
    for i in range(0, len(events), 50):
        for stream, value in events[i : i + 50]:
            latest[stream] = max(latest[stream], value["event_time_ms"])
            if stream == "playback":
                loop.playback(value, 0)
            else:
                loop.interaction(value)
        loop.advance(0, min(latest.values()) - BOUND_MS)
    records: Records = [(user.encode(), value) for user, value in loop.drain()]
    verdict = _check(ref, records)
    assert verdict.correct, verdict.summary()
    assert verdict.compared > 15 and verdict.repeated == 0


def test_a_wrong_score_is_wrong(traffic: Any, job_output: Records) -> None:
    ref, _ = traffic
    user = _settled_user(ref)

    def nudge(value: dict[str, Any]) -> None:
        value["top_titles"][0]["score"] += 2 * ref.params.min_change

    verdict = _check(ref, _edit_last(job_output, user, nudge))
    assert not verdict.correct
    assert (verdict.wrong, verdict.missing, verdict.extra) == (1, 0, 0)
    assert verdict.examples == (f"{user}: wrong",)


def test_a_wrong_order_or_affinity_is_wrong(traffic: Any, job_output: Records) -> None:
    ref, _ = traffic
    user = _settled_user(ref)

    def swap(value: dict[str, Any]) -> None:
        top = value["top_titles"]
        top[0], top[1] = top[1], top[0]

    def inflate(value: dict[str, Any]) -> None:
        genre = next(iter(value["genre_affinity"]))
        value["genre_affinity"][genre] = 1.05 * value["genre_affinity"][genre] + 0.05

    for edit in (swap, inflate):
        verdict = _check(ref, _edit_last(job_output, user, edit))
        assert not verdict.correct and verdict.wrong == 1, edit.__name__


def test_a_missing_or_unexpected_user_is_reported(traffic: Any, job_output: Records) -> None:
    ref, _ = traffic
    user = _settled_user(ref)
    without = [(k, v) for k, v in job_output if k != user.encode()]
    verdict = _check(ref, without)
    assert not verdict.correct and (verdict.missing, verdict.wrong) == (1, 0)

    stranger = {**_decoded(job_output[-1:])[0], "user_id": "nobody"}
    verdict = _check(ref, job_output + _encoded([stranger]))
    assert not verdict.correct and (verdict.extra, verdict.wrong) == (1, 0)


def test_a_stale_last_record_is_wrong(traffic: Any, job_output: Records) -> None:
    ref, _ = traffic
    decoded = _decoded(job_output)
    by_user: dict[str, list[int]] = {}
    for i, r in enumerate(decoded):
        by_user.setdefault(r["user_id"], []).append(i)

    def ids(i: int) -> list[str]:
        return [x["title_id"] for x in decoded[i]["top_titles"]]

    user = next(
        u
        for u, finals in sorted(ref.finals().items())
        if len(finals) == 1 and len(by_user[u]) > 1 and ids(by_user[u][-1]) != ids(by_user[u][-2])
    )
    stale = [r for i, r in enumerate(job_output) if i != by_user[user][-1]]
    verdict = _check(ref, stale)
    assert not verdict.correct and verdict.wrong == 1


def test_an_abandonment_in_the_watermark_bracket_may_or_may_not_count() -> None:
    ref = personalization_reference(SEED, USERS)
    title = next(iter(ref.titles.values()))
    start = START_MS + 60_000

    def play(kind: str, t: int, position: int, eid: str) -> dict[str, Any]:
        return {
            "event_id": eid, "user_id": "u1", "playback_id": "p1", "title_id": title.title_id,
            "event_type": kind, "event_time_ms": t, "position_ms": position,
            # the rest of a PlaybackEvent (the driver sends records through its schema)
            "profile_id": "u1-p", "device_id": "u1-d1", "device_type": "tv",
            "app_version": "1.0", "country": "NL", "isp": "isp-1", "cdn": "cdn-a",
            "bitrate_kbps": 3000, "buffer_ms": 5000, "error_code": None, "seek_from_ms": None,
        }  # fmt: skip

    events = [play("start", start, 0, "e1"), play("heartbeat", start + 10_000, 600_000, "e2")]
    deadline = start + 10_000 + ref.params.abandon_after_ms

    def last_record(watermark: int | None) -> Records:
        # the processing clock after the traffic (see job_output)
        driver = TestDriver(build_w4("w4", SEED, USERS), start_ms=deadline + 86_400_000)
        try:
            driver.send_many("playback", events)
            if watermark is not None:
                driver.advance_watermark(watermark)
            return _encoded(driver.output(SINK)[-1:])
        finally:
            driver.close()

    for e in events:
        ref.receive("playback", e)
    kept, abandoned = last_record(None), last_record(deadline)
    assert _decoded(kept) != _decoded(abandoned)

    def verdicts(low: int, high: int) -> tuple[bool, bool]:
        ref.close({"playback": [low + BOUND_MS], "interactions": [high + BOUND_MS]}, BOUND_MS)
        return _check(ref, kept).correct, _check(ref, abandoned).correct

    assert verdicts(deadline - 1, deadline) == (True, True)
    assert verdicts(deadline - 2, deadline - 1) == (True, False)
    assert verdicts(deadline, deadline + 1) == (False, True)
