"""``count``: consume and count, nothing else — the client limit on this machine.

The same consumer settings as every other implementation that uses librdkafka
(:data:`bench.common.FAST_FETCH`), batched ``consume``, no decoding.
"""

from __future__ import annotations

from confluent_kafka import Consumer

from bench.common import FAST_FETCH, Stopwatch, package_version, parse_args


def main() -> None:
    """Consume ``--events`` records and report the rate."""
    args = parse_args(__doc__ or "")
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST_FETCH,
        }
    )
    consumer.subscribe([args.topic])
    watch = Stopwatch()
    consume, wanted, n = consumer.consume, args.events, 0
    while n < wanted:
        msgs = consume(num_messages=10_000, timeout=0.5)
        if not msgs:
            continue
        watch.start()
        n += len(msgs)  # no errors are expected here; the limit is what we want
    watch.stop()
    watch.records = n
    watch.extra["versions"] = {"confluent-kafka": package_version("confluent-kafka")}
    consumer.close()
    watch.write(args.report)


if __name__ == "__main__":
    main()
