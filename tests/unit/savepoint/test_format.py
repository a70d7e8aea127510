"""The savepoint format: generic values, state layouts as rows, folder and manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import ConfigError, StateError
from runtime.engine.describe import describe_job
from runtime.savepoint.datum import DATUM, from_datum, json_ready, to_datum
from runtime.savepoint.format import FORMAT_VERSION, Savepoint, SavepointWriter
from runtime.savepoint.layouts import entries_from_rows, row_schema, rows_from_entries
from runtime.savepoint.take import write_savepoint
from runtime.state.base import StoreId
from runtime.state.memory import MemoryStore
from runtime.state.records import WindowState
from tests.integration import savepoint_jobs

VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**70, -(2**90), 1.5, -0.0, math.inf,
    "", "héllo\x00", b"", b"\x00\xff", [], [1, [2, "x"]], (), (1, ("a", b"b")), {1, 2},
    frozenset({"a"}), {}, {"a": 1}, {(1, "x"): [None, {2}]}, {None: frozenset()},
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_datum_round_trip_through_an_avro_file(value: Any, tmp_path: Path) -> None:
    writer = SavepointWriter(tmp_path / "sp")
    schema = {"type": "record", "name": "R", "fields": [{"name": "v", "type": DATUM}]}
    info = writer.write_rows("s", 0, "fixed", schema, [{"v": to_datum(value)}])
    assert info == {"file": "state/s/task-0.avro", "rows": 1}
    from connectors.avro.container import read_container

    with open(tmp_path / "sp" / info["file"], "rb") as fo:
        _, rows = read_container(fo)
        got = from_datum(next(rows)["v"])
    assert got == value and type(got) is type(value)


def test_datum_refuses_what_state_cannot_hold() -> None:
    with pytest.raises(StateError, match="object"):
        to_datum(object())
    with pytest.raises(StateError, match="not a savepoint Datum"):
        from_datum({"x": 1})


def test_json_ready_is_json() -> None:
    text = json.dumps(json_ready({(1, "a"): {b"\x00": {3, 1}}}))
    assert json.loads(text) == [[[1, "a"], [[{"base64": "AA=="}, [1, 3]]]]]


ENTRIES: dict[str, list[tuple[Any, Any]]] = {
    "session": [
        ("u1", [WindowState(1000, 31000, {"events": 2, "seeks": 1}, emitted=True, pending=False),
                WindowState(90000, 120000, {"events": 1, "seeks": 0})]),
        ("u2", [WindowState(5, 30005, {"events": 7, "seeks": 0}, emitted=True, pending=True)]),
    ],
    "fixed": [(("t1", 0, 60000), {"events": 3, "seeks": 0}),
              (("t1", 60000, 120000), {"events": 1, "seeks": 1})],
    "process": [
        (("u1", "count"), (4, 1234)),
        (("u1", "seen"), ({"a": (1, 2)}, 99)),
        (("\x00timer:event", 5000, "u1"), 1),
        (("\x00timer:proc", 7000, ("k", 2)), 1),
    ],
    "join": [
        (("u1", "L"), [[1000, {"id": "i1", "rank": 2}, True], [1000, {"id": "i2"}, False],
                       [4000, {"id": "i3"}, False]]),
        (("u1", "R"), [[2500, {"id": "p1", "pos": None}, False]]),
        ((("u", 7), "L"), [[9, b"raw", True]]),
        (("\x00timer:join", 1801001, "u1"), 1),
        (("\x00timer:join", 10, ("u", 7)), 1),
    ],
}  # fmt: skip


# Process state is always generic (no declared value schema).
LAYOUTS = [(layout, typed) for layout in sorted(ENTRIES) for typed in (False, True)
           if not (typed and layout in ("process", "join"))]  # fmt: skip


def test_join_rows_use_the_engines_timer_tag() -> None:
    from runtime.engine.joins import TIMER
    from runtime.savepoint.layouts import JOIN_TIMER

    assert JOIN_TIMER == TIMER


@pytest.mark.parametrize("layout,typed", LAYOUTS)
def test_layout_rows_round_trip(layout: str, typed: bool, tmp_path: Path) -> None:
    value_schema = savepoint_jobs.ACC_V1 if typed else None
    schema = row_schema(layout, "step", value_schema)
    writer = SavepointWriter(tmp_path / "sp")
    rows = list(rows_from_entries(layout, ENTRIES[layout], typed))
    writer.write_rows("step", 3, layout, schema, rows)
    from connectors.avro.container import read_container

    with open(tmp_path / "sp" / "state/step/task-3.avro", "rb") as fo:
        _, read = read_container(fo)
        back = dict(entries_from_rows(layout, list(read), typed))
    assert back == dict(ENTRIES[layout])


def test_layout_refuses_a_misshapen_entry() -> None:
    with pytest.raises(StateError, match="session layout"):
        list(rows_from_entries("session", [("u", 5)], False))


def test_a_value_that_does_not_fit_the_declared_schema_names_the_step(tmp_path: Path) -> None:
    writer = SavepointWriter(tmp_path / "sp")
    schema = row_schema("fixed", "counts", savepoint_jobs.ACC_V1)
    rows = rows_from_entries("fixed", [(("t", 0), {"events": "many", "seeks": 0})], True)
    with pytest.raises(StateError, match="counts"):
        writer.write_rows("counts", 0, "fixed", schema, rows)


def _changes(entries: list[tuple[Any, Any]], step: str = "sessions") -> list[tuple[bytes, Any]]:
    store = MemoryStore(StoreId("j", step, 0))
    for k, v in entries:
        store.put(k, v)
    store.put("gone", [WindowState(1, 2, {"events": 1, "seeks": 0}, emitted=True, pending=False)])
    first = store.checkpoint()
    store.delete("gone")
    return first + store.checkpoint()


def description(job: Any = None, partitions: int = 2) -> dict[str, Any]:
    desc = describe_job(job or savepoint_jobs.v1, sources={"playback": "in"},
                        sinks={"sessions-out": "out"})  # fmt: skip
    desc.update(group="g", partitions=partitions)
    return desc


def committed(partitions: int = 2) -> dict[tuple[str, int], tuple[int, str]]:
    out = {}
    for p in range(partitions):
        meta = {"seq": 4, "id": "x", "max_ts": 1000 + p, "wm": 500, "at": 1}
        out[("in", p)] = (100 * (p + 1), json.dumps(meta))
        out[("g.by_user.repartition", p)] = (7, json.dumps({"seq": 4, "id": "x", "wm": 400}))
    return out


def take(tmp_path: Path, logs: dict[tuple[str, int], list[Any]], partitions: int = 2) -> Savepoint:
    write_savepoint(
        tmp_path / "sp",
        description(partitions=partitions),
        committed(partitions),
        lambda topic, p: logs.get((topic, p), []),
        outputs={"x": 1},
        command="c1",
    )
    return Savepoint(tmp_path / "sp")  # fmt: skip


def test_savepoint_from_changelogs_and_offsets(tmp_path: Path) -> None:
    logs = {("g.sessions.changelog", 0): _changes(ENTRIES["session"][:1]),
            ("g.sessions.changelog", 1): _changes(ENTRIES["session"][1:])}  # fmt: skip
    sp = take(tmp_path, logs)
    m = sp.manifest
    assert (m.job, m.group, m.partitions, m.format, m.command) == ("sp_sessions", "g", 2, 1, "c1")
    assert m.sources["playback"]["partitions"] == {
        "0": {"offset": 100, "max_ts": 1000, "wm": 500},
        "1": {"offset": 200, "max_ts": 1001, "wm": 500},
    }
    assert m.repartition["by_user"]["partitions"]["1"] == {"offset": 7, "wm": 400}
    entry = m.state["sessions"]
    assert (entry["keys"], entry["key_kinds"], entry["key_type"]) == (2, ["str"], "string")
    assert entry["value_schema"] == savepoint_jobs.ACC_V1
    rows = [(t, r["key"]["v"], r["start"], r["acc"]) for t, r in sp.rows("sessions")]
    assert rows == [(0, "u1", 1000, {"events": 2, "seeks": 1}),
                    (0, "u1", 90000, {"events": 1, "seeks": 0}),
                    (1, "u2", 5, {"events": 7, "seeks": 0})]  # fmt: skip
    manifest = json.loads((tmp_path / "sp" / "manifest.json").read_text())
    assert manifest["format"] == FORMAT_VERSION and manifest["graph"]["fingerprint"]


def test_a_task_without_a_committed_checkpoint_has_no_state(tmp_path: Path) -> None:
    logs = {("g.sessions.changelog", 2): _changes(ENTRIES["session"])}
    sp = take(tmp_path, logs, partitions=3)
    with_meta = committed(3)
    assert ("in", 2) in with_meta and sp.manifest.state["sessions"]["keys"] == 2
    (tmp_path / "b").mkdir()
    write_savepoint(tmp_path / "b" / "sp", description(partitions=3),
                    {k: v for k, v in with_meta.items() if k[1] != 2},
                    lambda topic, p: logs.get((topic, p), []))  # fmt: skip
    assert Savepoint(tmp_path / "b" / "sp").manifest.state["sessions"]["keys"] == 0


def test_folders_refused(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        SavepointWriter(tmp_path / "full")
    with pytest.raises(ConfigError, match="not a savepoint"):
        Savepoint(tmp_path / "full")
    (tmp_path / "full" / "manifest.json").write_text('{"format": 99}')
    with pytest.raises(ConfigError, match="format 99"):
        Savepoint(tmp_path / "full")
