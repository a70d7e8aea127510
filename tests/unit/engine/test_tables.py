"""Table joins: the API's checks, updates and tombstones between records (inner and
left, global and co-partitioned, both backends) against the brute-force reference,
bad table records, queryable table state, a crash and restore, and what other parts
of Shoal make of a table."""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any

import pytest

from runtime import ConfigError, Job, JobDefinitionError, Json
from runtime.api.bindings import Bindings
from runtime.engine.describe import describe_job
from runtime.testing import TestDriver
from tests.reference.tables import Record, Update, table_join

T0 = 1_700_000_000_000
STATES = ("memory", "rocksdb")


def enrich(key: Any, play: dict[str, Any], title: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": key, "id": play["id"], "genre": None if title is None else title["genre"]}


def catalogue_job(how: str = "inner", kind: str = "global") -> Job:
    """Plays enriched with their title's genre from a title table."""
    job = Job("enrich")
    plays = job.source("plays", schema="Play", timestamp=lambda e: e["ts"])
    titles = job.table("titles", schema="Title", kind=kind)  # type: ignore[call-overload]
    if kind == "global":
        out = plays.join_table(titles, "with_genre", key=lambda e: e["title"], how=how,
                               output=enrich)  # fmt: skip
    else:
        out = plays.key_by("by_title", lambda e: e["title"]).join_table(
            titles, "with_genre", how=how, output=enrich
        )
    out.sink("out", Json())
    return job


SCRIPT: list[Update | Record] = [
    Record("t1", {"id": 0, "title": "t1"}),  # before the table knows t1
    Update("t1", {"genre": "drama"}),
    Record("t1", {"id": 1, "title": "t1"}),
    Record("t2", {"id": 2, "title": "t2"}),
    Update("t2", {"genre": "comedy"}),
    Update("t1", {"genre": "crime"}),  # an update between records
    Record("t1", {"id": 3, "title": "t1"}),
    Record("t2", {"id": 4, "title": "t2"}),
    Update("t1", None),  # a tombstone
    Record("t1", {"id": 5, "title": "t1"}),
    Record("t2", {"id": 6, "title": "t2"}),
    Update("t1", {"genre": "news"}),  # back after its tombstone
    Record("t1", {"id": 7, "title": "t1"}),
]


def run(driver: TestDriver, events: list[Update | Record]) -> None:
    for i, event in enumerate(events):
        if isinstance(event, Update):
            driver.send_table("titles", event.key, event.value)
        else:
            driver.send("plays", {**event.value, "ts": T0 + i})


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("kind", ["global", "co-partitioned"])
def test_updates_and_tombstones_between_records(state: str, how: str, kind: str) -> None:
    with closing(TestDriver(catalogue_job(how, kind), state=state)) as driver:  # type: ignore[arg-type]
        run(driver, SCRIPT)
        expected = table_join(SCRIPT, how, enrich)
        assert driver.output("out") == expected
        # The reference is not trivial: both kinds of miss and an update are in it.
        genres = [r["genre"] for r in expected]
        assert "crime" in genres and "news" in genres
        assert len(expected) == (len([e for e in SCRIPT if isinstance(e, Record)]) if how == "left"
                                 else 5)  # fmt: skip
        counters = driver.counters()
        assert counters["titles"]["in"] == len([e for e in SCRIPT if isinstance(e, Update)])
        assert counters["with_genre"]["out"] == len(expected)


def test_records_keep_their_key_and_event_time() -> None:
    with closing(TestDriver(catalogue_job("inner", "co-partitioned"))) as driver:
        driver.send_table("titles", "t9", {"genre": "sport"})
        driver.send("plays", {"id": 1, "title": "t9", "ts": T0 + 5})
        assert driver.records("out") == [("t9", {"key": "t9", "id": 1, "genre": "sport"}, T0 + 5)]


def test_default_output_and_key_function_of_a_keyed_stream() -> None:
    job = Job("default-out")
    plays = job.source("plays", schema="Play", timestamp=lambda e: e["ts"])
    titles = job.table("titles", schema="Title", kind="global")
    keyed = plays.key_by("by_user", lambda e: e["user"])
    keyed.join_table(titles, "j", key=lambda e: e["title"], how="left").sink("out", Json())
    with closing(TestDriver(job)) as driver:
        driver.send_table("titles", "t1", {"genre": "drama"})
        driver.send("plays", {"user": "u1", "title": "t1", "ts": T0})
        driver.send("plays", {"user": "u2", "title": "t2", "ts": T0})
        assert driver.records("out") == [
            ("u1", {"key": "t1", "value": {"user": "u1", "title": "t1", "ts": T0},
                    "table": {"genre": "drama"}}, T0),
            ("u2", {"key": "t2", "value": {"user": "u2", "title": "t2", "ts": T0},
                    "table": None}, T0),
        ]  # fmt: skip


def test_the_api_refuses_what_cannot_work() -> None:
    job = Job("bad")
    plays = job.source("plays", schema="Play")
    big = job.table("big", schema="Title")
    small = job.table("small", schema="Title", kind="global")
    keyed = plays.key_by("k", lambda e: e["title"])
    with pytest.raises(JobDefinitionError, match="kind must be 'co-partitioned' or 'global'"):
        job.table("t", schema="Title", kind="local")  # type: ignore[call-overload]
    with pytest.raises(JobDefinitionError, match="co-partitioned, so only a keyed stream"):
        plays.join_table(big, "j1", key=lambda e: e["title"])
    with pytest.raises(JobDefinitionError, match="co-partitioned, so only a keyed stream"):
        keyed.join_table(big, "j2", key=lambda e: e["title"])
    with pytest.raises(JobDefinitionError, match="not keyed; give key="):
        plays.join_table(small, "j3", key=None)  # type: ignore[call-overload]
    with pytest.raises(JobDefinitionError, match="how must be 'inner' or 'left'"):
        keyed.join_table(big, "j4", how="outer")  # type: ignore[call-overload]
    with pytest.raises(JobDefinitionError, match="is not a table"):
        keyed.join_table(keyed, "j5")  # type: ignore[call-overload]
    other = Job("other").table("t", schema="Title", kind="global")
    with pytest.raises(JobDefinitionError, match="belongs to another job"):
        plays.join_table(other, "j6", key=lambda e: e["title"])
    with pytest.raises(JobDefinitionError, match="already has a step named 'big'"):
        job.table("big", schema="Title")


@pytest.mark.parametrize("state", STATES)
def test_bad_table_records_are_dead_lettered(state: str) -> None:
    job = Job("bad-table")
    plays = job.source("plays", schema="", timestamp=lambda e: e["ts"])
    titles = job.table("titles", schema="", kind="global", key=lambda b: int(b))
    plays.join_table(titles, "j", key=lambda e: e["title"], output=lambda k, p, t: t["genre"]
                     ).sink("out", Json())  # fmt: skip
    with closing(TestDriver(job, state=state)) as driver:  # type: ignore[arg-type]
        driver.send_table_raw("titles", b"1", json.dumps({"genre": "drama"}).encode())
        driver.send_table_raw("titles", b"2", b"{not json")  # value does not decode
        driver.send_table_raw("titles", b"x", json.dumps({"genre": "a"}).encode())  # key
        driver.send_table_raw("titles", None, json.dumps({"genre": "b"}).encode())  # no key
        driver.send_table_raw("titles", b"3", json.dumps({"genre": "crime"}).encode())
        driver.send_table_raw("titles", b"3", None)  # tombstone
        driver.send("plays", {"title": 1, "ts": T0})
        driver.send("plays", {"title": 3, "ts": T0})
        driver.send("plays", {"title": 2, "ts": T0})
        assert driver.output("out") == ["drama"]
        dead = driver.dead_letters()
        assert [(d.step, d.offset) for d in dead] == [("titles", 1), ("titles", 2), ("titles", 3)]
        assert all(d.topic == "titles" for d in dead)
        assert dead[0].value == b"{not json"
        assert driver.counters()["titles"]["dead_lettered"] == 3
        assert driver.state("titles", 1) == [(1, {"genre": "drama"})]
        assert driver.state("titles", 3) == []


def test_an_output_function_that_fails_dead_letters_the_record() -> None:
    job = Job("bad-output")
    plays = job.source("plays", schema="Play", timestamp=lambda e: e["ts"])
    titles = job.table("titles", schema="Title", kind="global")
    plays.join_table(titles, "j", key=lambda e: e["title"],
                     output=lambda k, p, t: t["missing"]).sink("out", Json())  # fmt: skip
    with closing(TestDriver(job)) as driver:
        driver.send_table("titles", "t1", {"genre": "drama"})
        driver.send("plays", {"title": "t1", "ts": T0})
        assert driver.output("out") == []
        assert [d.step for d in driver.dead_letters()] == ["j"]


@pytest.mark.parametrize("state", STATES)
def test_a_restore_reads_the_table_again(state: str) -> None:
    with closing(TestDriver(catalogue_job("left", "co-partitioned"), state=state)) as driver:  # type: ignore[arg-type]
        run(driver, SCRIPT[:5])
        driver.checkpoint()
        driver.crash()
        driver.restore()
        assert driver.state("titles", "t2") == [("t2", {"genre": "comedy"})]
        run(driver, SCRIPT[5:])
        assert driver.output("out") == table_join(SCRIPT, "left", enrich)


def test_table_state_and_description() -> None:
    job = catalogue_job("inner", "global")
    with closing(TestDriver(job)) as driver:
        driver.send_table("titles", "t1", {"genre": "drama"})
        assert driver.state("titles", "t1") == [("t1", {"genre": "drama"})]
        with pytest.raises(ConfigError, match="has no table 'nope'"):
            driver.send_table("nope", "t1", {})
    steps = {s["name"]: s for s in describe_job(job)["steps"]}
    assert steps["titles"]["kind"] == "table" and "layout" not in steps["titles"]
    assert steps["with_genre"]["parents"] == ["plays", "titles"]
    bindings = Bindings.for_job(job, ["titles=catalogue.v2"])
    assert bindings.tables == {"titles": "catalogue.v2"}


def test_table_topics_must_exist_and_a_co_partitioned_one_fit_the_inputs() -> None:
    from runtime.runner import check_table_topics

    job = catalogue_job("inner", "co-partitioned")
    bindings = Bindings.for_job(job, ["titles=catalogue"])
    check_table_topics(job, bindings, {"plays": 4, "catalogue": 4}, 4)
    with pytest.raises(ConfigError, match=r"co-partitioned table 'titles' has 2 partitions") as e:
        check_table_topics(job, bindings, {"plays": 4, "catalogue": 2}, 4)
    assert "\n" not in str(e.value) and "kind='global'" in str(e.value)
    with pytest.raises(ConfigError, match=r"table 'titles' reads topic 'catalogue', which does"):
        check_table_topics(job, bindings, {"plays": 4}, 4)
    global_job = catalogue_job("inner", "global")
    check_table_topics(global_job, Bindings.for_job(global_job), {"plays": 4, "titles": 1}, 4)
