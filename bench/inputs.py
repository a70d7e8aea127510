"""Input of the workloads beyond W1: generated events on one topic per stream, and keyed records.

Every producer here chooses each record's partition itself (CRC-32 of the key, as
librdkafka's default), so it knows each partition's record count (its end offset,
for implementations that stop at the end of their partitions) and largest event
time (for the reference final watermark, as in ``bench.w1``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.w1 import NO_TIME, partition_of
from connectors.codecs import codec_factory
from connectors.kafka.sink import KafkaSink
from runtime.generator import Generator, GeneratorConfig

SCHEMAS = {"playback": "PlaybackEvent", "interactions": "InteractionEvent"}


@dataclass
class Produced:
    """What was written: records in all, and per topic each partition's count and time."""

    events: int = 0
    ends: dict[str, list[int]] = field(default_factory=dict)
    partition_max: dict[str, list[int]] = field(default_factory=dict)

    def final_watermark(self, bound_ms: int) -> int:
        """The watermark any engine reaches after reading everything (min over partitions)."""
        return min(min(v) for v in self.partition_max.values()) - bound_ms


def clean_config(seed: int, users: int, *, interactions: bool) -> GeneratorConfig:
    """Generated viewers without late, duplicate, malformed or bad-timestamp records.

    The generator's bounded disorder (up to 2 s) stays: every watermark here allows 5 s.
    """
    return GeneratorConfig(
        seed=seed,
        users=users,
        late_rate=0.0,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
        duplicate_rate=0.0,
        interaction_ratio=0.3 if interactions else 0.0,
    )


class _Writer:
    """A producer that tracks each topic's partition counts and largest event times."""

    def __init__(self, bootstrap: str, partitions: int, out: Produced) -> None:
        self.sink = KafkaSink(bootstrap)
        self.partitions = partitions
        self.out = out

    def write(self, topic: str, key: bytes, data: bytes, event_time_ms: int, ts_ms: int = 0) -> int:
        p = partition_of(key, self.partitions)
        producer = self.sink.producer
        while True:
            try:
                producer.produce(topic, data, key, partition=p, timestamp=ts_ms)
                break
            except BufferError:
                producer.poll(0.05)
        ends = self.out.ends.setdefault(topic, [0] * self.partitions)
        pmax = self.out.partition_max.setdefault(topic, [NO_TIME] * self.partitions)
        ends[p] += 1
        if event_time_ms > pmax[p]:
            pmax[p] = event_time_ms
        self.out.events += 1
        return p

    def flush(self) -> None:
        self.sink.flush()


def produce_generated(
    bootstrap: str,
    topics: dict[str, str],
    events: int,
    config: GeneratorConfig,
    *,
    partitions: int,
    keep: Callable[[str, dict[str, Any]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Produced:
    """Write ``events`` generated records to ``topics`` (stream -> topic), Avro encoded.

    ``keep(stream, value)`` sees every record written (for the reference).
    """
    codecs = {s: codec_factory()(SCHEMAS[s]).encode for s in topics}
    out = Produced(ends={t: [0] * partitions for t in topics.values()})
    writer = _Writer(bootstrap, partitions, out)
    for rec in Generator(config):
        topic = topics.get(rec.stream)
        if topic is None:
            continue
        value = rec.value
        writer.write(topic, rec.key, codecs[rec.stream](value), value["event_time_ms"])
        if keep is not None:
            keep(rec.stream, value)
        if progress is not None and (out.events % 20_000 == 0 or out.events == events):
            progress(out.events, events)
        if out.events >= events:
            break
    writer.flush()
    return out


def keyed_events(keys: int, repeats: int, start_ms: int) -> Any:
    """``(key, event time)`` of the keyed-state workloads: every key once, then ``repeats``.

    Keys ``k0 .. k{keys-1}`` in order, one second of event time apart per 1,000
    records; then the first ``repeats`` keys again (their count becomes 2).
    """
    for i in range(keys + repeats):
        yield f"k{i % keys}", start_ms + i


def produce_keyed(
    bootstrap: str,
    topic: str,
    keys: int,
    repeats: int,
    *,
    partitions: int,
    start_ms: int,
    progress: Callable[[int, int], None] | None = None,
) -> Produced:
    """Write the keyed-state input: one small PlaybackEvent per ``keyed_events`` item.

    Every record is a copy of one template with its own ``user_id``, ``event_id`` and
    event time (encoding a template is much faster than generating viewers, which
    matters at 10M keys).
    """
    codec = codec_factory()("PlaybackEvent")
    template = next(r.value for r in Generator(clean_config(1, 10, interactions=False)) if r.value)
    out = Produced(ends={topic: [0] * partitions})
    writer = _Writer(bootstrap, partitions, out)
    total = keys + repeats
    for n, (key, t) in enumerate(keyed_events(keys, repeats, start_ms), 1):
        value = {**template, "user_id": key, "event_id": f"e{n}", "event_time_ms": t}
        writer.write(topic, key.encode(), codec.encode(value), t)
        if progress is not None and (n % 100_000 == 0 or n == total):
            progress(n, total)
    writer.flush()
    return out
