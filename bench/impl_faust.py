"""``faust``: W1 with Faust (faust-streaming; runs in ``bench/.venvs/faust``).

Its best honest configuration for this job:

* an agent over the input topic (keys raw bytes, values through a registered
  codec that skips the 10-byte single-object header and reads the body with
  fastavro's ``schemaless_reader``);
* a windowed table: ``Table(default=int).tumbling(10 s).relative_to(event time of
  the record)``, ``table[user] += 1`` per record — Faust's idiom for a windowed
  count; RocksDB store (rocksdict), which Faust recommends for production;
* larger polls (``broker_max_poll_records``) and stream buffers than the
  defaults; no web server.

Faust closes windows by the wall clock, not by event time: a window is dropped
(and ``on_window_close`` called) once ``time.time() - expires`` passes it, so on
this input (event times of 2025) every window would close at the next cleanup,
counted or not. Its results are therefore read the way Faust publishes table
state: from the table's changelog topic (the last value of each ``(user,
window)``), and ``expires`` is set long enough that no window is dropped during
the run. The report names that topic for the parent.

The agent counts records and, after ``--events``, asks the worker to stop
(SIGTERM, Faust's graceful shutdown, which flushes the producer).
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import timedelta
from typing import Any

import faust
from faust.serializers import codecs

from bench.common import WINDOW_MS, Stopwatch, avro_decoder, package_version, parse_args


class SingleObjectAvro(codecs.Codec):
    """Avro single-object encoding (decode only)."""

    decode: Any = None

    def _loads(self, s: bytes) -> Any:
        return type(self).decode(s)

    def _dumps(self, s: Any) -> bytes:
        raise NotImplementedError("the benchmark only reads Avro")


def main() -> None:
    """Run W1 over ``--events`` records."""
    args = parse_args(__doc__ or "")
    SingleObjectAvro.decode = staticmethod(avro_decoder(args.schema))
    codecs.register("single_object_avro", SingleObjectAvro())
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=str(args.state_dir),
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=10_000,
        stream_buffer_maxsize=65_536,
        producer_linger_ms=20,
        producer_compression_type="lz4",
        web_enabled=False,
    )
    source = app.topic(
        args.topic, key_type=bytes, key_serializer="raw", value_serializer="single_object_avro"
    )
    table = (
        app.Table("counts", default=int, partitions=args.partitions)
        .tumbling(timedelta(milliseconds=WINDOW_MS), expires=timedelta(days=36_500))
        .relative_to(lambda event: event.value["event_time_ms"] / 1000)
    )
    watch = Stopwatch()
    wanted = args.events
    changelog = f"{args.group}-counts-changelog"

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for key, _value in stream.items():
            table[key.decode()] += 1
            n = watch.records + 1
            watch.records = n
            if n == 1:
                watch.start()
            if n == wanted:
                watch.stop()
                watch.extra.update(
                    output_topic=changelog,
                    versions={
                        "faust-streaming": package_version("faust-streaming"),
                        "aiokafka": package_version("aiokafka"),
                        "fastavro": package_version("fastavro"),
                    },
                )
                watch.write(args.report)
                os.kill(os.getpid(), signal.SIGTERM)

    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
