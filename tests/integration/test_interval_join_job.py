"""An interval join on the real broker: impressions joined with the plays they led to.

Generated interaction and playback events (out of order, late, duplicated, a few
corrupt or with absurd times) go to two topics of four partitions; a worker runs the
join (both sides repartitioned by ``(user, title)``, exactly-once) until its input is
quiet. The join's read_committed output must equal the brute-force join over every
valid record sent: every (impression, play start) pair within 30 minutes, duplicates
counted, nothing twice. Allowed lateness is wide enough that no record here is late,
so the pairs do not depend on the order the worker read the partitions in.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime import Job, Json, WatermarkStrategy
from runtime.api.bindings import Bindings
from runtime.api.watermarks import DEFAULT_MIN_VALID_MS
from runtime.generator import GeneratorConfig
from tests.integration.helpers import (
    decoded,
    produce_generated,
    read_all,
    run_job_until_idle,
    unique,
)
from tests.reference.joins import Arrival, interval_join

WITHIN_MS = 30 * 60_000
LATENESS = timedelta(hours=2)


def attribution(key: tuple[str, str], imp: dict[str, Any], play: dict[str, Any]) -> dict[str, Any]:
    return {"user": key[0], "title": key[1], "impression": imp["event_id"],
            "play": play["event_id"]}  # fmt: skip


def join_job() -> Job:
    job = Job("impression_plays")
    bounded = WatermarkStrategy.bounded(timedelta(seconds=5))
    imps = job.source(
        "interactions", schema="InteractionEvent",
        timestamp=lambda e: e["event_time_ms"], watermarks=bounded,
    ).filter(lambda e: e["event_type"] == "impression", name="impressions")  # fmt: skip
    starts = job.source(
        "playback", schema="PlaybackEvent",
        timestamp=lambda e: e["event_time_ms"], watermarks=bounded,
    ).filter(lambda e: e["event_type"] == "start", name="starts")  # fmt: skip
    joined = imps.key_by("imp_key", lambda e: (e["user_id"], e["title_id"] or "")).join(
        starts.key_by("start_key", lambda e: (e["user_id"], e["title_id"])),
        "attributed",
        within=(timedelta(0), timedelta(milliseconds=WITHIN_MS)),
        allowed_lateness=LATENESS,
        output=attribution,
    )
    joined.sink("attributions", Json())
    joined.late_left().sink("late-impressions", Json())
    return job


def test_interval_join_on_the_broker_equals_brute_force(kafka: str) -> None:
    playback, interactions = unique("jplayback"), unique("jinteractions")
    out, late, dead = unique("attributions"), unique("late-imps"), unique("jdead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 4)])
    config = GeneratorConfig(
        seed=19, users=40, titles=30, interaction_ratio=0.5, out_of_order_ms=3000,
        out_of_order_rate=0.05, late_rate=0.01, late_delay_ms=(5_000, 60_000),
        duplicate_rate=0.01, malformed_rate=0.002, bad_timestamp_rate=0.002,
    )  # fmt: skip
    sent = produce_generated(
        kafka, {"playback": playback, "interactions": interactions}, config, 4_000
    )
    job = join_job()
    bindings = Bindings.for_job(job, [
        f"playback={playback}", f"interactions={interactions}", f"attributions={out}",
        f"late-impressions={late}", f"dead-letters={dead}",
    ])  # fmt: skip
    run_job_until_idle(kafka, job, bindings, idle_s=6.0)

    far = config.start_ms + 10 * 24 * 3_600_000
    arrivals = [
        Arrival(
            "left" if r.stream == "interactions" else "right",
            (r.value["user_id"], r.value["title_id"] or ""),
            r.value["event_time_ms"],
            r.value["event_id"],
            -(2**63),  # no record is late here (see the module docstring)
        )
        for r in sent
        if r.corrupt is None
        and DEFAULT_MIN_VALID_MS <= r.value["event_time_ms"] <= far
        and r.value["event_type"] == ("impression" if r.stream == "interactions" else "start")
    ]
    want = interval_join(arrivals, 0, WITHIN_MS, 0)
    want_pairs: Counter[tuple[str, str, str, str]] = Counter()
    for (key, imp, play, _), n in want.pairs.items():
        want_pairs[(key[0], key[1], imp, play)] += n
    got = Counter(
        (v["user"], v["title"], v["impression"], v["play"])
        for v in decoded(read_all(kafka, out), "")
    )
    assert len(want_pairs) > 20, "too few attributed plays to test a join"
    assert got == want_pairs
    assert read_all(kafka, late, first_wait_s=3) == []
    assert sum(want_pairs.values()) > len(want_pairs), "no duplicate to count twice"
