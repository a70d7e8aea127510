"""The workloads: each one's input, implementations, output check and how its runs go.

A :class:`Workload` says how to generate its input (once per run of the bench),
which implementations run it, which sinks they write, how their output is checked
and which scenario measures them (``bench.scenarios``): ``throughput`` (each
implementation once over the input), ``latency`` (throughput, then a paced run at
half of the peak), ``recovery`` (kill -9 mid-stream and restart).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.checks import (
    QOE_FIELDS,
    SESSION_FIELDS,
    KeyedReference,
    check_keyed,
    check_personalization,
    check_qoe,
    check_sessions,
    personalization_reference,
    qoe_reference,
    session_reference,
    strip,
)
from bench.common import BOUND_MS
from bench.inputs import clean_config, produce_generated, produce_keyed
from bench.runner import FLINK_IMPL, W1_IMPLS, Impl
from bench.topics import create_topics
from bench.w1 import PARSERS, Verdict, produce_input, verify

SESSION_GAP_MS = 30 * 60_000  # jobs.sessionization's default gap


@dataclass
class Prepared:
    """A workload's input, written once: what every implementation process is told."""

    inputs: dict[str, str]
    events: int
    reference: Any
    ends: dict[str, list[int]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


@dataclass(frozen=True)
class Setup:
    """What preparing an input needs from the command line."""

    bootstrap: str
    run_id: str
    events: int
    partitions: int
    seed: int
    users: int
    progress: Callable[[str], Callable[[int, int], None]]


@dataclass(frozen=True)
class Workload:
    """One workload of the bench."""

    name: str
    title: str
    impls: tuple[Impl, ...]
    prepare: Callable[[Setup], Prepared]
    check: Callable[[Any, str, dict[str, Any]], Verdict]
    #: Sink names of the jobs; the first is the output ``--out-topic`` names.
    sinks: tuple[str, ...] = ("counts",)
    scenario: str = "throughput"
    #: Topic configuration of the output topics (W4 stamps them with append time).
    output_config: dict[str, str] = field(default_factory=dict)
    #: What the target says, for the report.
    target: str = ""


def env_int(name: str, default: int) -> int:
    """An integer from the environment (``_`` and ``,`` allowed as separators)."""
    raw = os.environ.get(name, "").replace("_", "").replace(",", "")
    return int(raw) if raw else default


def _topic(setup: Setup, workload: str, stream: str) -> str:
    return f"bench-{setup.run_id}-{workload.lower()}-{stream}"


# --- W1 and W5: per-user counts -------------------------------------------------------


def prepare_w1(setup: Setup, workload: str = "W1") -> Prepared:
    """W1's input: PlaybackEvents on one topic, and the per-window reference."""
    topic = _topic(setup, workload, "input")
    create_topics(setup.bootstrap, [topic], setup.partitions)
    ref = produce_input(
        setup.bootstrap,
        topic,
        setup.events,
        partitions=setup.partitions,
        seed=setup.seed,
        users=setup.users,
        progress=setup.progress(f"generating {workload} input into {topic}"),
    )
    return Prepared(
        inputs={"playback": topic},
        events=ref.events,
        reference=ref,
        ends={topic: list(ref.partition_counts)},
        summary=f"{ref.events:,} PlaybackEvents, {len(ref.closed()):,} closed (user, window)",
    )


def prepare_w1f(setup: Setup) -> Prepared:
    """W1F: W1's input, ``BENCH_FLINK_EVENTS`` records (default 1,000,000, as W1; at most
    ``--events``): fewer make the Flink job's startup most of its run."""
    events = min(setup.events, env_int("BENCH_FLINK_EVENTS", 1_000_000))
    return prepare_w1(replace(setup, events=events), "W1F")


def check_w1(ref: Any, output: str, read: dict[str, Any]) -> Verdict:
    """W1/W5: the output's closed windows against the reference counts."""
    return verify(ref, PARSERS[output](next(iter(read.values()))))


# --- W2, W3, W4: the reference jobs over generated viewers -----------------------------


def _generated(setup: Setup, workload: str, streams: tuple[str, ...], fields: Any) -> Any:
    topics = {s: _topic(setup, workload, s) for s in streams}
    create_topics(setup.bootstrap, list(topics.values()), setup.partitions)
    kept: list[dict[str, Any]] = []

    def keep(_stream: str, value: dict[str, Any]) -> None:
        if fields:
            kept.append(strip(value, fields))

    produced = produce_generated(
        setup.bootstrap,
        topics,
        setup.events,
        clean_config(setup.seed, setup.users, interactions=len(streams) > 1),
        partitions=setup.partitions,
        keep=keep,
        progress=setup.progress(f"generating {workload} input"),
    )
    return topics, produced, kept


def prepare_w2(setup: Setup) -> Prepared:
    """W2's input (playback and interactions) and the brute-force sessions."""
    topics, produced, kept = _generated(setup, "W2", ("playback", "interactions"), SESSION_FIELDS)
    ref = session_reference(kept, SESSION_GAP_MS, produced.final_watermark(BOUND_MS))
    return Prepared(
        inputs=topics,
        events=produced.events,
        reference=ref,
        ends=produced.ends,
        summary=f"{produced.events:,} events, {len(ref.closed()):,} closed sessions",
    )


def prepare_w3(setup: Setup) -> Prepared:
    """W3's input (playback) and the brute-force QoE windows."""
    topics, produced, kept = _generated(setup, "W3", ("playback",), QOE_FIELDS)
    ref = qoe_reference(kept, produced.final_watermark(BOUND_MS))
    return Prepared(
        inputs=topics,
        events=produced.events,
        reference=ref,
        ends=produced.ends,
        summary=f"{produced.events:,} PlaybackEvents, {len(ref.closed()):,} closed QoE windows",
    )


def prepare_w4(setup: Setup) -> Prepared:
    """W4's input for the peak run (playback and interactions) and every user's final scores.

    The reference folds each event as it is written (it keeps only what it needs: a
    user's contributions and playbacks), then brackets each task's final watermark by
    the largest event time of its two partitions.
    """
    streams = ("playback", "interactions")
    topics = {s: _topic(setup, "W4", s) for s in streams}
    create_topics(setup.bootstrap, list(topics.values()), setup.partitions)
    ref = personalization_reference(setup.seed, setup.users)
    produced = produce_generated(
        setup.bootstrap,
        topics,
        setup.events,
        clean_config(setup.seed, setup.users, interactions=True),
        partitions=setup.partitions,
        keep=ref.receive,
        progress=setup.progress("generating W4 input"),
    )
    ref.close(produced.partition_max, BOUND_MS)
    return Prepared(
        inputs=topics,
        events=produced.events,
        reference=ref,
        ends=produced.ends,
        settings={"seed": setup.seed, "users": setup.users},
        summary=f"{produced.events:,} events, {len(ref.finals()):,} users for the peak run",
    )


# --- W6, W7: per-key state -------------------------------------------------------------


def _prepare_keyed(setup: Setup, workload: str, keys: int, repeats: int) -> Prepared:
    topic = _topic(setup, workload, "input")
    create_topics(setup.bootstrap, [topic], setup.partitions)
    produced = produce_keyed(
        setup.bootstrap,
        topic,
        keys,
        repeats,
        partitions=setup.partitions,
        start_ms=clean_config(setup.seed, 1, interactions=False).start_ms,
        progress=setup.progress(f"generating {workload} input into {topic}"),
    )
    return Prepared(
        inputs={"playback": topic},
        events=produced.events,
        reference=KeyedReference(keys, repeats),
        ends=produced.ends,
        settings={"keys": keys},
        summary=f"{keys:,} keys, then {repeats:,} of them again",
    )


def prepare_w6(setup: Setup) -> Prepared:
    """W6: ``BENCH_W6_KEYS`` keys (default 10M) once, then 1% of them again."""
    keys = env_int("BENCH_W6_KEYS", 10_000_000)
    return _prepare_keyed(setup, "W6", keys, max(keys // 100, 1))


def prepare_w7(setup: Setup) -> Prepared:
    """W7: ``BENCH_W7_KEYS`` keys (default 1M) once, then half of them again (the kill
    comes during the second pass)."""
    keys = env_int("BENCH_W7_KEYS", 1_000_000)
    return _prepare_keyed(setup, "W7", keys, max(keys // 2, 1))


# --- the registry ----------------------------------------------------------------------


def _shoal(name: str, variant: str, about: str, **kw: Any) -> Impl:
    return Impl(name, "bench.impl_shoal", variant, about=about, **kw)


SHOAL_ALO = "Shoal, RocksDB state, at-least-once"
SHOAL_EOS = "Shoal, RocksDB state, exactly-once (the default of shoal run)"

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "W1",
            "per-user count, 10 s tumbling event-time windows",
            W1_IMPLS,
            prepare_w1,
            check_w1,
            target="Shoal exactly-once >= 1.0x raw (stretch 2x), >= 5x Quix Streams",
        ),
        Workload(
            "W1F",
            "W1 on Shoal's Flink engine: steady state apart from startup",
            tuple(i for i in W1_IMPLS if i.name in ("raw", "shoal-eos")) + (FLINK_IMPL,),
            prepare_w1f,
            check_w1,
            target="Shoal on Flink, steady state >= 20,000 events/s on one slot",
        ),
        Workload(
            "W2",
            "sessionization (30-minute gap) over playback and interactions",
            (
                Impl(
                    "raw",
                    "bench.impl_raw_sessions",
                    output="sessions-json",
                    about="hand-written loop",
                ),
                _shoal("shoal-alo", "rocksdb", SHOAL_ALO, output="sessions-avro"),
                _shoal("shoal-eos", "rocksdb-eos", SHOAL_EOS, output="sessions-avro"),
            ),
            prepare_w2,
            check_sessions,
            sinks=("sessions", "session-retractions", "sessions-late-events"),
            target="Shoal exactly-once >= 0.7x raw",
        ),
        Workload(
            "W3",
            "QoE per group in 1-minute tumbling and 5-minute hopping windows, startup quantiles",
            (
                Impl("raw", "bench.impl_raw_qoe", output="qoe-json", about="hand-written loop"),
                _shoal("shoal-alo", "rocksdb", SHOAL_ALO, output="qoe-avro"),
                _shoal("shoal-eos", "rocksdb-eos", SHOAL_EOS, output="qoe-avro"),
            ),
            prepare_w3,
            check_qoe,
            sinks=("qoe-metrics", "qoe-excluded-events"),
            target="Shoal exactly-once >= 0.6x raw",
        ),
        Workload(
            "W4",
            "per-event personalization updates; latency at half of the peak rate",
            (
                Impl(
                    "raw",
                    "bench.impl_raw_personalization",
                    output="scores-avro",
                    about="hand-written loop",
                ),
                _shoal("shoal-alo", "rocksdb", SHOAL_ALO, output="scores-avro"),
                _shoal("shoal-eos", "rocksdb-eos", SHOAL_EOS, output="scores-avro"),
            ),
            prepare_w4,
            check_personalization,
            sinks=("personalization-scores",),
            scenario="latency",
            output_config={"message.timestamp.type": "LogAppendTime"},
            target="Shoal exactly-once >= 0.9x raw; p99 at half the peak <= interval + 50 ms",
        ),
        Workload(
            "W5",
            "W1 on one worker vs two workers in one consumer group",
            (
                _shoal("shoal-1-worker", "rocksdb-eos", SHOAL_EOS),
                _shoal("shoal-2-workers", "rocksdb-eos", SHOAL_EOS, processes=2),
            ),
            lambda setup: prepare_w1(setup, "W5"),
            check_w1,
            scenario="scaling",
            target="2 workers >= 1.7x 1 worker",
        ),
        Workload(
            "W6",
            "per-key count with 10M keys of RocksDB state",
            (_shoal("shoal-rocksdb", "rocksdb", SHOAL_ALO, output="keyed"),),
            prepare_w6,
            check_keyed,
            target="max RSS <= 1 GB",
        ),
        Workload(
            "W7",
            "kill -9 mid-stream with 1M keys of RocksDB state, restart",
            (
                _shoal(
                    "shoal-eos-local", "rocksdb-eos", "local RocksDB state kept", output="keyed"
                ),
                _shoal(
                    "shoal-eos-changelog",
                    "rocksdb-eos",
                    "local state deleted: restored from the changelog",
                    output="keyed",
                ),
            ),
            prepare_w7,
            check_keyed,
            scenario="recovery",
            target="<= 5 s from the kill to processing again",
        ),
    )
}


def select(spec: str) -> list[Workload]:
    """Workloads named in a comma-separated ``spec`` (``""``: all), in registry order.

    Raises:
        ValueError: naming unknown workloads.
    """
    wanted = [w.strip().upper() for w in spec.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    return [w for name, w in WORKLOADS.items() if not wanted or name in wanted]


def all_impl_names() -> list[str]:
    """Every implementation name of any workload (for ``--only``)."""
    return list(dict.fromkeys(i.name for w in WORKLOADS.values() for i in w.impls))
