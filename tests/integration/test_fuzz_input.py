"""Bad input at scale: about 100,000 hostile records mixed into good traffic of a running job.

The job is ``title_counts`` (``tests/integration/chaos_jobs.py``): events per title
in 10 s windows. Its input is keyed by user, so every record crosses the internal
repartition topic ``<group>.by_title.repartition`` and every good record is in the
output: one lost, duplicated or miscounted record shows. Two ``shoal run`` workers
(exactly-once, RocksDB, HTTP service on a free port) read a 4-partition playback topic
while the test produces 50,000 generated playback events (plus one far-later record per
partition, so every window closes) with the hostile records below mixed in at seeded
random places (``random.Random(SEED)``; the counts are fixed). Halfway through,
hostile records are also written straight into the internal topic.

==========================  =======  ====================================================
kind                        records  what it is, and what must happen to it
==========================  =======  ====================================================
``random_bytes``             22,000  0-300 random bytes: dead letter (DecodeError)
``truncated_avro``           19,000  a good single-object record cut short: dead letter
``unknown_fingerprint``      14,000  ``C3 01`` + 8 random bytes + a good body: dead letter
``huge_length``              14,000  a string length varint claiming 2^62 bytes inside an
                                     otherwise valid prefix: dead letter
``wrong_magic``              10,000  a good body behind other magic bytes (random, a
                                     Confluent-style header, ``Obj\\x01``) or as JSON
``ts_zero``                   2,000  event_time_ms 0: dead letter (TimestampError)
``ts_negative``               2,000  event_time_ms < 0: dead letter (TimestampError)
``ts_year_3000``              2,000  event_time_ms in the year 3000: dead letter
``ts_max_long``               2,000  event_time_ms 2^63-1: dead letter
``ts_two_hours_ahead``        2,000  two hours ahead of the clock (the bound is ten
                                     minutes): dead letter (TimestampError)
``ts_missing``                2,000  written without event_time_ms (a writer schema no
                                     version of PlaybackEvent has): dead letter
``tombstone``                 1,000  no value at all: dead letter
``null_key``                  5,000  good records without a key: processed
``huge_key``                     10  good records with a 1,000,000-byte key: processed
``huge_key_junk``                10  junk behind a 1,000,000-byte key: dead letter (too
                                     large for the dead-letter topic as it is, so the
                                     dead letter leaves the original out)
``oversized``                    20  900 KB - 1 MB of junk, under the broker's limit:
                                     dead letter (without the original when that
                                     would make it too large to write)
``too_large``                     4  1.2 MB of junk: the broker refuses it at produce
                                     time, so it is not an input (counted only if acked)
``internal``                  3,000  on the repartition topic: junk, crafted pickles
                                     (one would create a marker file), truncated and
                                     misshapen internal records, markers of tasks that
                                     do not exist, msgpack bombs, empty and null values:
                                     dead letter of step ``by_title``
==========================  =======  ====================================================

Only what the broker acknowledged counts (delivery reports give each record's
partition and offset). The test prints ``fuzz: good=G bad=B processed=P late=L
dead_lettered=D crashed=C``: G good records and B hostile ones acknowledged (the
internal ones included); P, L and D summed over the two workers' ``/metrics``
(``shoal_step_records_*_total``): P processed by the source step, L late and D
dead-lettered at the entry steps; C workers that exited before they were stopped or
not with 0 when stopped (none is ever restarted, and a rewind, which would count its
replay twice, fails the test too). It asserts: no
worker exited on its own or uncleanly (``C == 0``); at the entry steps (the source
``playback`` and the internal source ``by_title``) every input is processed, late or
dead-lettered (``P + L + D == G + B``), exactly the valid ones processed; every record
the source processed arrives through the internal topic; every hostile record meant to
be rejected is a dead letter carrying its own topic, partition and offset, and nothing
else is; and the counts per title and window equal a brute-force reference exactly.
"""

from __future__ import annotations

