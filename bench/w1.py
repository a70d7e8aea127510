"""W1: per-user count of PlaybackEvents in 10-second tumbling event-time windows.

Input: ``events`` PlaybackEvents from the generator (no late, duplicate, malformed
or bad-timestamp records; bounded disorder of up to 2 s stays), Avro
single-object encoded, keyed by user id, on ``partitions`` partitions. The
partition of a record is chosen here (CRC-32 of the key, like librdkafka's
default), so the reference knows where each record went.

The reference, computed while producing: the count of every ``(user, window
start)``, and the largest event time of each partition. Its final watermark is
``min over partitions (largest event time) - BOUND_MS``: the watermark an engine
reaches once it has read everything, whatever the order it read the partitions in.

Correctness: every window whose end is strictly below that final watermark has
closed in every implementation (whether it fires at ``watermark >= end`` or
``> end``, per partition or per task). Those windows — and only those — are
compared: the implementation's output must hold exactly the reference's set of
``(user, window start)`` there, each with the reference count (for a window
emitted more than once, its last value counts). Windows that end later may or may
not have been emitted and are not compared.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.common import BOUND_MS, WINDOW_MS
from connectors.codecs import codec_factory
from connectors.kafka.sink import KafkaSink
from runtime.generator import Generator, GeneratorConfig

NO_TIME = -(2**63)
WindowKey = tuple[str, int]


@dataclass
class Reference:
    """The brute-force answer over the generated input."""

    events: int = 0
    counts: dict[WindowKey, int] = field(default_factory=dict)
    partition_max: list[int] = field(default_factory=list)
    #: Records per partition: the end offsets of the input topic.
    partition_counts: list[int] = field(default_factory=list)

    @property
    def final_watermark(self) -> int:
        """The watermark every implementation reaches after the whole input."""
        return min(self.partition_max) - BOUND_MS

    def closed(self) -> dict[WindowKey, int]:
        """The windows that are compared: end strictly below the final watermark."""
        wm = self.final_watermark
        return {k: c for k, c in self.counts.items() if k[1] + WINDOW_MS < wm}


@dataclass(frozen=True)
class Verdict:
    """How an implementation's output compares with the reference."""

    correct: bool
    compared: int
    missing: int
    wrong: int
    extra: int
    emitted: int
    repeated: int
    examples: tuple[str, ...] = ()
    #: What was compared (windows, sessions, keys).
    what: str = "windows"

    def summary(self) -> str:
        """One line for logs."""
        text = (
            f"compared {self.compared} {self.what}: missing {self.missing}, wrong {self.wrong}, "
            f"unexpected {self.extra}; {self.emitted} outputs ({self.repeated} repeated)"
        )
        if self.examples:
            text += "; e.g. " + ", ".join(self.examples)
        return text


def generator_config(seed: int, users: int) -> GeneratorConfig:
    """The generator settings of W1: no faults, only playback events."""
    return GeneratorConfig(
        seed=seed,
        users=users,
        late_rate=0.0,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
        duplicate_rate=0.0,
        interaction_ratio=0.0,
    )


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a key (CRC-32, as librdkafka's default partitioner)."""
    return zlib.crc32(key) % partitions


def produce_input(
    bootstrap: str,
    topic: str,
    events: int,
    *,
    partitions: int,
    seed: int,
    users: int,
    progress: Callable[[int, int], None] | None = None,
) -> Reference:
    """Generate ``events`` PlaybackEvents into ``topic``; return the reference."""
    encode = codec_factory()("PlaybackEvent").encode
    sink = KafkaSink(bootstrap)
    produce, poll = sink.producer.produce, sink.producer.poll
    ref = Reference(partition_max=[NO_TIME] * partitions, partition_counts=[0] * partitions)
    counts, pmax, pcount = ref.counts, ref.partition_max, ref.partition_counts
    n = 0
    for rec in Generator(generator_config(seed, users)):
        if rec.stream != "playback":
            continue
        value = rec.value
        t = value["event_time_ms"]
        p = partition_of(rec.key, partitions)
        data = encode(value)
        while True:
            try:
                produce(topic, data, rec.key, partition=p)
                break
            except BufferError:
                poll(0.05)
        if t > pmax[p]:
            pmax[p] = t
        pcount[p] += 1
        wk = (value["user_id"], t - t % WINDOW_MS)
        counts[wk] = counts.get(wk, 0) + 1
        n += 1
        if progress is not None and (n % 20_000 == 0 or n == events):
            progress(n, events)
        if n >= events:
            break
    sink.flush()
    ref.events = n
    return ref


def parse_w1_json(
    records: Iterable[tuple[bytes | None, bytes | None]],
) -> list[tuple[WindowKey, int]]:
    """Outputs in the common W1 format (see ``bench.common.w1_value``)."""
    out = []
    for _, value in records:
        if value is None:
            continue
        v = json.loads(value)
        out.append(((v["user_id"], int(v["window_start_ms"])), int(v["count"])))
    return out


def parse_faust_changelog(
    records: Iterable[tuple[bytes | None, bytes | None]],
) -> list[tuple[WindowKey, int]]:
    """A Faust windowed table's changelog: key ``[user, [start_s, end_s]]``, value count."""
    out = []
    for key, value in records:
        if key is None or value is None:
            continue
        user, (start_s, _end_s) = json.loads(key)
        out.append(((str(user), round(float(start_s) * 1000)), int(json.loads(value))))
    return out


PARSERS: dict[str, Callable[[Iterable[tuple[bytes | None, bytes | None]]], list[Any]]] = {
    "w1-json": parse_w1_json,
    "faust-changelog": parse_faust_changelog,
}


def verify(ref: Reference, outputs: list[tuple[WindowKey, int]]) -> Verdict:
    """Compare outputs with the reference (see the module docstring)."""
    final: dict[WindowKey, int] = {}
    repeated = 0
    for key, count in outputs:
        if key in final:
            repeated += 1
        final[key] = count
    expected = ref.closed()
    wm = ref.final_watermark
    got = {k: c for k, c in final.items() if k[1] + WINDOW_MS < wm}
    missing = [k for k in expected if k not in got]
    wrong = [k for k, c in expected.items() if k in got and got[k] != c]
    extra = [k for k in got if k not in expected]
    examples = [f"{u}@{s}: expected {expected[(u, s)]}, got {got[(u, s)]}" for u, s in wrong[:3]]
    examples += [f"{u}@{s}: missing" for u, s in missing[:3]]
    examples += [f"{u}@{s}: unexpected" for u, s in extra[:3]]
    return Verdict(
        correct=not missing and not wrong and not extra and bool(expected),
        compared=len(expected),
        missing=len(missing),
        wrong=len(wrong),
        extra=len(extra),
        emitted=len(outputs),
        repeated=repeated,
        examples=tuple(examples),
    )


def print_progress(label: str) -> Callable[[int, int], None]:
    """A progress line on stderr, rewritten in place."""
    started = time.monotonic()
    tty = sys.stderr.isatty()
    shown = [-1]

    def show(done: int, total: int) -> None:
        pct = 100 * done // total
        if not tty and pct // 25 == shown[0] and done < total:
            return  # not a terminal: a line per quarter
        shown[0] = pct // 25
        rate = done / max(time.monotonic() - started, 1e-9)
        text = f"{label}: {done:,}/{total:,} ({pct}%, {rate:,.0f}/s)"
        sys.stderr.write(f"\r{text}" if tty else f"{text}\n")
        if tty and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
