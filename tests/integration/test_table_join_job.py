"""Table joins on the real broker: plays enriched from a title table on a compacted topic.

A title table (JSON values, keyed by title, a bad record and tombstones among them)
goes to a compacted topic of two partitions, plays (keyed by title too) to a stream
topic of two partitions. One job joins the plays with the table twice: as a global
table looked up by ``key=`` (left join) and as a co-partitioned table by the plays'
own key (inner join). A worker runs it exactly-once in three phases:

1. the table, then plays: the table is read up to its end before any play;
2. while the worker runs, table updates and tombstones are written and applied (the
   test waits until the worker's table state shows the last one), then more plays;
3. with the worker stopped, more table updates; a new worker of the same group reads
   the table again when its tasks open, then more plays.

The read_committed output must equal the brute-force reference over the table's
history as each phase's plays saw it (as multisets: partitions are read in any
order); the bad table record is dead-lettered, naming the table topic and offset.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from connectors.wire import WireConfig
from runtime import Job, Json
from runtime.api.bindings import Bindings
from runtime.composition import kafka_runner
from runtime.engine.worker import WorkerOptions
from runtime.runner import RunConfig
from tests.integration.helpers import decoded, read_all, run_until_quiet, unique
from tests.reference.tables import Record, Update, table_join

T0 = 1_700_000_000_000
TITLES = [f"t{i}" for i in range(12)]


def genre_of(key: Any, play: dict[str, Any], title: dict[str, Any] | None) -> dict[str, Any]:
    return {"play": play["id"], "title": key, "genre": None if title is None else title["genre"]}


def table_job() -> Job:
    job = Job("titles-enrich")
    plays = job.source("plays", schema="", timestamp=lambda e: e["ts"])
    catalogue = job.table("catalogue", schema="", kind="global")
    shards = job.table("shards", schema="")
    plays.join_table(catalogue, "with_genre", key=lambda e: e["title"], how="left",
                     output=genre_of).sink("global-out", Json())  # fmt: skip
    plays.key_by("by_title", lambda e: e["title"], repartition=False).join_table(
        shards, "with_shard_genre", output=genre_of
    ).sink("copart-out", Json())
    return job


def write_table(sink: KafkaSink, topics: list[str], updates: list[Update]) -> None:
    for u in updates:
        value = None if u.value is None else json.dumps(u.value).encode()
        for topic in topics:
            sink.write(topic, u.key.encode(), value)
    sink.flush()


def write_plays(sink: KafkaSink, topic: str, first_id: int, n: int) -> list[Record]:
    out = []
    for i in range(first_id, first_id + n):
        title = TITLES[(i * 7) % len(TITLES)]
        play = {"id": i, "title": title, "ts": T0 + i * 1000}
        sink.write(topic, title.encode(), json.dumps(play).encode())
        out.append(Record(title, play))
    sink.flush()
    return out


def phase_updates(phase: int) -> list[Update]:
    """Genres of most titles; some deleted, some back, per phase."""
    ups = [Update(t, {"genre": f"g{phase}-{i % 3}"}) for i, t in enumerate(TITLES[: 8 + phase])]
    ups += [Update(TITLES[phase], None), Update(TITLES[phase + 3], None)]
    return ups


def test_table_join_on_the_broker_equals_the_reference(kafka: str) -> None:
    plays_t, catalogue_t, shards_t = unique("tplays"), unique("catalogue"), unique("shards")
    global_out, copart_out, dead = unique("tglobal"), unique("tcopart"), unique("tdead")
    compacted = {"cleanup.policy": "compact"}
    KafkaAdmin(kafka).ensure_topics([
        TopicSpec(plays_t, 2), TopicSpec(catalogue_t, 2, config=compacted),
        TopicSpec(shards_t, 2, config=compacted),
    ])  # fmt: skip
    job = table_job()
    bindings = Bindings.for_job(job, [
        f"plays={plays_t}", f"catalogue={catalogue_t}", f"shards={shards_t}",
        f"global-out={global_out}", f"copart-out={copart_out}", f"dead-letters={dead}",
    ])  # fmt: skip
    config = RunConfig(
        bootstrap=kafka,
        state="rocksdb",
        state_dir=Path(tempfile.mkdtemp(prefix="shoal-state-")),
        group=unique("tables"),
        options=WorkerOptions(batch_size=500, checkpoint_interval_ms=500),
        wire=WireConfig(),
    )
    sink = KafkaSink(kafka)
    history: list[Update | Record] = []

    # 1. the table first (a bad record among it), then plays
    write_table(sink, [catalogue_t, shards_t], phase_updates(1))
    sink.write(catalogue_t, b"t0", b"{not json")
    sink.write(catalogue_t, b"t0", json.dumps({"genre": "g1-fixed"}).encode())
    sink.flush()
    history += phase_updates(1) + [Update("t0", {"genre": "g1-fixed"})]
    history += write_plays(sink, plays_t, 0, 60)
    runner = kafka_runner(job, bindings, config)
    try:
        run_until_quiet(runner, idle_s=4.0, timeout_s=120.0)
        # 2. updates while it runs, applied before the next plays
        updates = phase_updates(2)
        write_table(sink, [catalogue_t, shards_t], updates)
        history += updates
        last = updates[-1]
        deadline = time.monotonic() + 60
        worker = runner.worker
        while (
            worker.query_state("catalogue", last.key).entries
            or worker.query_state("shards", last.key).entries
        ):
            assert time.monotonic() < deadline, "the table update never reached the worker"
            runner.step()
        history += write_plays(sink, plays_t, 60, 60)
        run_until_quiet(runner, idle_s=4.0, timeout_s=120.0)
    finally:
        runner.close()

    # 3. the table changes while no worker runs; a restart reads it again
    updates = phase_updates(3)
    write_table(sink, [catalogue_t, shards_t], updates)
    history += updates
    history += write_plays(sink, plays_t, 120, 60)
    runner = kafka_runner(job, bindings, config)
    try:
        run_until_quiet(runner, idle_s=4.0, timeout_s=120.0)
        t = runner.worker.query_state("catalogue", "t1").entries
        assert [v for _, _, v in t] == [{"genre": "g3-1"}]  # answered by one task only
    finally:
        runner.close()

    got_global = Counter(json.dumps(v, sort_keys=True)
                         for v in decoded(read_all(kafka, global_out), ""))  # fmt: skip
    got_copart = Counter(json.dumps(v, sort_keys=True)
                         for v in decoded(read_all(kafka, copart_out), ""))  # fmt: skip
    want_global = Counter(json.dumps(v, sort_keys=True)
                          for v in table_join(history, "left", genre_of))  # fmt: skip
    shard_history = [e for e in history if not (isinstance(e, Update) and e.key == "t0"
                     and e.value == {"genre": "g1-fixed"})]  # fmt: skip
    want_copart = Counter(json.dumps(v, sort_keys=True)
                          for v in table_join(shard_history, "inner", genre_of))  # fmt: skip
    assert sum(want_global.values()) == 180
    assert 0 < sum(want_copart.values()) < 180  # deleted titles drop plays
    assert got_global == want_global
    assert got_copart == want_copart
    dead_letters = decoded(read_all(kafka, dead), "DeadLetter")
    assert dead_letters, "the bad table record was not dead-lettered"
    # Once per run (read again at the restart), from the task that reports its partition.
    assert {(d["step"], d["source_topic"], d["original_value"]) for d in dead_letters} == {
        ("catalogue", catalogue_t, b"{not json")
    }
    assert len(dead_letters) == 2
