"""Table joins against the brute-force reference (``tests.reference.tables``) over
random interleavings of table updates, tombstones and stream records, inner and left,
global and co-partitioned tables, on both backends; with a crash and restore at a
random point too (the table read again, the records since the checkpoint sent again).
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Job, Json
from runtime.testing import TestDriver
from tests.reference.tables import Record, Update, table_join

T0 = 1_700_000_000_000
KEYS = ("a", "b", "c")
EXAMPLES = {"memory": 150, "rocksdb": 25}


def output(key: Any, record: dict[str, Any], value: int | None) -> list[Any]:
    return [key, record["id"], value]


def job_of(how: str, kind: str) -> Job:
    job = Job("tables-property")
    records = job.source("records", schema="Rec", timestamp=lambda e: e["ts"])
    table = job.table("t", schema="Val", kind=kind)  # type: ignore[call-overload]
    if kind == "global":
        out = records.join_table(table, "j", key=lambda e: e["k"], how=how, output=output)
    else:
        out = records.key_by("by_k", lambda e: e["k"]).join_table(
            table, "j", how=how, output=output
        )
    out.sink("out", Json())
    return job


events = st.lists(
    st.one_of(
        st.builds(Update, st.sampled_from(KEYS), st.one_of(st.none(), st.integers(0, 9))),
        st.builds(Record, st.sampled_from(KEYS), st.just(None)),
    ),
    max_size=40,
)


def numbered(script: list[Update | Record]) -> list[Update | Record]:
    """Records carry their position as their id (for the reference and the driver)."""
    return [
        Record(e.key, {"k": e.key, "id": i, "ts": T0 + i}) if isinstance(e, Record) else e
        for i, e in enumerate(script)
    ]


def send(driver: TestDriver, event: Update | Record) -> None:
    if isinstance(event, Update):
        driver.send_table("t", event.key, event.value)
    else:
        driver.send("records", event.value)


def check(state: str, script: list[Update | Record], how: str, kind: str, cut: int) -> None:
    script = numbered(script)
    with closing(TestDriver(job_of(how, kind), state=state)) as driver:  # type: ignore[arg-type]
        cut = min(cut, len(script))
        for event in script[:cut]:
            send(driver, event)
        driver.checkpoint()
        # More records, lost in a crash; the table records among them stay in the topic.
        lost = script[cut:]
        for event in lost[: len(lost) // 2]:
            send(driver, event)
        driver.crash()
        driver.restore()
        for event in lost[: len(lost) // 2]:
            if isinstance(event, Record):
                send(driver, event)  # delivered again; the table kept its updates
        for event in lost[len(lost) // 2 :]:
            send(driver, event)
        # Processing order after the restore: every update up to the crash came first.
        order = script[:cut]
        order += [e for e in lost[: len(lost) // 2] if isinstance(e, Update)]
        order += [e for e in lost[: len(lost) // 2] if isinstance(e, Record)]
        order += lost[len(lost) // 2 :]
        assert driver.output("out") == table_join(order, how, output)
        final: dict[str, int] = {}
        for e in script:
            if isinstance(e, Update):
                if e.value is None:
                    final.pop(e.key, None)
                else:
                    final[e.key] = e.value
        for key in KEYS:
            expect = [(key, final[key])] if key in final else []
            assert driver.state("t", key) == expect


@settings(max_examples=EXAMPLES["memory"], deadline=None)
@given(
    events,
    st.sampled_from(["inner", "left"]),
    st.sampled_from(["global", "co-partitioned"]),
    st.integers(0, 40),
)
def test_memory(script: list[Update | Record], how: str, kind: str, cut: int) -> None:
    check("memory", script, how, kind, cut)


@settings(max_examples=EXAMPLES["rocksdb"], deadline=None)
@given(
    events,
    st.sampled_from(["inner", "left"]),
    st.sampled_from(["global", "co-partitioned"]),
    st.integers(0, 40),
)
def test_rocksdb(script: list[Update | Record], how: str, kind: str, cut: int) -> None:
    check("rocksdb", script, how, kind, cut)
