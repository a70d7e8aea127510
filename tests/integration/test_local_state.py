"""Local RocksDB state is reused after a restart only if it is the committed checkpoint.

A worker keeps its state on local disk and, when it gets a partition back, reuses
that state instead of replaying the changelog, but only when the state was written
by exactly the checkpoint the group has committed. Sequence numbers alone are not
enough: another worker, or an earlier run in the same folder, can have written a
store under the same number with other contents.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from jobs.user_counts import build
from runtime.api.bindings import Bindings
from runtime.generator import Generator, GeneratorConfig
from runtime.runner import worker_state_dir
from runtime.state.rocksdb import RocksDBBackend
from tests.integration.helpers import decoded, read_all, run_job_until_idle, unique
from tests.reference.counts import window_counts

PARTITIONS = 2
META = "shoal.checkpoint"  # the engine's bookkeeping key in every store


def _produce(bootstrap: str, topic: str, values: list[dict]) -> None:
    encode = codec_factory()("PlaybackEvent").encode
    sink = KafkaSink(bootstrap)
    for v in values:
        sink.write(topic, v["user_id"].encode(), encode(v), None)
    sink.flush()


def _counts(values: list[dict], closed_before_ms: int) -> dict[tuple[str, int], int]:
    """The reference's counts of the windows that end by ``closed_before_ms``."""
    return {k: n for k, n in window_counts(values).items() if k[1] + 10_000 <= closed_before_ms}


def test_local_state_of_another_commit_is_not_reused(kafka: str, tmp_path: Path) -> None:
    playback, out, dead = unique("ls-in"), unique("ls-out"), unique("ls-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=5, users=60, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0, out_of_order_rate=0.0)
    values = sorted((r.value for r in Generator(config).take(6_000) if r.stream == "playback"),
                    key=lambda v: v["event_time_ms"])
    half = len(values) // 2
    job = build(name=unique("ls-job"))
    bindings = Bindings.for_job(job, [f"playback={playback}", f"user-counts={out}",
                                      f"dead-letters={dead}"])
    group = unique("ls-group")
    state_dir = tmp_path / "state"

    _produce(kafka, playback, values[:half])
    run_job_until_idle(kafka, job, bindings, state="rocksdb", state_dir=state_dir, group=group)

    # Make each local store look like state of the same checkpoint number written by
    # another commit: same sequence number, other contents (here: none at all).
    backend = RocksDBBackend(worker_state_dir(state_dir, "w0", job.name, group))
    marked = 0
    for p in range(PARTITIONS):
        store = backend.open_store(job.name, "counts_10s", p)
        meta = store.get_meta(META)
        if meta is not None and len(store):
            seq = json.loads(meta)["seq"]
            store.clear()
            store.put_meta(META, json.dumps({"seq": seq, "id": "another-commit"}).encode())
            store.checkpoint()
            marked += 1
        store.close()
    backend.close()
    assert marked, "the first run left no local state to tamper with"

    # The second half keeps adding to windows that were open at the first stop.
    _produce(kafka, playback, values[half:])
    worker = run_job_until_idle(kafka, job, bindings, state="rocksdb", state_dir=state_dir,
                                group=group)
    assert worker.restored_records > 0, "the tampered local state was reused"

    watermark = min(worker.last_watermarks.values())
    want = _counts(values, watermark)
    got = Counter()
    rows = decoded(read_all(kafka, out), "")
    for row in rows:
        got[(row["user_id"], row["window_start_ms"])] += row["count"]
    assert len(rows) == len(want)
    assert dict(got) == want
