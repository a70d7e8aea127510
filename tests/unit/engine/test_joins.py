"""Interval joins: the API's checks, a crash and restore that equals the run without,
bad records, state cleanup, and what other parts of Shoal make of a join step."""

from __future__ import annotations

import random
from collections import Counter
from contextlib import closing
from datetime import timedelta
from typing import Any

import pytest

from runtime import ConfigError, Job, JobDefinitionError, Json, WatermarkStrategy
from runtime.testing import TestDriver
from tests.reference.joins import Arrival, interval_join

T0 = 1_700_000_000_000
STATES = ("memory", "rocksdb")
MINUTE = 60_000
NOW = T0 + 10**8  # the processing clock: after every event time here


def sources(job: Job, bound: timedelta = timedelta(seconds=2)) -> tuple[Any, Any]:
    strategy = WatermarkStrategy.bounded(bound)
    imps = job.source("imps", schema="Imp", timestamp=lambda e: e["ts"], watermarks=strategy)
    plays = job.source("plays", schema="Play", timestamp=lambda e: e["ts"], watermarks=strategy)
    return imps, plays


def attribution_job(how: str = "inner", lateness_ms: int = 0) -> Job:
    """Impressions joined with plays of the same user within 0..5 minutes after them."""
    job = Job("attribution")
    imps, plays = sources(job)
    joined = imps.key_by("imp_user", lambda e: e["user"]).join(
        plays.key_by("play_user", lambda e: e["user"]),
        "attributed",
        within=(timedelta(0), timedelta(minutes=5)),
        how=how,  # type: ignore[arg-type]
        allowed_lateness=timedelta(milliseconds=lateness_ms),
    )
    joined.sink("out", Json())
    joined.late_right().sink("late_plays", Json())
    return job