import json
import pickle  # only to craft hostile records the worker must refuse
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.avro import AvroSerde, SchemaRepository
from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from runtime.engine.repartition import encode_marker, encode_record
from runtime.engine.topics import repartition_topic
from runtime.generator import Generator, GeneratorConfig
from runtime.state.codec import pack
from tests.integration.chaos_jobs import WINDOW_MS
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_hostile_internal_records import Touch
from tests.integration.workers import WorkerPool

pytestmark = pytest.mark.integration

SEED = 6
PARTITIONS = 4
WORKERS = 2
GOOD = 50_000
HOUR = 3_600_000
BIG_KEY = 1_000_000
COUNTS = {
    "random_bytes": 22_000,
    "truncated_avro": 19_000,
    "unknown_fingerprint": 14_000,
    "huge_length": 14_000,
    "wrong_magic": 10_000,
    "ts_zero": 2_000,
    "ts_negative": 2_000,
    "ts_year_3000": 2_000,
    "ts_max_long": 2_000,
    "ts_two_hours_ahead": 2_000,
    "ts_missing": 2_000,
    "tombstone": 1_000,
    "null_key": 5_000,
    "huge_key": 10,
    "huge_key_junk": 10,
    "oversized": 20,
    "too_large": 4,
    "internal": 3_000,
}
#: Hostile kinds whose records are valid data: processed, and part of the reference.
VALID = {"null_key", "huge_key"}
TIMESTAMP_KINDS = {"ts_zero", "ts_negative", "ts_year_3000", "ts_max_long", "ts_two_hours_ahead"}
YEAR_3000_MS = 32_503_680_000_000
STEPS = ("playback", "by_title", "title_counts_10s")
SENTINEL = "zz-sentinel"


@dataclass
class Item:
    """One record the test produces, and where the broker put it."""

    kind: str  # "good", "sentinel" or a hostile kind
    key: bytes | None
    value: bytes | None
    event: dict[str, Any] | None = None  # the decoded event of a valid record
    partition: int | None = None  # forced partition (sentinels, internal records)
    where: tuple[str, int, int] | None = None  # (topic, partition, offset) once acked
    refused: str | None = None  # the delivery error, if the broker refused it


