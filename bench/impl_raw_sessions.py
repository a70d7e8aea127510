"""``raw`` of W2: sessionization as a hand-written confluent-kafka + fastavro loop.

The same computation as ``jobs.sessionization`` on clean input, written for this one
job: batched ``consume`` of both topics, fastavro decode (one schema per topic),
per ``(user, device)`` a list of open sessions ``[start, last, accumulator]``; an
event joins (and merges) every session whose window ``[start, last + gap)`` overlaps
its own ``[t, t + gap)``. The session summary is folded with the job's own pure
aggregate (``jobs.sessionization.summary.SessionAggregate``: the definitions of the
fields, no engine), so the comparison is about everything around it. The watermark
is the minimum over all input partitions of the largest event time minus 5 s,
checked once per batch; a session closes when it passes ``last + gap`` and is
written as JSON. Flush + commit every second (at-least-once).
"""

from __future__ import annotations

import json
from io import BytesIO

from fastavro import schemaless_reader

from bench.common import (
    BOUND_MS,
    HEADER_BYTES,
    Stopwatch,
    parse_args,
)
from bench.rawloop import Committer, clients, finish, send, topic_schemas
from jobs.sessionization.summary import SessionAggregate

GAP_MS = 30 * 60_000
NO_TIME = -(2**63)


def main() -> None:
    """Sessionize ``--events`` records."""
    args = parse_args(__doc__ or "")
    inputs: dict[str, str] = args.settings["inputs"]
    out_topic = args.settings["outputs"]["sessions"]
    schemas = topic_schemas(args, inputs)
    consumer, producer = clients(
        args, list(inputs.values()), consumer={"partition.assignment.strategy": "range"}
    )
    agg = SessionAggregate()
    add, merge, result = agg.add, agg.merge, agg.result
    sessions: dict[tuple[str, str], list[list[object]]] = {}
    part_max = {(t, p): NO_TIME for t in inputs.values() for p in range(args.partitions)}
    watermark = NO_TIME
    watch = Stopwatch()
    wanted, n, outputs = args.events, 0, 0
    committer = Committer(consumer, producer)
    while n < wanted:
        msgs = consumer.consume(num_messages=10_000, timeout=0.1)
        if not msgs:
            continue
        watch.start()
        for m in msgs:
            if m.error() is not None:
                continue
            n += 1
            topic = m.topic()
            e = schemaless_reader(BytesIO(m.value()[HEADER_BYTES:]), schemas[topic], None)
            t = e["event_time_ms"]
            tp = (topic, m.partition())
            if t > part_max[tp]:
                part_max[tp] = t
            key = (e["user_id"], e["device_id"])
            open_ = sessions.get(key)
            if open_ is None:
                sessions[key] = [[t, t, add(agg.create(), e)]]
                continue
            hit = [s for s in open_ if t < s[1] + GAP_MS and s[0] < t + GAP_MS]  # type: ignore[operator]
            if not hit:
                open_.append([t, t, add(agg.create(), e)])
                continue
            first = hit[0]
            for other in hit[1:]:
                first[0] = min(first[0], other[0])  # type: ignore[type-var]
                first[1] = max(first[1], other[1])  # type: ignore[type-var]
                first[2] = merge(first[2], other[2])  # type: ignore[arg-type]
                open_.remove(other)
            first[0] = min(first[0], t)  # type: ignore[type-var]
            first[1] = max(first[1], t)  # type: ignore[type-var]
            first[2] = add(first[2], e)  # type: ignore[arg-type]
        low = min(part_max.values())
        if low != NO_TIME and low - BOUND_MS > watermark:
            watermark = low - BOUND_MS
            for key, open_ in list(sessions.items()):
                keep = []
                for s in open_:
                    if s[1] + GAP_MS <= watermark:  # type: ignore[operator]
                        summary = {"user_id": key[0], "device_id": key[1], **result(s[2])}  # type: ignore[arg-type]
                        summary["revision"] = 0
                        value = json.dumps(summary, separators=(",", ":")).encode()
                        send(producer, out_topic, value, key[0].encode())
                        outputs += 1
                    else:
                        keep.append(s)
                if keep:
                    sessions[key] = keep
                else:
                    del sessions[key]
        committer.tick()
    finish(consumer, producer, watch, n, args.report, outputs=outputs)


if __name__ == "__main__":
    main()
