"""``raw`` of W3: live QoE metrics as a hand-written confluent-kafka + fastavro loop.

The same computation as ``jobs.qoe`` on clean input, written for this one job:
batched ``consume`` of the playback topic, fastavro decode, then

* per partition the largest event time; the watermark is their minimum minus
  :data:`bench.common.BOUND_MS`, checked once per batch. An event not after the
  watermark is late: counted and left out, as the job excludes it;
* every other event is held in one heap ordered like the job's replay (event time,
  lifecycle rank, event id). When the watermark reaches an event it is replayed
  against its playback's cursor with the job's own pure definitions
  (``jobs.qoe.playbacks``: the cursor and the fact an event completes, no engine),
  and the fact is added, in plain dicts, to its 1-minute tumbling window and its
  five 5-minute hopping windows (1-minute slide) under both groups, with the job's
  aggregate (``jobs.qoe.metrics.QoeAggregate``);
* windows whose end the watermark reached are written as ``QoeMetric`` JSON and
  dropped; cursors of playbacks quiet for the playback timeout are dropped.

Duplicates are not looked for (the input is clean). Flush + commit every second
(at-least-once).
"""

from __future__ import annotations

import heapq
import json
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader

from bench.common import (
    BOUND_MS,
    HEADER_BYTES,
    Stopwatch,
    load_schema,
    parse_args,
)
from bench.rawloop import Committer, clients, finish, send
from jobs.qoe.metrics import QoeAggregate, metric_output
from jobs.qoe.playbacks import LIFECYCLE_RANK, PlaybackFacts, new_cursor
from runtime import Window

NO_TIME = -(2**63)
MINUTE_MS = 60_000
#: ``jobs.qoe``'s default playback timeout.
PLAYBACK_TIMEOUT_MS = 10 * MINUTE_MS
#: The window steps of ``jobs.qoe``: (window kind, group kind, size, offsets in minutes of
#: the starts of an event's windows from the start of its minute).
STEPS = (
    ("tumbling_1m", "title_device_country_cdn", MINUTE_MS, (0,)),
    ("hopping_5m", "title_device_country_cdn", 5 * MINUTE_MS, (0, -1, -2, -3, -4)),
    ("tumbling_1m", "cdn", MINUTE_MS, (0,)),
    ("hopping_5m", "cdn", 5 * MINUTE_MS, (0, -1, -2, -3, -4)),
)
_OTHER_RANK = len(LIFECYCLE_RANK)
# A held event: the job's held tuple (ts, rank, event_id, type, position, bitrate,
# seek_from), then an arrival number (two copies never compare their dicts), the event.
_EVENT = 8


