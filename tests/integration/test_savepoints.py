"""Savepoints on a real broker: upgrade with state evolution, rescale, refusal, rollback.

A session job (v1, ``tests/integration/savepoint_jobs.py``) runs on two workers over
~150k playback events that cross a repartition topic while they stream in. Mid-run
``shoal savepoint`` writes savepoint A; later ``shoal stop --savepoint`` writes B
and stops the workers at that cut. Then:

* **upgrade**: v2 (session step renamed, a field with a default added to its
  accumulator, a step added) starts from B in the same group on two workers; v1's
  outputs before the cut plus v2's after it equal the brute-force sessions exactly,
  and v2's new field counts exactly the events after the cut;
* **rescale**: B restored into a fresh group on one worker gives v2's outputs again;
* **refusal**: incompatible versions are refused with one line per step, exit code
  2, and nothing is written (no topic, no offset);
* **rollback**: v1 started from A (taken before the upgrade) in a fresh group,
  after v1's outputs up to A's cut, gives the v1 reference exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.source import KafkaSource
from runtime.generator import Generator, GeneratorConfig
from runtime.savepoint.format import Savepoint
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.savepoint_jobs import GAP_MS
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.workers import ROOT, Producer, WorkerPool

PARTITIONS = 4
EVENTS = 150_000
RATE = 9_000.0
JOBS = "tests.integration.savepoint_jobs"
SENTINEL = "zz-sentinel-"

Session = tuple[str, int]  # (user, start)


def shoal(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the shoal CLI; returns its completed process (output captured)."""
    env = {**os.environ, "SHOAL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "runtime.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def reference(events: list[tuple[int, int, dict[str, Any]]],
              cut: dict[int, int]) -> dict[Session, dict[str, Any]]:  # fmt: skip
    """Brute force: sessions per user (records closer than the gap share one), with the
    number of error events read after the cut (``cut``: partition -> offset)."""
    by_user: dict[str, list[tuple[int, int, int, dict[str, Any]]]] = defaultdict(list)
    for p, off, e in events:
        by_user[e["user_id"]].append((e["event_time_ms"], p, off, e))
    out: dict[Session, dict[str, Any]] = {}
    for user, items in by_user.items():
        items.sort(key=lambda x: x[0])
        group: list[Any] = []
        for item in items + [None]:  # type: ignore[list-item]
            if item is not None and (not group or item[0] - group[-1][0] < GAP_MS):
                group.append(item)
                continue
            start, last = group[0][0], group[-1][0]
            out[(user, start)] = {
                "user_id": user, "start_ms": start, "end_ms": last + GAP_MS,
                "events": len(group),
                "seeks": sum(e["event_type"] == "seek" for _, _, _, e in group),
                "errors": sum(e["event_type"] == "error" and off >= cut[p]
                              for _, p, off, e in group),
            }  # fmt: skip
            group = [item]
    return out


def outputs(kafka: str, topic: str, ends: dict[str, int] | None = None,
            after: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Session rows of ``topic``; with ``ends``: those before (or ``after``) the offsets."""
    rows = []
    for m in read_all(kafka, topic, first_wait_s=10):
        if ends is not None and (m.offset() >= ends.get(str(m.partition()), 0)) != after:
            continue
        rows.append(json.loads(m.value()))
    return [r for r in rows if not r["user_id"].startswith(SENTINEL)]


def wait_sessions(kafka: str, topic: str, want: int, pool: WorkerPool, timeout_s: float) -> None:
    """Wait until ``want`` sessions (not sentinels) are committed to ``topic``."""
    source = KafkaSource(kafka, f"sp-watch-{uuid.uuid4().hex[:8]}", [topic])
    seen: set[Session] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want:
            assert time.monotonic() < deadline, (
                f"{len(seen)} of {want} sessions after {timeout_s}s\n" + pool.log_tail()
            )
            assert not pool.crashed(), pool.log_tail()
            for row in decoded(source.poll(5000, 0.5), ""):
                if not row["user_id"].startswith(SENTINEL):
                    seen.add((row["user_id"], row["start_ms"]))
    finally:
        source.close()


def wait_members(admin: KafkaAdmin, group: str, n: int, pool: WorkerPool) -> None:
    """Wait until ``n`` workers are in the group with partitions assigned."""
    deadline = time.monotonic() + 180
    while len([m for m in admin.group_members(group) if m.partitions]) < n:
        assert time.monotonic() < deadline and not pool.crashed(), pool.log_tail()
        time.sleep(0.5)


def keyed(rows: list[dict[str, Any]]) -> dict[Session, dict[str, Any]]:
    """Rows by session; a session output twice fails the test."""
    counts = Counter((r["user_id"], r["start_ms"]) for r in rows)
    twice = [k for k, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} sessions output more than once, e.g. {twice[:3]}"
    return {(r["user_id"], r["start_ms"]): r for r in rows}


def test_savepoint_upgrade_rescale_refusal_rollback(kafka: str, tmp_path: Path) -> None:
    playback, out = unique("sp-in"), unique("sp-out")
    admin = KafkaAdmin(kafka)
    admin.ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=515, users=900, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)  # fmt: skip
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    group = unique("sp")
    binds = [f"playback={playback}", f"sessions-out={out}", f"dead-letters={out}.dead"]
    common = ["--checkpoint-ms", "500", "--state", "rocksdb", "--partitions", "2"]
    v1 = WorkerPool(f"{JOBS}:v1", kafka, group, binds, tmp_path / "v1", extra=common)
    v1.start(0)
    v1.start(1)
    wait_members(admin, group, 2, v1)
    producer = Producer(kafka, playback, records, RATE)
    producer.start()
    sp_a, sp_b = tmp_path / "sp-a", tmp_path / "sp-b"
    try:
        while producer.sent < len(records) * 0.35:
            assert producer.is_alive() and not v1.crashed(), v1.log_tail()
            time.sleep(0.2)
        taken = shoal(tmp_path, "savepoint", "sp_sessions", "--group", group, "--to", str(sp_a),
                      "--bootstrap", kafka)  # fmt: skip
        assert taken.returncode == 0, taken.stderr + v1.log_tail()
        assert "savepoint of sp_sessions written to" in taken.stdout
        while producer.sent < len(records) * 0.7:
            assert producer.is_alive() and not v1.crashed(), v1.log_tail()
            time.sleep(0.2)
        stopped = shoal(tmp_path, "stop", "sp_sessions", "--group", group, "--savepoint",
                        str(sp_b), "--bootstrap", kafka)  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr + v1.log_tail()
        for slot in (0, 1):  # they stop on their own, with exit code 0
            assert v1.procs[slot].wait(timeout=60) == 0, v1.log_tail()
    finally:
        for slot in v1.alive():
            v1.kill(slot)
    producer.join(timeout=120)
    assert producer.error is None and producer.sent == len(records)
    last_ts = max(r.value["event_time_ms"] for r in records)
    close_all_windows(kafka, playback, last_ts + 3_600_000, PARTITIONS)

    a, b = Savepoint(sp_a).manifest, Savepoint(sp_b).manifest
    cut_a = {int(p): v["offset"] for p, v in a.sources["playback"]["partitions"].items()}
    cut_b = {int(p): v["offset"] for p, v in b.sources["playback"]["partitions"].items()}
    assert sorted(cut_b) == list(range(PARTITIONS))
    assert all(cut_a[p] <= cut_b[p] for p in cut_a) and sum(cut_a.values()) < sum(cut_b.values())
    assert b.state["sessions"]["keys"] > 100 and b.state["sessions"]["key_kinds"] == ["str"]

    # Every input event with its partition and offset: the reference knows the cut.
    msgs = read_all(kafka, playback)
    events = [(m.partition(), m.offset(), v)
              for m, v in zip(msgs, decoded(msgs, "PlaybackEvent"), strict=True)
              if not v["user_id"].startswith(SENTINEL)]  # fmt: skip
    assert len(events) == len(records)
    ref = reference(events, cut_b)
    before_b = keyed(outputs(kafka, out))  # everything v1 wrote, all before the cut
    assert all(ref[k]["end_ms"] == r["end_ms"] and ref[k]["events"] == r["events"]
               for k, r in before_b.items())  # fmt: skip

    # -- upgrade: v2 from B in the same group, two workers under one supervisor -------
    v2 = WorkerPool(f"{JOBS}:v2", kafka, group, binds, tmp_path / "v2",
                    extra=[*common, "--workers", "2", "--from-savepoint", str(sp_b),
                           "--rename", "sessions=user_sessions"])  # fmt: skip
    v2.start(0)
    try:
        wait_sessions(kafka, out, len(ref), v2, 300)
    finally:
        v2.stop_all()
    rows = outputs(kafka, out)
    got = keyed(rows)
    assert set(got) == set(ref), (len(got), len(ref))
    after = {k: r for k, r in got.items() if r.get("version") == 2}
    assert set(after) == set(got) - set(before_b) and after
    for k, r in got.items():
        want = ref[k] if k in after else {f: v for f, v in ref[k].items() if f != "errors"}
        assert {f: v for f, v in r.items() if f != "version"} == want, (k, r, ref[k])
    assert any(r["errors"] for r in after.values()), "the new field counted nothing"
    log = (tmp_path / "v2" / "logs" / "w0.log").read_text()
    assert "sessions -> user_sessions: renamed" in log and "values resolved" in log

    # -- rescale: B into a fresh group on one worker gives v2's outputs again ---------
    out2 = unique("sp-out2")
    one = WorkerPool(f"{JOBS}:v2", kafka, unique("sp-one"),
                     [f"playback={playback}", f"sessions-out={out2}", f"dead-letters={out2}.dead"],
                     tmp_path / "one", extra=[*common, "--from-savepoint", str(sp_b),
                                               "--rename", "sessions=user_sessions"])  # fmt: skip
    one.start(0)
    try:
        wait_sessions(kafka, out2, len(after), one, 300)
    finally:
        one.stop_all()
    assert keyed(outputs(kafka, out2)) == after

    # -- refusal: incompatible versions write nothing --------------------------------
    for version, expect in [("v3_no_default", "errors"), ("v3_key_type", "key type changed")]:
        g3 = unique("sp-refused")
        refused = shoal(tmp_path, "run", f"{JOBS}:{version}", "--bootstrap", kafka, "--group", g3,
                        *[x for b_ in binds for x in ("--bind", b_)], "--from-savepoint",
                        str(sp_b), "--rename", "sessions=user_sessions")  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        problems = [ln for ln in refused.stderr.splitlines() if ln.startswith("  sessions -> ")]
        assert len(problems) == 1 and expect in problems[0], refused.stderr
        assert "nothing was written" in refused.stderr
        assert not [t for t in admin.topics() if t.startswith(g3)]
        assert admin.group_offsets(g3) == {}

    # -- rollback: v1 from A in a fresh group ----------------------------------------
    out4 = unique("sp-out4")
    ref_v1 = {k: {f: v for f, v in r.items() if f != "errors"} for k, r in ref.items()}
    ends_a = a.outputs["sessions-out"]["partitions"]
    before_a = keyed(outputs(kafka, out, ends_a))
    assert set(before_a) <= set(before_b)
    binds4 = [f"playback={playback}", f"sessions-out={out4}", f"dead-letters={out4}.dead"]
    back = WorkerPool(f"{JOBS}:v1", kafka, unique("sp-back"), binds4, tmp_path / "back",
                      extra=[*common, "--from-savepoint", str(sp_a)])  # fmt: skip
    back.start(0)
    try:
        wait_sessions(kafka, out4, len(ref) - len(before_a), back, 300)
    finally:
        back.stop_all()
    rolled = keyed(list(before_a.values()) + outputs(kafka, out4))
    assert rolled == ref_v1

    # -- state as data ---------------------------------------------------------------
    dump = shoal(tmp_path, "state", "dump", str(sp_b), "sessions")
    assert dump.returncode == 0, dump.stderr
    lines = [json.loads(x) for x in dump.stdout.splitlines()]
    assert len(lines) == sum(t["rows"] for t in b.state["sessions"]["tasks"].values())
    user = lines[0]["key"]
    one_key = shoal(tmp_path, "state", "dump", str(sp_b), "sessions", "--key", user)
    assert {json.loads(x)["key"] for x in one_key.stdout.splitlines()} == {user}
    assert shoal(tmp_path, "state", "diff", str(sp_b), str(sp_b)).returncode == 0
    diff = shoal(tmp_path, "state", "diff", str(sp_a), str(sp_b))
    assert diff.returncode == 1 and "sessions:" in diff.stdout


def test_scale_and_stop_a_supervised_job(kafka: str, tmp_path: Path) -> None:
    playback, out = unique("sc-in"), unique("sc-out")
    admin = KafkaAdmin(kafka)
    admin.ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=9, users=50, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)  # fmt: skip
    records = [r for r in Generator(config).take(3000) if r.stream == "playback"]
    producer = Producer(kafka, playback, records, 50_000.0)
    producer.run()
    group = unique("sc")
    pool = WorkerPool(f"{JOBS}:v1", kafka, group,
                      [f"playback={playback}", f"sessions-out={out}", f"dead-letters={out}.dead"],
                      tmp_path, extra=["--workers", "1", "--state", "memory"])  # fmt: skip
    pool.start(0)
    try:
        wait_members(admin, group, 1, pool)
        up = shoal(tmp_path, "scale", "sp_sessions", "3", "--group", group, "--bootstrap", kafka)
        assert up.returncode == 0 and "1 -> 3 workers" in up.stdout, up.stderr + pool.log_tail()
        wait_members(admin, group, 3, pool)
        down = shoal(tmp_path, "scale", "sp_sessions", "2", "--group", group, "--bootstrap", kafka)
        assert down.returncode == 0 and "3 -> 2 workers" in down.stdout, down.stderr
        deadline = time.monotonic() + 120
        while len(admin.group_members(group)) != 2:
            assert time.monotonic() < deadline, pool.log_tail()
            time.sleep(0.5)
        stopped = shoal(tmp_path, "stop", "sp_sessions", "--group", group, "--bootstrap", kafka)
        assert stopped.returncode == 0, stopped.stderr + pool.log_tail()
        # The supervisor exits once its workers stopped, with exit code 0.
        assert pool.procs[0].wait(timeout=60) == 0, pool.log_tail()
        assert admin.group_members(group) == []
        nobody = shoal(tmp_path, "stop", "sp_sessions", "--group", group, "--bootstrap", kafka)
        assert nobody.returncode == 1 and "no live workers" in nobody.stderr
        # A stopped job with nothing in flight: its last checkpoint is the savepoint.
        offline = shoal(tmp_path, "savepoint", "sp_sessions", "--group", group, "--to",
                        str(tmp_path / "sp-stopped"), "--bootstrap", kafka)  # fmt: skip
        assert offline.returncode == 0, offline.stderr
        manifest = Savepoint(tmp_path / "sp-stopped").manifest
        offsets = manifest.sources["playback"]["partitions"]
        assert sum(p["offset"] for p in offsets.values()) == len(records)
    finally:
        for slot in pool.alive():
            pool.kill(slot)
