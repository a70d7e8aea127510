"""Savepoints on an object store: a real broker and a real S3-compatible server (moto's,
an HTTP server process on loopback).

The session job of ``tests/integration/savepoint_jobs.py`` (v1) runs on one worker.
Once it has read the first half of a small input, ``shoal savepoint --to s3://BUCKET/sp1``
takes a savepoint of the running job (endpoint from ``SHOAL_S3_ENDPOINT_URL``,
credentials from the ``AWS_*`` variables); the second half follows. Then:

* **restore**: a new group started ``--from-savepoint s3://BUCKET/sp1`` (endpoint as
  ``--storage-option``) writes, after what v1 had written by the cut, exactly the
  brute-force sessions of the whole input;
* **state as data**: ``shoal state dump s3://BUCKET/sp1 sessions`` prints every row of
  the savepoint, each equal to the brute-force session of the events before the cut.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.generator import Generator, GeneratorConfig
from runtime.savepoint.format import Savepoint
from runtime.savepoint.storage import open_storage
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.test_savepoints import (
    JOBS,
    SENTINEL,
    keyed,
    outputs,
    reference,
    shoal,
    wait_members,
    wait_sessions,
)
from tests.integration.workers import Producer, WorkerPool

if TYPE_CHECKING:
    from tests.s3 import S3Server

pytest_plugins = ["tests.s3"]

PARTITIONS = 2
EVENTS = 6_000


def wait_consumed(admin: KafkaAdmin, group: str, topic: str, n: int, pool: WorkerPool) -> None:
    """Wait until the group has committed offsets past ``n`` records of ``topic``."""
    deadline = time.monotonic() + 120
    while True:
        done = sum(off for (t, _), (off, _) in admin.group_offsets(group).items() if t == topic)
        if done >= n:
            return
        assert time.monotonic() < deadline and not pool.crashed(), pool.log_tail()
        time.sleep(0.3)


def test_savepoint_to_s3_and_restore_from_it(
    kafka: str, tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():  # the commands and workers inherit them
        monkeypatch.setenv(name, value)
    url = f"s3://{s3_server.create_bucket()}/sp1"
    playback, out = unique("s3sp-in"), unique("s3sp-out")
    admin = KafkaAdmin(kafka)
    admin.ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=77, users=120, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)  # fmt: skip
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    half = len(records) // 2
    group = unique("s3sp")
    binds = [f"playback={playback}", f"sessions-out={out}", f"dead-letters={out}.dead"]
    common = ["--checkpoint-ms", "300", "--state", "memory", "--partitions", "2"]
    v1 = WorkerPool(f"{JOBS}:v1", kafka, group, binds, tmp_path / "v1", extra=common)
    v1.start(0)
    try:
        wait_members(admin, group, 1, v1)
        Producer(kafka, playback, records[:half], 50_000.0).run()
        wait_consumed(admin, group, playback, half, v1)
        taken = shoal(tmp_path, "savepoint", "sp_sessions", "--group", group, "--to", url,
                      "--bootstrap", kafka)  # fmt: skip
        assert taken.returncode == 0, taken.stderr + v1.log_tail()
        assert f"savepoint of sp_sessions written to {url}:" in taken.stdout, taken.stdout
        Producer(kafka, playback, records[half:], 50_000.0).run()
    finally:
        for slot in v1.alive():
            v1.kill(slot)
    last_ts = max(r.value["event_time_ms"] for r in records)
    close_all_windows(kafka, playback, last_ts + 3_600_000, PARTITIONS)

    # The savepoint is on the server, complete (its manifest last), and nowhere else.
    storage = open_storage(url, s3_server.options())
    files = storage.list()
    assert files[0] == "manifest.json" and all(f.startswith("state/sessions/") for f in files[1:])
    assert not list(tmp_path.rglob("manifest.json"))
    manifest = Savepoint(storage).manifest
    cut = {int(p): v["offset"] for p, v in manifest.sources["playback"]["partitions"].items()}
    # The job had read the first half, and nothing more was there, at the cut.
    assert sorted(cut) == list(range(PARTITIONS)) and sum(cut.values()) == half
    assert manifest.state["sessions"]["keys"] > 0

    msgs = read_all(kafka, playback)
    events = [(m.partition(), m.offset(), v)
              for m, v in zip(msgs, decoded(msgs, "PlaybackEvent"), strict=True)
              if not v["user_id"].startswith(SENTINEL)]  # fmt: skip
    assert len(events) == len(records)
    ref = {k: {f: v for f, v in r.items() if f != "errors"}
           for k, r in reference(events, cut).items()}  # fmt: skip

    # -- restore: a new group from the S3 savepoint, endpoint as a storage option ------
    monkeypatch.delenv("SHOAL_S3_ENDPOINT_URL")
    out2 = unique("s3sp-out2")
    binds2 = [f"playback={playback}", f"sessions-out={out2}", f"dead-letters={out2}.dead"]
    before = keyed(outputs(kafka, out, manifest.outputs["sessions-out"]["partitions"]))
    restored = WorkerPool(f"{JOBS}:v1", kafka, unique("s3sp-new"), binds2, tmp_path / "new",
                          extra=[*common, "--from-savepoint", url, "--storage-option",
                                 f"endpoint_url={s3_server.endpoint}"])  # fmt: skip
    restored.start(0)
    try:
        wait_sessions(kafka, out2, len(ref) - len(before), restored, 180)
    finally:
        restored.stop_all()
    after = outputs(kafka, out2)
    assert before and after and keyed(list(before.values()) + after) == ref
    log = (tmp_path / "new" / "logs" / "w0.log").read_text()
    assert f"from savepoint {url} (sp_sessions" in log and "sessions: kept" in log, log[-3000:]

    # -- state as data: every dumped row is a brute-force session before the cut -------
    dump = shoal(tmp_path, "state", "dump", url, "sessions",
                 "--storage-option", f"endpoint_url={s3_server.endpoint}")  # fmt: skip
    assert dump.returncode == 0, dump.stderr
    rows = [json.loads(line) for line in dump.stdout.splitlines()]
    assert len(rows) == sum(t["rows"] for t in manifest.state["sessions"]["tasks"].values())
    before_cut = [(p, off, e) for p, off, e in events if off < cut[p]]
    at_cut = reference(before_cut, cut)
    for row in rows:
        session = at_cut.get((row["key"], row["start"]))
        assert session is not None, row
        assert (row["end"], row["acc"]) == (
            session["end_ms"], {"events": session["events"], "seeks": session["seeks"]}
        ), row  # fmt: skip