class RawQoe:
    """Watermark, held events, playback cursors and open windows of the loop.

    Args:
        partitions: partitions of the input topic (each holds the watermark back until
            it has a record).
        playback_timeout_ms: event time without events after which a playback starts
            over.
    """

    def __init__(self, partitions: int, playback_timeout_ms: int = PLAYBACK_TIMEOUT_MS) -> None:
        self.timeout = playback_timeout_ms
        self.part_max = [NO_TIME] * partitions
        self.watermark = NO_TIME
        self.late = 0
        self.held: list[tuple[Any, ...]] = []
        self.arrivals = 0
        self.cursors: dict[tuple[str, str], dict[str, Any]] = {}
        self.next_sweep = NO_TIME
        self.agg = QoeAggregate()
        #: Per step: window start -> group -> accumulator.
        self.windows: list[dict[int, dict[Any, list[Any]]]] = [{} for _ in STEPS]
        self.outputs = [metric_output(w, g) for w, g, _, _ in STEPS]
        #: Per step: its windows, whether it groups by CDN alone, its start offsets in ms.
        self.assign = [
            (windows, group_kind == "cdn", tuple(o * MINUTE_MS for o in offsets))
            for windows, (_, group_kind, _, offsets) in zip(self.windows, STEPS, strict=True)
        ]

    def add(self, partition: int, e: dict[str, Any]) -> None:
        """Take one decoded event of ``partition``: hold it, or count it as late."""
        t = e["event_time_ms"]
        if t > self.part_max[partition]:
            self.part_max[partition] = t
        if t <= self.watermark:
            self.late += 1
            return
        kind = e["event_type"]
        self.arrivals += 1
        heapq.heappush(
            self.held,
            (
                t,
                LIFECYCLE_RANK.get(kind, _OTHER_RANK),
                e["event_id"],
                kind,
                e["position_ms"],
                e["bitrate_kbps"],
                e["seek_from_ms"],
                self.arrivals,
                e,
            ),
        )

    def advance(self) -> list[dict[str, Any]]:
        """Move the watermark to what the partitions allow; the ``QoeMetric``s it closes."""
        low = min(self.part_max)
        if low == NO_TIME or low - BOUND_MS <= self.watermark:
            return []
        watermark = self.watermark = low - BOUND_MS
        self._replay_due(watermark)
        out = self._fire(watermark)
        if watermark >= self.next_sweep:
            # A cursor quiet for the timeout would start over at its next event anyway.
            horizon = watermark - self.timeout
            self.cursors = {k: c for k, c in self.cursors.items() if c["last"][0] > horizon}
            self.next_sweep = watermark + MINUTE_MS
        return out

    def _replay_due(self, watermark: int) -> None:
        """Replay the held events the watermark reached; add their facts to the windows."""
        held, cursors, timeout = self.held, self.cursors, self.timeout
        replay, create, add = PlaybackFacts.replay, self.agg.create, self.agg.add
        assign = self.assign
        while held and held[0][0] <= watermark:
            event = heapq.heappop(held)
            ts = event[0]
            e = event[_EVENT]
            key = (e["user_id"], e["playback_id"])
            cursor = cursors.get(key)
            if cursor is None or ts - cursor["last"][0] > timeout:
                dims = (e["title_id"], e["device_type"], e["country"], e["cdn"])
                cursor = cursors[key] = new_cursor(dims)
            fact = replay(cursor, event, key[1])
            dims = cursor["dims"]
            minute = ts - ts % MINUTE_MS
            for windows, by_cdn, offsets in assign:
                group = dims[3] if by_cdn else dims
                for offset in offsets:
                    start = minute + offset
                    accs = windows.get(start)
                    if accs is None:
                        accs = windows[start] = {}
                    acc = accs.get(group)
                    if acc is None:
                        acc = accs[group] = create()
                    add(acc, fact)

    def _fire(self, watermark: int) -> list[dict[str, Any]]:
        """The results of the windows whose end the watermark reached (dropped)."""
        result = self.agg.result
        out = []
        for windows, output, (_, _, size, _) in zip(self.windows, self.outputs, STEPS, strict=True):
            for start in sorted(s for s in windows if s + size <= watermark):
                window = Window(start, start + size)
                for group, acc in windows.pop(start).items():
                    out.append(output(group, window, result(acc)))
        return out


def main() -> None:
    """Compute QoE metrics over ``--events`` records."""
    args = parse_args(__doc__ or "")
    schema = load_schema(args.schema)
    out_topic = args.settings["outputs"]["qoe-metrics"]
    consumer, producer = clients(args, [args.settings["inputs"]["playback"]])
    state = RawQoe(args.partitions)
    add, dumps = state.add, json.dumps
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
            e = schemaless_reader(BytesIO(m.value()[HEADER_BYTES:]), schema, None)  # type: ignore[index]
            add(m.partition(), e)  # type: ignore[arg-type]
        for r in state.advance():
            send(producer, out_topic, dumps(r, separators=(",", ":")).encode(), r["cdn"].encode())
            outputs += 1
        committer.tick()
    finish(consumer, producer, watch, n, args.report, outputs=outputs, late=state.late)


if __name__ == "__main__":
    main()
