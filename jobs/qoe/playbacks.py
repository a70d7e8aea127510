"""Per-playback step of the QoE job: playback events in event-time order become facts.

Startup time, stall time and watch time each need two events of one playback
(``start`` and ``play``, ``rebuffer_start`` and ``rebuffer_end``, two positions),
and those can land in different windows. This step, keyed by playback, holds each
event until the watermark reaches its event time, then replays the playback's
events in event-time order against a small cursor and emits one *fact* per event:
what that event completes, stamped with the event's own time. The QoE windows then
only add facts up.

Classification of an arriving event (first match wins):

* ``duplicate``: its ``event_id`` was already taken for this playback (pending, or
  replayed since the playback's cursor was last reset);
* ``late``: its event time is not after the watermark (the playback's replay may
  already have passed it, and it cannot be reordered any more);
* otherwise it is held and replayed when the watermark reaches it.

Duplicates and late events are emitted as ``{"excluded": reason, "event": event}``
for a side output: nothing is dropped silently.

Replay, per event ``e`` in order (event time, lifecycle rank, event id), with the
cursor of the playback (reset when ``e`` comes more than ``playback_timeout`` after
the previous event):

* ``watch_ms``: ``max(0, before(e) - previous.position_ms)`` where ``before(e)`` is
  ``seek_from_ms`` for a ``seek`` and ``position_ms`` otherwise; ``bitrate_ms``:
  that advance times ``previous.bitrate_kbps`` (the bitrate played meanwhile);
* ``start`` opens an attempt; the first ``play``, ``error`` or ``stop`` after it
  resolves the attempt (``attempts`` 1) and an ``error`` makes it a failure
  (``failures`` 1);
* the first ``play`` of the playback: ``plays`` 1, and ``startup_ms`` = its time
  minus the ``start`` time when the ``start`` was seen;
* ``rebuffer_start``: ``rebuffers`` 1; ``rebuffer_end``: ``rebuffer_ms`` = its time
  minus the latest unpaired ``rebuffer_start``;
* ``bitrate_change``: ``switches`` 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime import MapState, ProcessContext, StateDescriptor, ValueState

#: Order of event types that share an event time: the player's lifecycle order.
LIFECYCLE_RANK = {
    "start": 0,
    "play": 1,
    "resume": 2,
    "bitrate_change": 3,
    "heartbeat": 4,
    "seek": 5,
    "pause": 6,
    "rebuffer_start": 7,
    "rebuffer_end": 8,
    "error": 9,
    "stop": 10,
}

PENDING = MapState[str, tuple[Any, ...]]("pending")  # event_id -> held event tuple
CURSOR = ValueState[dict[str, Any] | None]("cursor")  # the playback's replay state, or None

# A held event: (ts, rank, event_id, type, position, bitrate, seek_from).
_TS, _RANK, _ID, _TYPE, _POS, _BITRATE, _SEEK_FROM = range(7)

#: What a fact's ``counts`` hold, in order; the QoE aggregate sums them.
FACT_COUNTS = (
    "attempts",
    "failures",
    "plays",
    "watch_ms",
    "bitrate_ms",
    "rebuffers",
    "rebuffer_ms",
    "switches",
)


def new_cursor(dims: tuple[str, str, str, str]) -> dict[str, Any]:
    """A playback's replay state before its first event (``dims``: its QoE group)."""
    return {
        "dims": dims,  # (title_id, device_type, country, cdn)
        "seen": set(),  # event ids replayed since the last reset
        "last": None,  # (ts, position, bitrate) of the previous replayed event
        "start_ts": None,
        "attempt": False,  # a start is waiting for play / error / stop
        "played": False,
        "stall_ts": None,
    }


#: A playback's context: keyed by ``(user_id, playback_id)``.
PlaybackContext = ProcessContext[tuple[str, str]]