def zigzag_varint(n: int) -> bytes:
    """Avro's encoding of a long (zig-zag, then base-128 varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


class Hostile:
    """Makes the hostile records of each kind from good events (seeded)."""

    def __init__(self, rng: random.Random, events: list[dict[str, Any]], tmp: Path) -> None:
        self.rng = rng
        self.events = events
        codecs = codec_factory()
        self.serde = codecs("PlaybackEvent").serde
        self.encode = self.serde.encode
        self.repository = codecs.repository
        schema = dict(self.serde.schema.schema)
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "event_time_ms"]
        self.without_time = AvroSerde("PlaybackEvent", SchemaRepository([schema]))
        self.strings = [f["name"] for f in self.serde.schema.schema["fields"]
                        if f["type"] == "string" or f["type"] == ["null", "string"]]  # fmt: skip
        self.marker = tmp / "pwned"
        self.counter = 0

    def event(self) -> dict[str, Any]:
        return dict(self.rng.choice(self.events))

    def junk(self, low: int, high: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(low, high))

    def make(self, kind: str) -> Item:
        """One record of ``kind`` (the valid kinds are made from good records instead)."""
        rng, ev = self.rng, self.event()
        key = ev["user_id"].encode()
        if kind == "random_bytes":
            return Item(kind, key if rng.random() < 0.5 else None, self.junk(0, 300))
        if kind == "truncated_avro":
            data = self.encode(ev)
            return Item(kind, key, data[: rng.randrange(len(data))])
        if kind == "unknown_fingerprint":
            fingerprint = rng.randbytes(8)
            while self.repository.by_fingerprint(fingerprint) is not None:
                fingerprint = rng.randbytes(8)
            return Item(kind, key, b"\xc3\x01" + fingerprint + self.encode(ev)[10:])
        if kind == "huge_length":
            self.counter += 1
            field, mark = rng.choice(self.strings), f"~fuzz-{self.counter:09d}~"
            data = self.encode({**ev, field: mark})
            plain = zigzag_varint(len(mark)) + mark.encode()
            assert data.count(plain) == 1
            return Item(kind, key, data.replace(plain, zigzag_varint(2**62) + mark.encode()))
        if kind == "wrong_magic":
            body = self.encode(ev)[10:]
            choice = rng.randrange(4)
            if choice == 0:
                magic = rng.randbytes(2)
                while magic == b"\xc3\x01":
                    magic = rng.randbytes(2)
                return Item(kind, key, magic + rng.randbytes(8) + body)
            if choice == 1:  # Confluent Schema Registry framing
                return Item(kind, key, b"\x00" + rng.randbytes(4) + body)
            if choice == 2:  # an Avro object container file
                return Item(kind, key, b"Obj\x01" + body)
            return Item(kind, key, json.dumps(ev).encode())
        if kind in TIMESTAMP_KINDS:
            now = time.time_ns() // 1_000_000
            stamp = {
                "ts_zero": 0,
                "ts_negative": -rng.randint(1, 2**62),
                "ts_year_3000": YEAR_3000_MS + rng.randrange(HOUR),
                "ts_max_long": 2**63 - 1,
                "ts_two_hours_ahead": now + 2 * HOUR,
            }[kind]
            return Item(kind, key, self.encode({**ev, "event_time_ms": stamp}))
        if kind == "ts_missing":
            del ev["event_time_ms"]
            return Item(kind, key, self.without_time.encode(ev))
        if kind == "tombstone":
            return Item(kind, key, None)
        if kind == "huge_key_junk":
            return Item(kind, rng.randbytes(BIG_KEY), self.junk(50, 500))
        if kind == "oversized":
            return Item(kind, key, self.junk(900_000, 1_000_000))
        if kind == "too_large":
            return Item(kind, key, self.junk(1_200_000, 1_250_000))
        if kind == "internal":
            return Item(kind, None if rng.random() < 0.5 else self.junk(1, 20),
                        self.internal(ev), partition=rng.randrange(PARTITIONS))  # fmt: skip
        raise AssertionError(kind)

    def internal(self, ev: dict[str, Any]) -> bytes | None:
        """A value for the internal topic that is no record or marker the job writes."""
        rng = self.rng
        choice = rng.randrange(10)
        if choice == 0:  # junk with an unknown tag byte
            first = rng.choice([b for b in range(256) if b not in b"RW"])
            return bytes([first]) + self.junk(0, 200)
        if choice == 1:  # a tag, then a body that is no msgpack array
            first = rng.choice([b for b in range(256) if not 0x90 <= b <= 0x9F and b not in (
                0xDC, 0xDD)])  # fmt: skip
            return rng.choice([b"R", b"W"]) + bytes([first]) + self.junk(0, 200)
        if choice == 2:  # crafted pickles, one of them would run a command
            obj: Any = Touch(self.marker) if rng.random() < 0.5 else ("k", ev, 1)
            data = pickle.dumps(obj, protocol=rng.randrange(6))
            return rng.choice([b"", b"R", b"W"]) + data
        if choice == 3:  # a real internal record, cut short
            data = encode_record(ev["title_id"], ev, ev["event_time_ms"])
            return data[: rng.randrange(1, len(data))]
        if choice == 4:  # markers of tasks that do not exist, or no marker at all
            task = rng.choice([PARTITIONS, PARTITIONS + rng.randrange(1000), -1])
            return rng.choice([encode_marker(task, ev["event_time_ms"]),
                               b"W" + pack([0, float(ev["event_time_ms"])]),
                               b"W" + pack([0]), b"W" + pack([True, 5])])  # fmt: skip
        if choice == 5:  # records of the wrong shape
            return b"R" + rng.choice([pack([ev["title_id"], ev]), pack([ev["title_id"], ev, 1.5]),
                                      pack([{"k": 1}, ev, 5]), pack([ev["title_id"], ev, 2**64]),
                                      pack([ev["title_id"], ev, 5, 6])])  # fmt: skip
        if choice == 6:  # msgpack bombs: deep nesting, huge declared lengths
            return rng.choice([b"R" + b"\x91" * 100_000 + b"\xc0",
                               b"R\xdd\xff\xff\xff\xff", b"R\xdb\xff\xff\xff\xff",
                               b"R\x93\xa1k\xc6\xff\xff\xff\xff"])  # fmt: skip
        if choice == 7:  # a good record with bytes after it
            return encode_record(ev["title_id"], ev, ev["event_time_ms"]) + self.junk(1, 10)
        if choice == 8:  # the old (pickled) internal format of a real record
            return pickle.dumps((ev["title_id"], ev, ev["event_time_ms"]), protocol=5)
        return rng.choice([b"", None])


class Producer:
    """Produces items and records each one's delivery report (offset or refusal)."""

    def __init__(self, kafka: str) -> None:
        self.items: list[Item] = []
        self.sink = KafkaSink(kafka, extra={
            "delivery.report.only.error": False,
            "message.max.bytes": 2_000_000,  # the broker decides what is too large
        })  # fmt: skip

    @staticmethod
    def _delivered(item: Item, err: Any, msg: Any) -> None:
        if err is not None:
            item.refused = err.str()
        else:
            item.where = (msg.topic(), msg.partition(), msg.offset())

    def send(self, topic: str, item: Item) -> None:
        """Queue one item; its delivery report fills in ``where`` or ``refused``."""
        self.items.append(item)
        kwargs: dict[str, Any] = {"on_delivery": partial(self._delivered, item)}
        if item.partition is not None:
            kwargs["partition"] = item.partition
        produce = self.sink.producer.produce
        while True:
            try:
                produce(topic, item.value, item.key, **kwargs)
                break
            except BufferError:  # the client's queue is full: serve reports, retry
                self.sink.producer.poll(0.05)
        if len(self.items) % 1000 == 0:
            self.sink.poll()

    def flush(self) -> None:
        """Wait for every delivery report."""
        self.sink.flush(120)
        for item in self.items:
            assert item.where is not None or item.refused is not None, item.kind