def traffic(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Impressions and plays of a few users over an hour, somewhat out of order."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + i * 20_000 - rng.choice([0, 0, 1_000, 3_000, 30_000])
        source = rng.choice(["imps", "plays"])
        out.append((source, {"user": f"u{rng.randrange(4)}", "ts": ts, "id": i}))
    return out


def view(records: list[tuple[Any, Any, int]]) -> Counter[tuple[Any, Any, Any, int]]:
    return Counter(
        (v["key"], v["left"]["id"], None if v["right"] is None else v["right"]["id"], t)
        for _, v, t in records
    )


# -- the API ----------------------------------------------------------------------------
def test_join_needs_keyed_streams_and_sane_bounds() -> None:
    job = Job("bad")
    imps, plays = sources(job)
    keyed_imps = imps.key_by("ki", lambda e: e["user"])
    keyed_plays = plays.key_by("kp", lambda e: e["user"])
    week = (timedelta(0), timedelta(days=7))
    with pytest.raises(JobDefinitionError, match="left stream is not keyed"):
        imps.join(keyed_plays, "j", within=week)
    with pytest.raises(JobDefinitionError, match="right stream is not keyed"):
        keyed_imps.join(plays, "j", within=week)  # type: ignore[arg-type]
    with pytest.raises(JobDefinitionError, match="lower bound .* is above the upper bound"):
        keyed_imps.join(keyed_plays, "j", within=(timedelta(1), timedelta(0)))
    with pytest.raises(JobDefinitionError, match="pair of timedeltas"):
        keyed_imps.join(keyed_plays, "j", within=(0, 5))  # type: ignore[arg-type]
    with pytest.raises(JobDefinitionError, match="how must be 'inner' or 'left'"):
        keyed_imps.join(keyed_plays, "j", within=week, how="outer")  # type: ignore[call-overload]
    with pytest.raises(JobDefinitionError, match="allowed_lateness must be a non-negative"):
        keyed_imps.join(keyed_plays, "j", within=week, allowed_lateness=timedelta(-1))
    other = Job("other")
    foreign = sources(other)[1].key_by("kp", lambda e: e["user"])
    with pytest.raises(JobDefinitionError, match="another job"):
        keyed_imps.join(foreign, "j", within=week)
    joined = keyed_imps.join(keyed_plays, "j", within=week)
    assert [n.name for n in job.nodes][-1] == "j"
    assert joined.late_left().node.name == "j.late_left"
    assert joined.late_right("lr").node.name == "lr"


# -- exactly once through a crash ---------------------------------------------------------
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("state", STATES)
def test_crash_and_restore_equal_the_run_without(state: str, how: str) -> None:
    """Outputs after the last checkpoint are lost with the crash and come again with the
    replayed records; the run with a crash emits exactly what the run without does,
    nothing twice, and that equals the brute-force join."""
    evs = traffic(240, seed=7)
    stragglers = [("plays", {"user": "u1", "ts": T0 + 60_000, "id": 10_000})]  # late

    def run(crash: bool) -> tuple[Counter[Any], list[Any], list[Arrival]]:
        driver = TestDriver(attribution_job(how), state=state, start_ms=NOW)
        arrivals: list[Arrival] = []
        try:
            for i, (source, e) in enumerate(evs):
                if i == 150:
                    driver.checkpoint()
                if crash and i == 200:
                    driver.crash()
                    driver.restore()
                    for source2, e2 in evs[150:200]:  # Kafka delivers them again
                        driver.send(source2, e2)
                side = "left" if source == "imps" else "right"
                arrivals.append(Arrival(side, e["user"], e["ts"], e["id"], driver.watermark_ms))
                driver.send(source, e)
            for source, e in stragglers:
                arrivals.append(Arrival("right", e["user"], e["ts"], e["id"], driver.watermark_ms))
                driver.send(source, e)
            driver.advance_watermark(T0 + 10**8)
            return view(driver.records("out")), driver.output("late_plays"), arrivals
        finally:
            driver.close()

    crashed, crashed_late, _ = run(crash=True)
    clean, clean_late, arrivals = run(crash=False)
    assert crashed == clean
    assert crashed_late == clean_late == [stragglers[0][1]]
    want = interval_join(arrivals, 0, 5 * MINUTE, 0, how)
    assert clean == want.pairs
    assert sum(1 for p in want.pairs if p[2] is not None) > 50  # a join worth the name
    if how == "left":
        assert any(p[2] is None for p in want.pairs)


# -- bad records, failing outputs, state ----------------------------------------------------
class Opaque:
    """A value the state codec cannot store."""


@pytest.mark.parametrize("state", STATES)
def test_a_record_state_cannot_hold_is_dead_lettered_and_checkpoints_go_on(state: str) -> None:
    job = Job("opaque")
    imps, plays = sources(job)
    odd = imps.map(lambda e: {**e, "blob": Opaque()} if e["id"] == 2 else e, name="odd")
    odd.key_by("ki", lambda e: e["user"]).join(
        plays.key_by("kp", lambda e: e["user"]),
        "j",
        within=(timedelta(0), timedelta(minutes=1)),
        output=lambda k, left, right: {"imp": left["id"], "play": right["id"]},
    ).sink("out", Json())
    driver = TestDriver(job, state=state)
    try:
        for i in range(3):
            driver.send("imps", {"user": "u", "ts": T0 + i, "id": i})
        driver.send("plays", {"user": "u", "ts": T0 + 10, "id": 9})
        driver.checkpoint()  # nothing unstorable was kept
        assert sorted(o["imp"] for o in driver.output("out")) == [0, 1]
        [dead] = driver.dead_letters()
        assert dead.step == "j" and dead.error_class == "StateError"
        counts = driver.counters()["j"]
        assert counts["in"] == counts["processed"] + counts["late"] + counts["dead_lettered"]
        assert counts == {**counts, "in": 4, "dead_lettered": 1, "late": 0}
    finally:
        driver.close()


def test_a_failing_output_dead_letters_the_pair_only() -> None:
    job = Job("failing")
    imps, plays = sources(job)

    def output(key: str, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
        if right["id"] == 5:
            raise ValueError("no such title")
        return {"imp": left["id"], "play": right["id"]}

    imps.key_by("ki", lambda e: e["user"]).join(
        plays.key_by("kp", lambda e: e["user"]),
        "j",
        within=(timedelta(0), timedelta(minutes=1)),
        output=output,
    ).sink("out", Json())
    with closing(TestDriver(job)) as driver:
        driver.send("imps", {"user": "u", "ts": T0, "id": 1})
        driver.send_many(
            "plays", [{"user": "u", "ts": T0 + 1, "id": 5}, {"user": "u", "ts": T0 + 2, "id": 6}]
        )
        assert driver.output("out") == [{"imp": 1, "play": 6}]
        [dead] = driver.dead_letters()
        assert dead.error_class == "ValueError" and dead.offset == 0 and dead.topic == "plays"
        assert driver.counters()["j"]["dead_lettered"] == 0  # every input record was joined


@pytest.mark.parametrize("state", STATES)
def test_state_is_kept_only_while_a_record_can_still_match(state: str) -> None:
    """A left record is kept until the watermark passes ``ts + upper + lateness``; a
    left join emits it then, if it matched nothing; a right record until ``ts - lower +
    lateness``."""
    driver = TestDriver(attribution_job("left", lateness_ms=1_000), state=state)
    try:
        driver.send("imps", {"user": "u", "ts": T0, "id": 1})
        driver.send("plays", {"user": "v", "ts": T0, "id": 2})
        assert len(driver.state("attributed", "u")) == 1
        driver.advance_watermark(T0 + 1_000)  # the play: kept until T0 - 0 + 1 s
        assert driver.state("attributed", "v") != []
        driver.advance_watermark(T0 + 1_001)
        assert driver.state("attributed", "v") == []
        driver.advance_watermark(T0 + 5 * MINUTE + 1_000)
        assert driver.state("attributed", "u") != [] and driver.output("out") == []
        driver.advance_watermark(T0 + 5 * MINUTE + 1_001)
        assert driver.state("attributed", "u") == []
        [unmatched] = driver.records("out")
        assert unmatched == ("u", {"key": "u", "left": {"user": "u", "ts": T0, "id": 1},
                                   "right": None}, T0)
        assert len(driver.task.stores[0]) == 0  # timers gone too
        with pytest.raises(ConfigError, match="name its side"):
            driver.late("attributed")
    finally:
        driver.close()


def test_a_join_is_described_with_its_state_layout() -> None:
    from runtime.engine.describe import describe_job

    steps = {s["name"]: s for s in describe_job(attribution_job("left", 500))["steps"]}
    step = steps["attributed"]
    assert step["kind"] == "join" and step["parents"] == ["imp_user", "play_user"]
    assert step["layout"] == "join"
    assert step["params"] == {"lower_ms": 0, "upper_ms": 300_000, "lateness_ms": 500, "how": "left"}
    assert step["keyed_by"] == {"step": "imp_user", "repartition": True}


def test_a_join_gets_a_compacted_changelog_topic() -> None:
    from runtime.api.bindings import Bindings
    from runtime.runner import topic_plan

    job = attribution_job()
    plan = {p.owner: p for p in topic_plan(job, Bindings.for_job(job), 4, app="g")}
    changelog = plan["attributed"]
    assert changelog.role == "changelog" and changelog.name == "g.attributed.changelog"
    assert changelog.config == {"cleanup.policy": "compact"}