class PlaybackFacts:
    """``KeyedProcessFunction`` keyed by ``(user_id, playback_id)``: events -> facts.

    Args:
        playback_timeout_ms: event time without events after which a playback's
            cursor is reset (and its state dropped).
    """

    states: tuple[StateDescriptor, ...] = (PENDING, CURSOR)

    def __init__(self, playback_timeout_ms: int) -> None:
        self.timeout = playback_timeout_ms

    def process(self, value: dict[str, Any], ctx: PlaybackContext) -> Iterable[dict[str, Any]]:
        """Hold an on-time event for replay; report duplicates and late events."""
        event_id = value["event_id"]
        pending_state = ctx.state(PENDING)
        pending = pending_state.get()
        cursor = ctx.state(CURSOR).get()
        if event_id in pending or (cursor is not None and event_id in cursor["seen"]):
            return [{"excluded": "duplicate", "event": value}]
        ts = ctx.timestamp_ms
        if ts <= ctx.watermark_ms:
            return [{"excluded": "late", "event": value}]
        kind = value["event_type"]
        pending[event_id] = (
            ts,
            LIFECYCLE_RANK.get(kind, len(LIFECYCLE_RANK)),
            event_id,
            kind,
            value["position_ms"],
            value["bitrate_kbps"],
            value["seek_from_ms"],
        )
        pending_state.set(pending)
        if cursor is None:
            dims = (value["title_id"], value["device_type"], value["country"], value["cdn"])
            ctx.state(CURSOR).set(new_cursor(dims))
        ctx.timers.register_event_time(ts)
        return []

    def on_timer(self, ts_ms: int, ctx: PlaybackContext) -> Iterable[dict[str, Any]]:
        """Replay the held events the watermark reached; drop a playback gone quiet."""
        pending_state, cursor_state = ctx.state(PENDING), ctx.state(CURSOR)
        pending = pending_state.get()
        cursor = cursor_state.get()
        if cursor is None:
            return []
        due = sorted(e for e in pending.values() if e[_TS] <= ts_ms)
        facts = []
        playback_id = ctx.key[1]
        for event in due:
            del pending[event[_ID]]
            last = cursor["last"]
            if last is not None and event[_TS] - last[0] > self.timeout:
                cursor = new_cursor(cursor["dims"])
            facts.append(self.replay(cursor, event, playback_id))
        if due:
            pending_state.set(pending)
            cursor_state.set(cursor)
            ctx.timers.register_event_time(cursor["last"][0] + self.timeout)
        elif (
            not pending and cursor["last"] is not None and ts_ms >= cursor["last"][0] + self.timeout
        ):
            cursor_state.clear()
            pending_state.clear()
        return facts

    @staticmethod
    def replay(cursor: dict[str, Any], event: tuple[Any, ...], playback_id: str) -> dict[str, Any]:
        """Advance the cursor by one event; return the event's fact."""
        ts, kind = event[_TS], event[_TYPE]
        last = cursor["last"]
        attempts = failures = plays = watch = weighted = rebuffers = stalled = switches = 0
        startup = None
        if last is not None:
            before = (
                event[_SEEK_FROM]
                if kind == "seek" and event[_SEEK_FROM] is not None
                else event[_POS]
            )
            if before > last[1]:
                watch = before - last[1]
                weighted = watch * last[2]
        if kind == "start":
            cursor["attempt"] = True
            if cursor["start_ts"] is None:
                cursor["start_ts"] = ts
        elif kind in ("play", "error", "stop"):
            if cursor["attempt"]:
                cursor["attempt"] = False
                attempts = 1
                failures = int(kind == "error")
            if kind == "play" and not cursor["played"]:
                cursor["played"] = True
                plays = 1
                if cursor["start_ts"] is not None:
                    startup = ts - cursor["start_ts"]
        elif kind == "rebuffer_start":
            rebuffers = 1
            cursor["stall_ts"] = ts
        elif kind == "rebuffer_end":
            if cursor["stall_ts"] is not None:
                stalled = ts - cursor["stall_ts"]
                cursor["stall_ts"] = None
        elif kind == "bitrate_change":
            switches = 1
        cursor["last"] = (ts, event[_POS], event[_BITRATE])
        cursor["seen"].add(event[_ID])
        title_id, device_type, country, cdn = cursor["dims"]
        return {
            "title_id": title_id,
            "device_type": device_type,
            "country": country,
            "cdn": cdn,
            "playback_id": playback_id,
            "counts": (attempts, failures, plays, watch, weighted, rebuffers, stalled, switches),
            "startup_ms": startup,
        }
