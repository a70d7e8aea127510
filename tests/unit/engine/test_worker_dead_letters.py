"""A dead letter too large for its topic is written without the original, never fatal.

A dead letter repeats the original key and value (the key twice: as the dead letter's
own key and in its record), so a bad record with a huge key or a value near the
broker's size limit makes a dead letter the topic refuses. Failing the worker there
would fail it again at the same record on every restart. The transport here refuses
what is larger than a small limit, as ``KafkaTransport`` does for a topic's
``max.message.bytes`` (``tests/integration/test_fuzz_input.py`` does it on the broker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Job, Json, WatermarkStrategy
from runtime.api.bindings import Bindings
from runtime.api.errors import OutputRefused
from runtime.api.io import RefusedWrite
from runtime.engine.worker import Worker
from runtime.state.memory import MemoryBackend

LIMIT = 1_000


@dataclass
class Msg:
    """A stand-in for a Kafka message (the accessors the engine uses)."""

    off: int
    k: bytes | None
    data: bytes

    def topic(self) -> str:
        return "events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.off

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes:
        return self.data

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class ListSource:
    def __init__(self, msgs: list[Msg]) -> None:
        self.queued = msgs

    def poll(self, max_records: int, timeout_s: float) -> list[Msg]:
        out, self.queued = self.queued[:max_records], self.queued[max_records:]
        return out


class SizeLimitedTransport:
    """Keeps what fits in ``limit`` bytes (key, value and headers); refuses the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.written: list[tuple[str, bytes | None, bytes]] = []
        self.refused: list[RefusedWrite] = []

    def write(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        size = len(key or b"") + len(value or b"")
        size += sum(len(k) + len(v) for k, v in headers or [])
        if size > self.limit:
            reason = f"record of {size} bytes is larger than topic {topic!r} accepts"
            self.refused.append(RefusedWrite(topic, key, None, timestamp_ms, reason))
            return
        self.written.append((topic, key, value or b""))

    def write_many(self, topic: str, records: list[tuple[Any, Any, Any]]) -> None:
        for key, value, ts in records:
            self.write(topic, key, value, ts)

    def commit(self, offsets: Any) -> None:
        pass

    def take_refused(self) -> list[RefusedWrite]:
        out, self.refused = self.refused, []
        return out


def run(msgs: list[Msg], limit: int) -> tuple[Worker, list[dict[str, Any]]]:
    job = Job("dead_letter_sizes")
    job.source(
        "events", schema="", timestamp=lambda e: e["t"], watermarks=WatermarkStrategy()
    ).sink("out", Json())
    bindings = Bindings.for_job(job)
    transport = SizeLimitedTransport(limit)
    worker = Worker(job, bindings, transport, codec_factory(), MemoryBackend())
    worker.on_assign([("events", 0)])
    worker.step(ListSource(msgs))
    worker.checkpoint()
    decode = codec_factory()("DeadLetter").decode_batch
    letters, failures = decode([v for t, _, v in transport.written if t == bindings.dead_letters])
    assert not failures
    return worker, letters


def test_a_dead_letter_that_fits_keeps_the_original() -> None:
    worker, letters = run([Msg(7, b"user-1", b"not json")], LIMIT)
    assert [(d["original_key"], d["original_value"]) for d in letters] == [(b"user-1", b"not json")]
    assert (letters[0]["source_topic"], letters[0]["source_offset"]) == ("events", 7)
    assert "left out" not in letters[0]["error_message"]


@pytest.mark.parametrize(
    "key, value",
    [(b"k" * 600, b"junk"), (b"k", b"x" * 2 * LIMIT), (None, b"x" * 2 * LIMIT)],
    ids=["huge key", "huge value", "huge value, no key"],
)
def test_a_dead_letter_too_large_for_its_topic_leaves_the_original_out(
    key: bytes | None, value: bytes
) -> None:
    msgs = [Msg(0, b"a", b"junk 1"), Msg(1, key, value), Msg(2, b"b", b"junk 2")]
    worker, letters = run(msgs, LIMIT)
    assert [d["source_offset"] for d in letters] == [0, 1, 2]
    big = letters[1]
    assert (big["original_key"], big["original_value"]) == (None, None)
    assert (big["source_topic"], big["source_partition"]) == ("events", 0)
    assert big["error_class"] == "DecodeError"
    assert "not JSON" in big["error_message"]
    assert "original key and value left out: record of" in big["error_message"]
    assert letters[2]["original_value"] == b"junk 2"
    counts = worker.counters()["events"]
    assert (counts["in"], counts["dead_lettered"]) == (3, 3)


def test_a_dead_letter_topic_that_refuses_even_the_metadata_fails_with_one_line() -> None:
    with pytest.raises(OutputRefused, match="larger than topic"):
        run([Msg(0, b"k", b"junk")], 100)
