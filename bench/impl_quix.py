"""``quix``: W1 with Quix Streams (runs in ``bench/.venvs/quix``).

Its best honest configuration for this job:

* the input's message key is the user id, so the windows group by it directly
  (Quix windows always group by the message key: no re-keying needed);
* ``tumbling_window(10 s, grace 5 s).count().final(closing_strategy="partition")``:
  a window closes when event time of its partition passes its end + grace, as
  the engines' watermark does (the default ``"key"`` strategy would leave the last
  window of every user open until that user's next event);
* event time from the decoded record (``timestamp_extractor``);
* default state: RocksDB with changelog topics, at-least-once, the default
  5-second commit interval; the consumer and producer get the same librdkafka
  settings as the other implementations;
* a one-line counting step in front stops the application after ``--events``
  records (a Python call per record; Quix's own ``run(count=...)`` counts outputs).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from quixstreams import Application
from quixstreams.models.serializers import Deserializer

from bench.common import (
    BOUND_MS,
    FAST_FETCH,
    FAST_PRODUCE,
    WINDOW_MS,
    Stopwatch,
    avro_decoder,
    package_version,
    parse_args,
)


class SingleObjectAvro(Deserializer):
    """Avro single-object encoding: skip the 10-byte header, fastavro schemaless read."""

    def __init__(self, decode: Any) -> None:
        super().__init__()
        self._decode = decode

    def __call__(self, value: bytes, ctx: Any) -> Any:
        return self._decode(value)


def main() -> None:
    """Run W1 over ``--events`` records."""
    args = parse_args(__doc__ or "")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
        consumer_extra_config=dict(FAST_FETCH),
        producer_extra_config=dict(FAST_PRODUCE),
        loglevel="WARNING",
    )
    source = app.topic(
        args.topic,
        value_deserializer=SingleObjectAvro(avro_decoder(args.schema)),
        key_deserializer="bytes",
        timestamp_extractor=lambda value, headers, ts, ts_type: value["event_time_ms"],
    )
    sink = app.topic(args.out_topic, value_serializer="json", key_serializer="bytes")

    watch = Stopwatch()
    wanted = args.events

    def count(value: Any) -> None:
        n = watch.records + 1
        watch.records = n
        if n == 1:
            watch.start()
        if n >= wanted:
            watch.stop()
            app.stop()

    def shape(value: dict[str, Any], key: bytes, ts: int, headers: Any) -> dict[str, Any]:
        return {
            "user_id": key.decode(),
            "window_start_ms": value["start"],
            "window_end_ms": value["end"],
            "count": value["value"],
        }

    sdf = app.dataframe(source)
    sdf = sdf.update(count)
    sdf = (
        sdf.tumbling_window(timedelta(milliseconds=WINDOW_MS), grace_ms=BOUND_MS)
        .count()
        .final(closing_strategy="partition")
    )
    sdf = sdf.apply(shape, metadata=True)
    sdf.to_topic(sink)
    started = time.perf_counter()
    app.run()
    watch.extra.update(
        run_s=time.perf_counter() - started,
        versions={
            "quixstreams": package_version("quixstreams"),
            "confluent-kafka": package_version("confluent-kafka"),
            "fastavro": package_version("fastavro"),
        },
    )
    watch.write(args.report)


if __name__ == "__main__":
    main()
