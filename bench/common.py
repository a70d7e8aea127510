"""What every implementation process shares: its arguments, W1's constants, its report.

Standard library only (fastavro is imported lazily): this module is imported by
implementations that run in the peers' own virtual environments, which have
neither Shoal nor its dependencies.

Protocol between the parent (``bench.runner``) and an implementation process:

* arguments: :func:`parse_args` (input and output topic, consumer group, how many
  input records to process, where to write the report);
* the implementation reads the input topic from the beginning, counts PlaybackEvents
  per user in 10-second tumbling event-time windows, closes windows with a bounded
  watermark of :data:`BOUND_MS`, writes each closed window to the output topic as
  :func:`w1_output` JSON, and stops after ``--events`` input records;
* it then writes a JSON report (:class:`Stopwatch`) to ``--report``: records seen
  and the wall-clock seconds from its first record to the end of its last.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: W1: tumbling window size and allowed disorder of the watermark.
WINDOW_MS = 10_000
BOUND_MS = 5_000
#: Avro single-object encoding: C3 01 + 8-byte schema fingerprint, then the body.
HEADER_BYTES = 10

#: librdkafka consumer settings every implementation that lets us set them gets:
#: the default ``fetch.queue.backoff.ms`` of 1000 caps a fast consumer.
FAST_FETCH: dict[str, Any] = {
    "fetch.queue.backoff.ms": 10,
    "fetch.wait.max.ms": 50,
    "queued.min.messages": 200_000,
    "fetch.max.bytes": 64 * 1024 * 1024,
    "max.partition.fetch.bytes": 8 * 1024 * 1024,
}
#: librdkafka producer settings for the result writers (as Shoal's sink uses).
FAST_PRODUCE: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "lz4",
}


@dataclass(frozen=True)
class ImplArgs:
    """What the parent tells an implementation process."""

    bootstrap: str
    topic: str
    out_topic: str
    group: str
    events: int
    partitions: int
    schema: Path
    report: Path
    state_dir: Path
    variant: str
    #: Workload-specific settings from the parent (JSON object; W1 passes none).
    settings: dict[str, Any] = field(default_factory=dict)


def parse_args(description: str, argv: list[str] | None = None) -> ImplArgs:
    """Parse an implementation's command line."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--topic", required=True, help="input topic (PlaybackEvent, Avro)")
    p.add_argument("--out-topic", required=True, help="where closed windows go")
    p.add_argument("--group", required=True, help="consumer group (fresh per run)")
    p.add_argument("--events", type=int, required=True, help="stop after this many records")
    p.add_argument("--partitions", type=int, default=8, help="partitions of the input topic")
    p.add_argument("--schema", type=Path, required=True, help="PlaybackEvent.avsc")
    p.add_argument("--report", type=Path, required=True, help="JSON report to write")
    p.add_argument("--state-dir", type=Path, required=True, help="folder for local state")
    p.add_argument("--variant", default="", help="implementation variant (e.g. rocksdb)")
    p.add_argument(
        "--settings",
        type=json.loads,
        default={},
        help="workload settings as a JSON object (input and output topics by name, ...)",
    )
    a = p.parse_args(argv)
    return ImplArgs(
        bootstrap=a.bootstrap,
        topic=a.topic,
        out_topic=a.out_topic,
        group=a.group,
        events=a.events,
        partitions=a.partitions,
        schema=a.schema,
        report=a.report,
        state_dir=a.state_dir,
        variant=a.variant,
        settings=a.settings,
    )


def load_schema(path: Path) -> Any:
    """The parsed (fastavro) writer schema of the input."""
    import fastavro

    return fastavro.parse_schema(json.loads(path.read_text()))


def avro_decoder(path: Path) -> Any:
    """``decode(bytes) -> dict`` for single-object encoded PlaybackEvents."""
    from io import BytesIO

    from fastavro import schemaless_reader

    schema = load_schema(path)

    def decode(data: bytes) -> Any:
        return schemaless_reader(BytesIO(data[HEADER_BYTES:]), schema, None)

    return decode


def w1_value(user_id: str, start_ms: int, count: int) -> dict[str, Any]:
    """The result record of one closed window."""
    return {
        "user_id": user_id,
        "window_start_ms": start_ms,
        "window_end_ms": start_ms + WINDOW_MS,
        "count": count,
    }


def w1_output(user_id: str, start_ms: int, count: int) -> bytes:
    """The result record of one closed window, as compact JSON."""
    return json.dumps(w1_value(user_id, start_ms, count), separators=(",", ":")).encode()


class Stopwatch:
    """Wall clock from the first record to the end of the last; CPU over the same span."""

    def __init__(self) -> None:
        self.records = 0
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        #: The same two moments on the epoch clock, comparable across processes.
        self.wall_first: float | None = None
        self.wall_last: float | None = None
        self.extra: dict[str, Any] = {}

    def start(self) -> None:
        """Mark the arrival of the first record (later calls do nothing)."""
        if self.first is None:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()
            self.wall_first = time.time()

    def stop(self) -> None:
        """Mark the end of processing of the last record."""
        self.last = time.perf_counter()
        self.cpu_last = time.process_time()
        self.wall_last = time.time()

    def write(self, path: Path) -> None:
        """Write the report the parent reads."""
        elapsed = None
        if self.first is not None and self.last is not None:
            elapsed = self.last - self.first
        report = {
            "records": self.records,
            "elapsed_s": elapsed,
            "cpu_measured_s": self.cpu_last - self.cpu_first,
            "wall_first": self.wall_first,
            "wall_last": self.wall_last,
            **self.extra,
        }
        path.write_text(json.dumps(report, indent=2))


def package_version(name: str) -> str | None:
    """Installed version of a distribution, if any."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
