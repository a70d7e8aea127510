"""The verdict's replay: a job's own graph over recorded input partitions, in the test
driver, against the brute-force window counts (no broker: the records are given)."""

from __future__ import annotations

import json
import zlib
from collections import defaultdict

import pytest

from connectors.codecs import codec_factory
from connectors.kafka.ranges import RangeRecord
from jobs.user_counts import job as user_counts
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.chaos.replay import Span, replay
from runtime.generator import Generator, GeneratorConfig
from tests.integration.chaos_jobs import title_counts
from tests.reference.counts import window_counts

START_MS = 1_760_000_000_000


def _partitions(n: int) -> tuple[dict[tuple[str, int], list[RangeRecord]], list[dict]]:
    config = GeneratorConfig(start_ms=START_MS, seed=3, users=40, late_rate=0.0,
                             duplicate_rate=0.0, malformed_rate=0.0, bad_timestamp_rate=0.0,
                             interaction_ratio=0.0)  # fmt: skip
    events = [r.value for r in Generator(config).take(3_000) if r.stream == "playback"]
    encode = codec_factory()("PlaybackEvent").encode
    parts: dict[tuple[str, int], list[RangeRecord]] = defaultdict(list)
    for e in events:
        p = zlib.crc32(e["user_id"].encode()) % n
        tp = ("playback", p)
        parts[tp].append(RangeRecord(e["user_id"].encode(), encode(e), e["event_time_ms"],
                                     len(parts[tp])))  # fmt: skip
    return dict(parts), events


@pytest.mark.parametrize(
    ("job", "sink", "key"),
    [(user_counts, "user-counts", "user_id"), (title_counts, "title-counts", "title_id")],
    ids=["per-partition tasks", "repartitioned"],
)
def test_replay_equals_brute_force_window_counts(job: Job, sink: str, key: str) -> None:
    parts, events = _partitions(3)
    end = Span({tp: len(r) for tp, r in parts.items()}, {},
               {tp: START_MS + 10**9 for tp in parts})  # fmt: skip
    outputs = replay(job, Bindings.for_job(job), parts, end)
    got = [json.loads(value) for s, _, value in outputs if s == sink]  # default: topic = sink
    assert len(got) == len(outputs)
    counted = {(o[key], o["window_start_ms"]): o["count"] for o in got}
    assert len(counted) == len(got)
    assert counted == window_counts(events, key=key)


@pytest.mark.parametrize("recorded", [False, True], ids=["natural", "recorded"])
def test_replay_ends_at_the_watermark_the_tasks_reached(recorded: bool) -> None:
    """Without a recorded watermark each task's own (last event - 5 s) closes windows;
    a higher recorded one (an idle partition let the task move on) closes all."""
    parts, events = _partitions(2)
    last = {tp: max(r.timestamp_ms for r in recs) for tp, recs in parts.items()}
    marks = {tp: ts + 60_000 for tp, ts in last.items()} if recorded else {}
    end = Span({tp: len(r) for tp, r in parts.items()}, {}, marks)
    outputs = replay(user_counts, Bindings.for_job(user_counts), parts, end)
    got = {(o["user_id"], o["window_start_ms"]): o["count"]
           for o in (json.loads(v) for _, _, v in outputs)}  # fmt: skip
    owner = {r.key.decode(): tp for tp, recs in parts.items() for r in recs if r.key}
    want = {
        (user, start): n
        for (user, start), n in window_counts(events).items()
        if recorded or start + 10_000 <= last[owner[user]] - 5_000
    }
    assert got == want
    assert recorded or len(want) < len(window_counts(events))