def build_inputs(rng: random.Random, tmp: Path) -> tuple[list[Item], list[Item], list[Item]]:
    """(the playback stream in order, internal records, records over the broker's limit)."""
    config = GeneratorConfig(seed=SEED, users=600, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)  # fmt: skip
    records = Generator(config).take(GOOD)
    assert all(r.stream == "playback" for r in records)
    codec = codec_factory()("PlaybackEvent")
    stream = [Item("good", r.key, codec.encode(r.value), r.value) for r in records]
    # Valid hostile records are good events in their place in time, with hostile keys.
    picked = rng.sample(range(GOOD), COUNTS["null_key"] + COUNTS["huge_key"])
    for n, i in enumerate(picked):
        kind = "null_key" if n < COUNTS["null_key"] else "huge_key"
        stream[i].kind = kind
        stream[i].key = None if kind == "null_key" else rng.randbytes(BIG_KEY)
    hostile = Hostile(rng, [r.value for r in records], tmp)
    invalid = [hostile.make(kind) for kind, n in COUNTS.items()
               if kind not in VALID | {"internal", "too_large"} for _ in range(n)]  # fmt: skip
    places = sorted((rng.randrange(GOOD + 1), n) for n in range(len(invalid)))
    mixed: list[Item] = []
    at = 0
    for place, n in places:
        mixed.extend(stream[at:place])
        at = max(at, place)
        mixed.append(invalid[n])
    mixed.extend(stream[at:])
    # One far-later good record per partition, last, so every window closes.
    last = max(r.value["event_time_ms"] for r in records)
    for p in range(PARTITIONS):
        ev = {**records[p].value, "user_id": f"{SENTINEL}-{p}", "title_id": SENTINEL,
              "event_time_ms": last + HOUR}  # fmt: skip
        mixed.append(Item("sentinel", ev["user_id"].encode(), codec.encode(ev), ev, p))
    internal = [hostile.make("internal") for _ in range(COUNTS["internal"])]
    too_large = [hostile.make("too_large") for _ in range(COUNTS["too_large"])]
    assert not hostile.marker.exists()
    return mixed, internal, too_large


