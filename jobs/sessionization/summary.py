"""The session aggregate: keeps a session's distinct events, summarizes them on demand.

The accumulator holds every distinct event of the session (by ``event_id``), so
merging two sessions is a union and the summary does not depend on the order in
which events arrived or sessions merged. Duplicate deliveries fold in once.

Accumulator (plain dicts and tuples, which the state codec stores and which survive
code changes)::

    {"p": {playback_id: {event_id: (ts, rank, position, bitrate, seek_from, title_id, type)}},
     "i": {event_id: ts}}

Definitions (per playback, over its events in the session, ordered by event time,
then lifecycle rank, then event id):

* ``plays``: distinct ``start`` events.
* ``startup_times_ms``: first ``play`` minus first ``start``, for each playback
  with both (and the play not earlier); ordered like the playbacks.
* ``watch_time_ms``: sum over consecutive event pairs ``(a, b)`` of
  ``max(0, before(b) - a.position_ms)``, where ``before(b)`` is ``b.seek_from_ms``
  for a ``seek`` (where the playhead was before jumping) and ``b.position_ms``
  otherwise. Pauses and stalls do not move the playhead, so they add nothing.
* ``avg_bitrate_kbps``: each such advance weighted by ``a.bitrate_kbps`` (the
  bitrate in effect since ``a``): ``sum(advance * bitrate) / watch_time``; 0.0
  without watch time.
* ``rebuffer_count``: ``rebuffer_start`` events; ``rebuffer_time_ms``: each
  ``rebuffer_end`` paired with the latest unpaired ``rebuffer_start`` before it.
* ``bitrate_switches``: ``bitrate_change`` events; ``errors``: ``error`` events.
* ``titles``: distinct titles with playback events, by their first event time
  (then title id).
* ``end_reason``: of the last playback (latest last event, then playback id): the
  type of its last ``stop`` or ``error`` event, else ``abandoned``; a session
  without playback events also says ``abandoned`` (its ``plays`` is 0).
* ``session_start_ms`` / ``session_end_ms``: first and last event time, playback
  and interaction events alike; ``event_count``: distinct playback events.
"""

from __future__ import annotations

from typing import Any

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

Acc = dict[str, dict[str, Any]]

# Positions in an event tuple of the accumulator.
_TS, _RANK, _POS, _BITRATE, _SEEK_FROM, _TITLE, _TYPE = range(7)


class SessionAggregate:
    """``AggregateFunction`` from playback and interaction events to a session summary.

    The result has every ``SessionSummary`` field except ``user_id``, ``device_id``
    and ``revision``, which the job adds (they are not properties of the events).
    """

    def create(self) -> Acc:
        """An empty session."""
        return {"p": {}, "i": {}}

    def add(self, acc: Acc, value: dict[str, Any]) -> Acc:
        """Fold one event in (a repeated ``event_id`` replaces itself)."""
        playback_id = value.get("playback_id")
        if playback_id is None:
            acc["i"][value["event_id"]] = value["event_time_ms"]
            return acc
        kind = value["event_type"]
        event = (
            value["event_time_ms"],
            LIFECYCLE_RANK.get(kind, len(LIFECYCLE_RANK)),
            value["position_ms"],
            value["bitrate_kbps"],
            value["seek_from_ms"],
            value["title_id"],
            kind,
        )
        events = acc["p"].get(playback_id)
        if events is None:
            acc["p"][playback_id] = {value["event_id"]: event}
        else:
            events[value["event_id"]] = event
        return acc

    def merge(self, a: Acc, b: Acc) -> Acc:
        """Union of two sessions' events."""
        plays = a["p"]
        for playback_id, events in b["p"].items():
            mine = plays.get(playback_id)
            if mine is None:
                plays[playback_id] = dict(events)
            else:
                mine.update(events)
        a["i"].update(b["i"])
        return a

    def result(self, acc: Acc) -> dict[str, Any]:
        """The summary of the session (see the module docstring for definitions)."""
        times = list(acc["i"].values())
        playbacks = []
        for playback_id, events in acc["p"].items():
            ordered = sorted(
                events.items(), key=lambda item: (item[1][_TS], item[1][_RANK], item[0])
            )
            playbacks.append((ordered[0][1][_TS], playback_id, [e for _, e in ordered]))
            times.append(ordered[0][1][_TS])
            times.append(ordered[-1][1][_TS])
        playbacks.sort(key=lambda p: (p[0], p[1]))

        title_first: dict[str, int] = {}
        plays = event_count = watch = weighted = 0
        rebuffers = rebuffer_time = switches = errors = 0
        startups: list[int] = []
        last: tuple[int, str] | None = None
        end_reason = "abandoned"
        for first_ts, playback_id, events in playbacks:
            title = events[0][_TITLE]
            if title not in title_first or first_ts < title_first[title]:
                title_first[title] = first_ts
            event_count += len(events)
            first_start = first_play = None
            stalled_at = None
            terminal = None
            prev = None
            for e in events:
                kind = e[_TYPE]
                if kind == "start":
                    plays += 1
                    if first_start is None:
                        first_start = e[_TS]
                elif kind == "play":
                    if first_play is None:
                        first_play = e[_TS]
                elif kind == "rebuffer_start":
                    rebuffers += 1
                    stalled_at = e[_TS]
                elif kind == "rebuffer_end":
                    if stalled_at is not None:
                        rebuffer_time += e[_TS] - stalled_at
                        stalled_at = None
                elif kind == "bitrate_change":
                    switches += 1
                elif kind == "error":
                    errors += 1
                    terminal = "error"
                elif kind == "stop":
                    terminal = "stop"
                if prev is not None:
                    before = (
                        e[_SEEK_FROM] if kind == "seek" and e[_SEEK_FROM] is not None else e[_POS]
                    )
                    advance = before - prev[_POS]
                    if advance > 0:
                        watch += advance
                        weighted += advance * prev[_BITRATE]
                prev = e
            if first_start is not None and first_play is not None and first_play >= first_start:
                startups.append(first_play - first_start)
            ends = (events[-1][_TS], playback_id)
            if last is None or ends > last:
                last = ends
                end_reason = terminal or "abandoned"
        titles = sorted(title_first, key=lambda t: (title_first[t], t))
        return {
            "session_start_ms": min(times),
            "session_end_ms": max(times),
            "titles": titles,
            "plays": plays,
            "watch_time_ms": watch,
            "startup_times_ms": startups,
            "rebuffer_count": rebuffers,
            "rebuffer_time_ms": rebuffer_time,
            "avg_bitrate_kbps": weighted / watch if watch else 0.0,
            "bitrate_switches": switches,
            "errors": errors,
            "end_reason": end_reason,
            "event_count": event_count,
        }
