"""``bytewax``: W1 with Bytewax (runs in ``bench/.venvs/bytewax``).

Its best honest configuration for this job:

* its Kafka source (one consumer per partition, batched ``consume``) with its
  default ``batch_size`` of 1,000 and the same librdkafka settings as the other
  implementations; ``tail=False``, so the dataflow ends at the end of the input
  (which closes every window still open, as Bytewax does at end of input);
* decoding a whole batch per Python call (``flat_map_batch``) into ``(user,
  event)`` pairs: the stream is keyed by the message key, no re-keying step;
* ``fold_window`` (what ``count_window`` does, minus its re-keying) with an
  ``EventClock`` waiting 5 s and 10-second ``TumblingWindower`` s aligned to the
  epoch; the event clock needs a ``datetime`` per record;
* the event clock driven by event time only (a fixed ``now_getter``, and
  ``to_system_utc`` returning ``None``, as its documentation describes for input
  whose windows close on new items or end of input). By default Bytewax's event
  clock is per key and also advances each key's watermark with wall-clock time
  since that key's newest record: replaying history at full speed, a partition's
  next batch can come seconds of wall time later and its on-time records are then
  dropped as late (we saw 2-7 wrong windows in 200k events with 10,000-record
  batches), and it schedules a wake-up per window. Variant ``system-clock`` (run
  it with ``BENCH_ONLY=bytewax-sysclock``) keeps that default;
* in-memory state without recovery snapshots (Bytewax keeps state in memory;
  recovery would add SQLite snapshots), one worker in one process, run as
  ``python -m bytewax.run`` does (``cli_main``).

A window's Bytewax id counts windows from the alignment, so its start is
``id * 10 s`` after the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window

from bench.common import (
    BOUND_MS,
    FAST_FETCH,
    FAST_PRODUCE,
    WINDOW_MS,
    Stopwatch,
    avro_decoder,
    package_version,
    parse_args,
    w1_output,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def main() -> None:
    """Run W1 over the whole input topic."""
    args = parse_args(__doc__ or "")
    decode = avro_decoder(args.schema)
    watch = Stopwatch()
    wanted = args.events

    def decode_batch(msgs: list[Any]) -> list[tuple[str, Any]]:
        watch.start()
        out = [(m.key.decode(), decode(m.value)) for m in msgs]
        watch.records += len(out)
        if watch.records >= wanted:
            watch.stop()
        return out

    def event_time(e: dict[str, Any]) -> datetime:
        return EPOCH + timedelta(milliseconds=e["event_time_ms"])

    def to_message(item: tuple[str, tuple[int, int]]) -> Any:
        user, (window_id, count) = item
        return KafkaSinkMessage(user.encode(), w1_output(user, window_id * WINDOW_MS, count))

    flow = Dataflow("w1")
    source = KafkaSource(
        [args.bootstrap],
        [args.topic],
        tail=False,
        add_config={k: str(v) for k, v in FAST_FETCH.items()},
    )
    msgs = op.input("input", flow, source)
    events = op.flat_map_batch("decode", msgs, decode_batch)
    wait = timedelta(milliseconds=BOUND_MS)
    if args.variant == "system-clock":
        clock = EventClock(event_time, wait_for_system_duration=wait)
    else:
        clock = EventClock(event_time, wait, now_getter=lambda: EPOCH, to_system_utc=lambda t: None)
    windows = fold_window(
        "count",
        events,
        clock,
        TumblingWindower(length=timedelta(milliseconds=WINDOW_MS), align_to=EPOCH),
        lambda: 0,
        lambda acc, _: acc + 1,
        lambda a, b: a + b,
        ordered=False,
    )
    out = op.map("shape", windows.down, to_message)
    sink_config = {k: str(v) for k, v in FAST_PRODUCE.items()}
    op.output("output", out, KafkaSink([args.bootstrap], args.out_topic, add_config=sink_config))
    cli_main(flow, workers_per_process=1)
    watch.extra["versions"] = {
        "bytewax": package_version("bytewax"),
        "confluent-kafka": package_version("confluent-kafka"),
        "fastavro": package_version("fastavro"),
    }
    watch.write(args.report)


if __name__ == "__main__":
    main()