def worker_urls(pool: WorkerPool, slots: int, timeout_s: float = 120.0) -> list[str]:
    """The HTTP address each worker printed, once every worker has been assigned
    partitions (so the group does not rebalance while records flow)."""
    deadline = time.monotonic() + timeout_s
    urls: dict[int, str] = {}
    while len(urls) < slots:
        assert time.monotonic() < deadline, "workers did not start\n" + pool.log_tail()
        assert not pool.crashed(), pool.log_tail()
        for slot in range(slots):
            log = (pool.logs / f"w{slot}.log").read_text(errors="replace")
            found = re.search(r"live page (http://127\.0\.0\.1:\d+)/", log)
            if found and re.search(r"shoal\.worker \[[^]]*\]: assigned \[\(", log):
                urls[slot] = found.group(1)
        time.sleep(0.3)
    return [urls[s] for s in range(slots)]


def step_counters(urls: list[str]) -> dict[str, Counter[str]]:
    """Per-step counters summed over the workers' /metrics."""
    names = {"shoal_step_records_in_total": "in", "shoal_step_records_out_total": "out",
             "shoal_step_records_processed_total": "processed",
             "shoal_step_records_late_total": "late",
             "shoal_step_records_dead_lettered_total": "dead_lettered"}  # fmt: skip
    out: dict[str, Counter[str]] = {}
    for url in urls:
        text = httpx2.get(f"{url}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in names:
                    out.setdefault(s.labels["step"], Counter())[names[s.name]] += int(s.value)
                elif s.name == "shoal_rewinds_total":
                    out.setdefault("", Counter())["rewinds"] += int(s.value)
    return out


def wait_for(
    done: Callable[[], bool], what: Callable[[], str], pool: WorkerPool, timeout_s: float
) -> None:
    """Wait until ``done()``; fail saying ``what()`` and the workers' logs if it takes long."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert not pool.crashed(), pool.log_tail()
        if done():
            return
        assert time.monotonic() < deadline, f"{what()} after {timeout_s}s\n" + pool.log_tail()
        time.sleep(1.0)


def test_fuzz_input_at_scale(kafka: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    mixed, internal, too_large = build_inputs(rng, tmp_path)
    playback, out_topic, dead_topic = unique("fuzz-in"), unique("fuzz-out"), unique("fuzz-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    group = unique("fuzz")
    pool = WorkerPool("tests.integration.chaos_jobs:title_counts", kafka, group,
                      [f"playback={playback}", f"title-counts={out_topic}",
                       f"dead-letters={dead_topic}"],
                      tmp_path / "pool", extra=["--checkpoint-ms", "500", "--state", "rocksdb",
                                                "--http", "127.0.0.1:0"])  # fmt: skip
    internal_topic = repartition_topic(group, "by_title")
    producer, big = Producer(kafka), Producer(kafka)
    crashed = 0
    try:
        for slot in range(WORKERS):
            pool.start(slot)
        urls = worker_urls(pool, WORKERS)
        half = len(mixed) // 2
        for item in mixed[:half]:
            producer.send(playback, item)
        for item in internal:
            producer.send(internal_topic, item)
        for item in too_large:  # a producer of their own: refusals do not touch the rest
            big.send(playback, item)
        for item in mixed[half:]:
            producer.send(playback, item)
        producer.flush()
        big.flush()

        items = producer.items + big.items
        acked = [i for i in items if i.where is not None]
        inputs = sum(1 for i in acked if i.kind != "internal")
        injected = sum(1 for i in acked if i.kind == "internal")
        valid = [i for i in acked if i.kind in VALID | {"good", "sentinel"}]
        reference = Counter(
            (e["title_id"], e["event_time_ms"] - e["event_time_ms"] % WINDOW_MS)
            for e in (i.event for i in valid if i.kind != "sentinel")
            if e is not None
        )
        counters: dict[str, Counter[str]] = {}

        def caught_up() -> bool:
            nonlocal counters
            counters = step_counters(urls)
            c = {s: counters.get(s, Counter()) for s in STEPS}
            return (
                c["playback"]["in"] == inputs
                and c["by_title"]["in"] == c["playback"]["processed"] + injected
                and c["title_counts_10s"]["out"] >= len(reference)
            )

        wait_for(
            caught_up,
            lambda: (
                f"the job did not take in every record: {counters}, want {inputs} in, "
                f"{injected} injected, {len(reference)} windows"
            ),
            pool,
            180,
        )
        early = [s for s in range(WORKERS) if pool.procs[s].poll() is not None]
        crashed += len(early)
        for slot in range(WORKERS):
            code = pool.stop(slot)
            crashed += slot not in early and code != 0
    finally:
        for slot in pool.alive():
            pool.kill(slot)

    # --- the line, and the accounting at the entry steps ----------------------------------
    source, internal_source = counters["playback"], counters["by_title"]
    good = sum(1 for i in acked if i.kind in ("good", "sentinel"))
    bad = len(acked) - good
    processed = source["processed"]
    late = source["late"] + internal_source["late"]
    dead_lettered = source["dead_lettered"] + internal_source["dead_lettered"]
    line = (f"fuzz: good={good} bad={bad} processed={processed} late={late} "
            f"dead_lettered={dead_lettered} crashed={crashed}")  # fmt: skip
    print(line)
    assert crashed == 0, pool.log_tail()
    assert processed + late + dead_lettered == good + bad, (line, counters)
    assert processed == len(valid), (line, counters)
    assert internal_source["processed"] == processed, counters  # all crossed, none twice
    assert bad >= 100_000 and good == GOOD - COUNTS["null_key"] - COUNTS["huge_key"] + PARTITIONS
    for step, c in counters.items():
        if step:
            assert c["late"] == 0 and c["in"] >= c["dead_lettered"], (step, c)
    assert counters[""]["rewinds"] == 0, counters[""]
    assert not (tmp_path / "pwned").exists(), "a record of the internal topic was executed"
    refused = [i for i in items if i.where is None]
    assert [i.kind for i in refused] == ["too_large"] * COUNTS["too_large"], [
        (i.kind, i.refused) for i in refused
    ]

    # --- every rejected record is a dead letter with where it came from, nothing else is --
    dead = decoded(read_all(kafka, dead_topic), "DeadLetter")
    got_dead = Counter((d["source_topic"], d["source_partition"], d["source_offset"]) for d in dead)
    rejected = {i.where: i for i in acked if i.kind not in VALID | {"good", "sentinel"}}
    assert len(dead) == dead_lettered == len(rejected)
    assert set(got_dead) == set(rejected) and max(got_dead.values()) == 1
    for d in dead:
        item = rejected[(d["source_topic"], d["source_partition"], d["source_offset"])]
        want_class = "TimestampError" if item.kind in TIMESTAMP_KINDS else "DecodeError"
        want_step = "by_title" if item.kind == "internal" else "playback"
        assert (d["error_class"], d["step"], d["job"]) == (want_class, want_step, "title_counts")
        kept = (d["original_key"], d["original_value"] or b"")
        if "original key and value left out" in d["error_message"]:
            # too large for the dead-letter topic with them: where to read them is kept
            assert kept == (None, b"") and item.kind in ("huge_key_junk", "oversized"), d
        else:
            assert kept == (item.key, item.value or b""), item.kind
            assert item.kind != "huge_key_junk", "a dead letter of 2 MB was written"

    # --- the counts per title and window equal the brute-force reference ----------------
    rows = decoded(read_all(kafka, out_topic), "")
    seen = Counter((r["title_id"], r["window_start_ms"]) for r in rows)
    assert max(seen.values()) == 1, "a window was emitted twice"
    got = {(r["title_id"], r["window_start_ms"]): r["count"] for r in rows}
    assert got == dict(reference)
    assert sum(reference.values()) == len(valid) - PARTITIONS and len(reference) > 1000
