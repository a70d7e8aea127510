"""``shoal jobs``: merging consumer groups' checkpoints with control-topic announcements.

The merge is a pure function over what Kafka holds (committed offsets per group, the
raw ``job`` record of each control topic); no broker. The expected jobs are worked
out independently in the test from how each group was generated.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from click.testing import CliRunner

from runtime.cli.jobs_cmd import (
    Announcement,
    FoundJob,
    find_jobs,
    job_record,
    jobs,
    jobs_table,
    read_announcement,
)
from runtime.cli.status_cmd import JobStatus, PartitionStatus, WorkerStatus

NOW_MS = 1_700_000_000_000


def checkpoint(seq: int) -> str:
    return json.dumps({"seq": seq, "id": f"c{seq}", "wm": NOW_MS - 5000, "at": NOW_MS - 2000})


def announcement(job: str, group: str, steps: list[str], at: int | None = NOW_MS) -> bytes:
    """A ``job`` record as ``runtime.savepoint.wiring`` writes it (the parts read back)."""
    value: dict[str, Any] = {
        "job": job,
        "group": group,
        "fingerprint": "0123456789abcdef",
        "steps": [{"name": s, "kind": "map", "parents": []} for s in steps],
        "sources": {"events": "events"},
        "sinks": {},
        "dead_letters": f"{job}.dead-letters",
        "partitions": 2,
        "worker": "w0",
        "host": "h",
    }
    if at is not None:
        value["announced_ms"] = at
    return json.dumps(value, sort_keys=True).encode()


BAD_RECORDS: dict[str, bytes] = {
    "not JSON": b"{nope",
    "not a JSON object": b"[1, 2]",
    "no job name": json.dumps({"steps": []}).encode(),
    "no list of named steps": json.dumps({"job": "j", "steps": [{"kind": "map"}]}).encode(),
    "it announces group 'elsewhere'": json.dumps(
        {"job": "j", "group": "elsewhere", "steps": []}
    ).encode(),
}


def test_a_workers_announcement_is_read_back() -> None:
    got = read_announcement("g1", announcement("clicks", "g1", ["events", "by_user", "out"]))
    assert got == Announcement(
        "clicks", ["events", "by_user", "out"], NOW_MS, "clicks.dead-letters"
    )
    # an announcement of an older worker, without time or group
    old = json.dumps({"job": "clicks", "steps": [{"name": "events"}]}).encode()
    assert read_announcement("g1", old) == Announcement("clicks", ["events"], None, None)


@pytest.mark.parametrize("reason", sorted(BAD_RECORDS))
def test_a_record_that_is_no_announcement_says_why(reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        read_announcement("g1", BAD_RECORDS[reason])
    assert str(caught.value) == reason


@pytest.mark.parametrize("seed", range(5))
def test_jobs_are_merged_from_checkpoints_and_announcements(seed: int) -> None:
    rnd = random.Random(seed)
    offsets: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}
    records: dict[str, bytes] = {}
    want: dict[str, tuple[bool, str | None, list[str]]] = {}
    want_problems: set[str] = set()
    for i in range(60):
        group = f"g{i:02d}"
        # what the group holds: plain offsets, checkpoints, or nothing (no group at all)
        holds = rnd.choice(["checkpoints", "plain", "none", "empty"])
        if holds != "none":
            committed: dict[tuple[str, int], tuple[int, str]] = {}
            if holds != "empty":
                for p in range(rnd.randint(1, 3)):
                    committed[("in", p)] = (rnd.randint(0, 99), "")
                if holds == "checkpoints":  # one partition with metadata is enough
                    committed[("in", 0)] = (5, checkpoint(rnd.randint(1, 9)))
            offsets[group] = committed
        record = rnd.choice(["announced", "bad", "none"])
        steps = [f"s{k}" for k in range(rnd.randint(1, 4))]
        if record == "announced":
            records[group] = announcement(f"job-{i}", group, steps, NOW_MS - i)
        elif record == "bad":
            reason = rnd.choice(sorted(BAD_RECORDS))
            records[group] = BAD_RECORDS[reason]
            want_problems.add(
                f"{group}.control: its job record is not a Shoal job announcement "
                f"({reason}); ignored"
            )
        if holds == "checkpoints" or record == "announced":
            want[group] = (
                holds == "checkpoints",
                f"job-{i}" if record == "announced" else None,
                steps if record == "announced" else [],
            )
    found, problems = find_jobs(offsets, records)
    assert [j.group for j in found] == sorted(want)
    for job in found:
        checkpointed, name, steps = want[job.group]
        assert job.checkpointed is checkpointed
        assert (job.announcement.job if job.announcement else None) == name
        assert (job.announcement.steps if job.announcement else []) == steps
    assert sorted(problems) == sorted(want_problems)


def status_of(group: str, checkpoint_age_s: float | None) -> JobStatus:
    parts = []
    if checkpoint_age_s is not None:
        parts = [PartitionStatus("in", 0, 10, 12, 2, 3, NOW_MS, checkpoint_age_s, "w0")]
    workers = [WorkerStatus("w0", "h", "1", "10.0.0.1", ["in[0]"])]
    return JobStatus(group, workers, parts, None, checkpoint_age_s, 2 if parts else 0)


def test_every_json_line_has_the_same_keys() -> None:
    rows = [
        job_record(FoundJob("a", True, None), status_of("a", 3.0)),
        job_record(
            FoundJob("b", False, Announcement("bee", ["x", "y"], NOW_MS - 7000)),
            status_of("b", None),
        ),
        job_record(FoundJob("c", True, Announcement("c", ["z"], None)), status_of("c", 1.0)),
    ]
    keys = {tuple(sorted(r)) for r in rows}
    assert len(keys) == 1
    # the keys of `shoal status --json`, then what the control topic adds
    status_keys = set(json.loads(json.dumps(job_record(FoundJob("a", True), status_of("a", 1)))))
    assert status_keys == {
        "group", "workers", "partitions", "dead_letters", "last_checkpoint_age_s", "lag",
        "job", "steps", "announced_ms", "checkpointed",
    }  # fmt: skip
    assert rows[0]["job"] is None and rows[0]["steps"] == [] and rows[0]["checkpointed"]
    assert rows[1]["job"] == "bee" and rows[1]["steps"] == ["x", "y"]
    assert rows[1]["announced_ms"] == NOW_MS - 7000 and rows[1]["checkpointed"] is False
    for row in rows:
        assert json.loads(json.dumps(row)) == row


def test_the_table_shows_jobs_without_a_checkpoint() -> None:
    rows = [
        job_record(FoundJob("orders", True, None), status_of("orders", 3.0)),
        job_record(
            FoundJob("clicks-v2", False, Announcement("clicks", ["a", "b", "c"], NOW_MS - 7000)),
            status_of("clicks-v2", None),
        ),
    ]
    lines = jobs_table(rows, NOW_MS)
    assert lines[0].split() == [
        "GROUP", "JOB", "STEPS", "WORKERS", "LAG", "LAST", "CHECKPOINT", "ANNOUNCED",
    ]  # fmt: skip
    assert lines[1].split() == ["orders", "-", "-", "1", "2", "3s", "ago", "-"]
    assert lines[2].split() == ["clicks-v2", "clicks", "3", "1", "0", "none", "yet", "7s", "ago"]
    assert jobs_table([], NOW_MS)[0].startswith("no Shoal jobs")


def test_help_says_where_jobs_come_from() -> None:
    result = CliRunner().invoke(jobs, ["--help"])
    assert result.exit_code == 0
    assert "control topics" in result.output and "--json" in result.output
