"""A join step's state through a savepoint: taken from its changelog, loaded into a new
run (re-keyed to another partition count too), the new run goes on exactly as the old."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.describe import describe_job
from runtime.engine.repartition import partition_for
from runtime.engine.topics import key_bytes
from runtime.savepoint.compat import compare
from runtime.savepoint.format import Savepoint
from runtime.savepoint.restore import load_state
from runtime.savepoint.take import write_savepoint
from runtime.state.base import StoreId
from runtime.state.memory import MemoryStore
from runtime.state.serde import decode_key
from runtime.testing import TestDriver
from tests.unit.engine.test_joins import NOW, attribution_job, traffic, view

SOURCES = {"imps": "in-imps", "plays": "in-plays"}


def description(partitions: int) -> dict[str, Any]:
    desc = describe_job(attribution_job("left"), sources=SOURCES, sinks={"out": "out"})
    desc.update(group="g", partitions=partitions)
    return desc


def committed(wm: int) -> dict[tuple[str, int], tuple[int, str]]:
    meta = json.dumps({"seq": 3, "id": "x", "max_ts": wm, "wm": wm, "at": 1})
    out = {(topic, 0): (50, meta) for topic in SOURCES.values()}
    for step in ("imp_user", "play_user"):
        out[(f"g.{step}.repartition", 0)] = (9, json.dumps({"seq": 3, "id": "x", "wm": wm}))
    return out


@pytest.mark.parametrize("partitions", [1, 3])
def test_join_state_survives_a_savepoint(tmp_path: Path, partitions: int) -> None:
    evs = traffic(200, seed=11)
    job = attribution_job("left")
    old = TestDriver(job, start_ms=NOW)
    new = TestDriver(attribution_job("left"), start_ms=NOW)
    try:
        for source, e in evs[:120]:
            old.send(source, e)
        old.checkpoint()
        wm, before = old.watermark_ms, len(old.records("out"))
        store = MemoryStore(StoreId("j", "attributed", 0))
        for k, v in old.task.stores[0].items():
            store.put(k, v)
        changes = store.checkpoint()
        assert any(decode_key(k)[0] == "\x00timer:join" for k, _ in changes)
        logs = {("g.attributed.changelog", 0): changes}
        write_savepoint(tmp_path / "sp", description(1), committed(wm),
                        lambda topic, p: logs.get((topic, p), []), command="c")  # fmt: skip
        sp = Savepoint(tmp_path / "sp")
        plan = compare(sp.manifest, description(partitions), job, partitions=partitions)
        assert plan.ok, plan.problems
        loaded = load_state(sp, plan, job, description(partitions), partitions)
        assert not loaded.problems
        tasks = loaded.steps["attributed"]
        for tid, records in tasks.items():  # every entry on the task of its key
            for k, _ in records:
                key = decode_key(k)
                user = key[2] if key[0] == "\x00timer:join" else key[0]
                assert partition_for(key_bytes(user), partitions) == tid
        # The new run: one task holding every task's share, at the savepoint's watermark.
        new.task.stores[0].restore([c for records in tasks.values() for c in records])
        new.task.reindex()
        new.advance_watermark(wm)
        assert sorted(new.task.stores[0].items(), key=repr) == sorted(
            old.task.stores[0].items(), key=repr
        )
        for source, e in evs[120:]:
            old.send(source, e)
            new.send(source, e)
        old.advance_watermark(NOW)
        new.advance_watermark(NOW)
        assert view(new.records("out")) == view(old.records("out")[before:])
        assert sum(view(new.records("out")).values()) > 20
        assert Counter(v["right"] is None for _, v, _ in new.records("out"))[True] > 0
    finally:
        old.close()
        new.close()
