"""``raw``: W1 as a hand-written confluent-kafka + fastavro loop — the Python limit.

What an engineer who knows the libraries would write for this one job, fast but
honest (it does all the work the engines do):

* batched ``consume`` with the low fetch backoff of :data:`bench.common.FAST_FETCH`;
* decode every record: skip the 10-byte single-object header, fastavro's
  ``schemaless_reader`` with the parsed schema;
* per window start, a dict of counts per user;
* the watermark of the engines: per partition, the largest event time seen minus
  :data:`bench.common.BOUND_MS`; the minimum over partitions; checked once per batch.
  Windows whose end it reached are written (JSON) and dropped;
* at-least-once like Shoal's worker: every second the producer is flushed, then
  the offsets are committed.
"""

from __future__ import annotations

from io import BytesIO

from fastavro import schemaless_reader

from bench.common import (
    BOUND_MS,
    HEADER_BYTES,
    WINDOW_MS,
    Stopwatch,
    load_schema,
    parse_args,
)
from bench.rawloop import Committer, clients, finish, send

NO_TIME = -(2**63)
# User ids are generated ([a-z0-9]); a hand-written loop formats instead of json.dumps.
OUTPUT = '{"user_id":"%s","window_start_ms":%d,"window_end_ms":%d,"count":%d}'


def main() -> None:
    """Run W1 over ``--events`` records."""
    args = parse_args(__doc__ or "")
    schema = load_schema(args.schema)
    consumer, producer = clients(args, [args.topic])
    out_topic = args.out_topic

    windows: dict[int, dict[str, int]] = {}
    part_max = [NO_TIME] * args.partitions
    watermark = NO_TIME
    watch = Stopwatch()
    wanted, n, late, outputs = args.events, 0, 0, 0
    committer = Committer(consumer, producer)
    size = WINDOW_MS
    while n < wanted:
        msgs = consumer.consume(num_messages=10_000, timeout=0.1)
        if not msgs:
            continue
        watch.start()
        for m in msgs:
            if m.error() is not None:
                continue
            n += 1
            e = schemaless_reader(BytesIO(m.value()[HEADER_BYTES:]), schema, None)
            t = e["event_time_ms"]
            p = m.partition()
            if t > part_max[p]:
                part_max[p] = t
            start = t - t % size
            if start + size <= watermark:
                late += 1
                continue
            counts = windows.get(start)
            if counts is None:
                counts = windows[start] = {}
            user = e["user_id"]
            counts[user] = counts.get(user, 0) + 1
        low = min(part_max)
        if low != NO_TIME and low - BOUND_MS > watermark:
            watermark = low - BOUND_MS
            for start in sorted(s for s in windows if s + size <= watermark):
                for user, count in windows.pop(start).items():
                    value = (OUTPUT % (user, start, start + size, count)).encode()
                    send(producer, out_topic, value, user.encode())
                    outputs += 1
        committer.tick()
    finish(consumer, producer, watch, n, args.report, outputs=outputs, late=late)


if __name__ == "__main__":
    main()
