"""Comparing a new job with a savepoint, and loading its state into the new shape."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime import Job, Json, windows
from runtime.aggregates import Count
from runtime.api.errors import JobDefinitionError
from runtime.engine.describe import describe_job
from runtime.engine.repartition import partition_for
from runtime.engine.topics import key_bytes
from runtime.savepoint.compat import compare
from runtime.savepoint.format import Savepoint
from runtime.savepoint.restore import load_state, parse_renames
from runtime.state.records import WindowState
from runtime.state.serde import decode_key, decode_value
from tests.integration import savepoint_jobs
from tests.unit.savepoint.test_format import _changes, take

SESSIONS = [(f"user-{i}", [WindowState(i * 10, i * 10 + 30000, {"events": i, "seeks": i % 3},
                                         emitted=True, pending=False)])
            for i in range(40)]  # fmt: skip


@pytest.fixture
def sp(tmp_path: Path) -> Savepoint:
    by_task: dict[int, list[Any]] = {0: [], 1: []}
    for key, value in SESSIONS:
        by_task[partition_for(key_bytes(key), 2)].append((key, value))
    logs = {("g.sessions.changelog", t): _changes(e) for t, e in by_task.items()}
    return take(tmp_path, logs)


def desc(job: Job) -> dict[str, Any]:
    return describe_job(job, sources={"playback": "in"}, sinks={"sessions-out": "out"})


def lines(plan: Any) -> list[str]:
    return [s.line() for s in plan.steps]


def test_same_job_keeps_everything(sp: Savepoint) -> None:
    plan = compare(sp.manifest, desc(savepoint_jobs.v1), savepoint_jobs.v1, partitions=2)
    assert plan.ok and lines(plan) == ["sessions: kept, 40 keys, values as they are"]
    state = load_state(sp, plan, savepoint_jobs.v1, desc(savepoint_jobs.v1), 2)
    got = {decode_key(k): decode_value(v) for t in state.steps["sessions"].values() for k, v in t}
    assert got == dict(SESSIONS) and not state.problems


def test_upgrade_renames_resolves_and_adds(sp: Savepoint) -> None:
    job = savepoint_jobs.v2
    plan = compare(sp.manifest, desc(job), job, renames={"sessions": "user_sessions"},
                   partitions=2)  # fmt: skip
    assert plan.ok, plan.problems
    assert lines(plan) == [
        "sessions -> user_sessions: renamed, 40 keys, values resolved into the new schema (Avro)"
    ]
    state = load_state(sp, plan, job, desc(job), 2)
    tasks = state.steps["user_sessions"]
    for tid, records in tasks.items():
        for k, v in records:
            key = decode_key(k)
            assert partition_for(key_bytes(key), 2) == tid
            want = dict(SESSIONS)[key][0]
            assert decode_value(v) == [
                WindowState(want.start, want.end, {**want.acc, "errors": 0}, emitted=True,
                            pending=False)
            ]  # fmt: skip
    assert sum(len(r) for r in tasks.values()) == 40


def test_rekeyed_to_another_partition_count(sp: Savepoint) -> None:
    plan = compare(sp.manifest, desc(savepoint_jobs.v1), savepoint_jobs.v1, partitions=5)
    assert plan.ok and any("re-keyed" in n for n in plan.notes)
    state = load_state(sp, plan, savepoint_jobs.v1, desc(savepoint_jobs.v1), 5)
    placed = {decode_key(k): tid for tid, recs in state.steps["sessions"].items() for k, _ in recs}
    assert placed == {key: partition_for(key_bytes(key), 5) for key, _ in SESSIONS}
    assert len(set(placed.values())) > 2


def test_incompatible_changes_are_one_line_per_step(sp: Savepoint) -> None:
    renames = {"sessions": "user_sessions"}
    for job, expect in [
        (savepoint_jobs.v3_no_default, "errors"),
        (savepoint_jobs.v3_key_type, "key type changed from string to long"),
    ]:
        plan = compare(sp.manifest, desc(job), job, renames=renames, partitions=2)
        assert len(plan.problems) == 1 and expect in plan.problems[0], plan.problems
        assert plan.problems[0].startswith("sessions -> user_sessions: ")
    plan = compare(sp.manifest, desc(savepoint_jobs.v2), savepoint_jobs.v2, partitions=2)
    assert plan.problems == [
        "sessions: stateful step removed (40 keys of state would be lost): keep it, rename it "
        "with --rename sessions=NEW, or pass --allow-dropped-state"
    ]
    plan = compare(sp.manifest, desc(savepoint_jobs.v2), savepoint_jobs.v2, partitions=2,
                   allow_dropped=True)  # fmt: skip
    assert plan.ok and lines(plan) == [
        "sessions: dropped (40 keys of state left behind)",
        "user_sessions: added, starts with empty state",
    ]
    plan = compare(sp.manifest, desc(savepoint_jobs.v1), savepoint_jobs.v1, partitions=2,
                   renames={"nope": "sessions"})  # fmt: skip
    assert any("no state of step 'nope'" in p for p in plan.problems)


def _counting(step: str, spec: Any) -> Job:
    job = Job("sp_sessions")
    (job.source("playback", schema="PlaybackEvent")
        .key_by("by_user", lambda e: e["user_id"]).window(step, spec).aggregate(Count())
        .sink("sessions-out", Json()))  # fmt: skip
    return job


def test_layout_changes_are_refused(sp: Savepoint) -> None:
    job = _counting("sessions", windows.tumbling(timedelta(minutes=1)))
    plan = compare(sp.manifest, desc(job), job, partitions=2)
    assert plan.problems == ["sessions: state layout changed from session to fixed"]


def test_migrate_function_runs_on_older_versions(sp: Savepoint) -> None:
    job = Job("sp_sessions")
    (job.source("playback", schema="PlaybackEvent")
        .key_by("by_user", lambda e: e["user_id"])
        .window("sessions", windows.session(gap=timedelta(seconds=30)))
        .aggregate(Count()).sink("sessions-out", Json()))  # fmt: skip
    job.state_schema("sessions", value="long", key="string", version=2,
                     migrate=lambda acc: acc["events"] * 100)  # fmt: skip
    plan = compare(sp.manifest, desc(job), job, partitions=2)
    assert plan.ok and lines(plan) == [
        "sessions: kept, 40 keys, values migrated by the step's migrate function"
    ]
    state = load_state(sp, plan, job, desc(job), 2)
    got = {decode_key(k): decode_value(v)[0].acc for t in state.steps["sessions"].values()
           for k, v in t}  # fmt: skip
    assert got == {key: value[0].acc["events"] * 100 for key, value in SESSIONS}
    # Without a migrate function the same change is refused, saying what to do.
    job2 = _counting("sessions", windows.session(gap=timedelta(seconds=30)))
    job2.state_schema("sessions", value="long")
    plan = compare(sp.manifest, desc(job2), job2, partitions=2)
    assert len(plan.problems) == 1 and "register a migrate function" in plan.problems[0]


def test_migrated_values_must_fit_the_new_schema(sp: Savepoint) -> None:
    job = _counting("sessions", windows.session(gap=timedelta(seconds=30)))
    job.state_schema("sessions", value="long", version=2, migrate=lambda acc: "not a number")
    plan = compare(sp.manifest, desc(job), job, partitions=2)
    state = load_state(sp, plan, job, desc(job), 2)
    assert len(state.problems) == 1 and "does not fit the new schema" in state.problems[0]


def test_declarations_are_checked() -> None:
    job = Job("j")
    with pytest.raises(JobDefinitionError, match="key type"):
        job.state_schema("s", key="float")
    job.state_schema("s", version=3)
    with pytest.raises(JobDefinitionError, match="twice"):
        job.state_schema("s")
    assert parse_renames(["a=b"]) == {"a": "b"}
    with pytest.raises(Exception, match="OLD=NEW"):
        parse_renames(["ab"])


def test_newly_declared_schema_checks_generic_values(tmp_path: Path) -> None:
    from runtime.savepoint.take import write_savepoint
    from tests.unit.savepoint.test_format import committed, description

    untyped = _counting("sessions", windows.session(gap=timedelta(seconds=30)))
    logs = {("g.sessions.changelog", 0): _changes(SESSIONS[:5])}
    write_savepoint(
        tmp_path / "u", description(untyped), committed(), lambda t, p: logs.get((t, p), [])
    )
    sp = Savepoint(tmp_path / "u")
    assert sp.manifest.state["sessions"]["value_schema"] is None
    job = savepoint_jobs.v1  # declares ACC_V1: the generic dicts fit it
    plan = compare(sp.manifest, desc(job), job, partitions=2)
    assert plan.ok and lines(plan) == [
        "sessions: kept, 5 keys, values checked against the new schema"
    ]
    state = load_state(sp, plan, job, desc(job), 2)
    assert not state.problems and sum(len(r) for r in state.steps["sessions"].values()) == 5
    strict = _counting("sessions", windows.session(gap=timedelta(seconds=30)))
    strict.state_schema("sessions", value=savepoint_jobs.ACC_V3)  # needs "errors"
    plan = compare(sp.manifest, desc(strict), strict, partitions=2)
    state = load_state(sp, plan, strict, desc(strict), 2)
    assert len(state.problems) == 1 and "errors" in state.problems[0]


def test_a_savepoint_of_a_newer_state_version_is_refused(sp: Savepoint) -> None:
    sp.manifest.state["sessions"]["version"] = 3
    plan = compare(sp.manifest, desc(savepoint_jobs.v1), savepoint_jobs.v1, partitions=2)
    assert len(plan.problems) == 1 and "state version 3" in plan.problems[0]
