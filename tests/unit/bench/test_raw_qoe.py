"""W3's hand-written loop (``bench.impl_raw_qoe``) without a broker.

Its watermark, replay and windows are fed decoded events directly; what it writes
is checked by the bench's own W3 check against the brute-force QoE reference.
"""

from __future__ import annotations

import json
from typing import Any

from bench.checks import check_qoe, qoe_reference
from bench.common import BOUND_MS
from bench.impl_raw_qoe import RawQoe
from bench.inputs import clean_config
from bench.w1 import partition_of
from runtime.generator import Generator
from tests.reference.qoe import MINUTE
from tests.unit.jobs.test_qoe import T0, S, event


def as_output(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The loop's records as the check reads them from the output topic (JSON)."""
    return {"qoe-metrics": [(None, json.dumps(r).encode()) for r in records]}


def kinds(records: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {(r["window_kind"], r["group_kind"], r["window_start_ms"] - T0) for r in records}


def test_windows_fire_once_the_watermark_reaches_their_end() -> None:
    state = RawQoe(partitions=1)
    early = [
        event(2, "play", 1_500, 0),  # before its start: replayed after it
        event(1, "start", 0, 0),
        event(3, "heartbeat", 10 * S, 8_500),
        event(4, "rebuffer_start", 15 * S, 13_500),
        event(5, "rebuffer_end", 17 * S, 13_500),
        event(6, "bitrate_change", 20 * S, 16_500, bitrate=1_500),
        event(9, "start", 41 * S, 0, playback="pb2"),
        event(8, "heartbeat", 40 * S, 36_500, bitrate=1_500),
        event(10, "error", 43 * S, 0, playback="pb2"),
        event(11, "stop", 50 * S, 46_500, bitrate=1_500),
        event(12, "heartbeat", 64 * S, 50_000, cdn="cdn-b", playback="pb3"),
    ]
    for e in early:
        state.add(0, e)
    assert state.advance() == []  # watermark 59 s: no window has ended
    state.add(0, event(13, "heartbeat", 66 * S, 52_000, cdn="cdn-b", playback="pb3"))
    first = state.advance()  # watermark 61 s
    assert kinds(first) == {
        (w, g, start)
        for w, start in (("tumbling_1m", 0), ("hopping_5m", -4 * MINUTE))
        for g in ("title_device_country_cdn", "cdn")
    }
    state.add(0, event(14, "heartbeat", 12 * MINUTE, 60_000, cdn="cdn-b", playback="pb3"))
    state.add(0, event(15, "heartbeat", 20 * S, 1))  # not after the watermark
    assert state.late == 1
    rest = state.advance()
    assert not kinds(first) & kinds(rest)
    # every playback has been quiet for the timeout; pb3's 12-minute event still waits
    assert state.cursors == {} and len(state.held) == 1

    events = [*early, event(13, "heartbeat", 66 * S, 52_000, cdn="cdn-b", playback="pb3")]
    events.append(event(14, "heartbeat", 12 * MINUTE, 60_000, cdn="cdn-b", playback="pb3"))
    ref = qoe_reference(events, T0 + 12 * MINUTE - BOUND_MS)
    verdict = check_qoe(ref, "qoe-json", as_output(first + rest))
    assert verdict.correct, verdict.examples
    assert verdict.compared == len(ref.closed()) > 12


def test_generated_input_in_batches_matches_the_reference() -> None:
    partitions = 4
    records = [
        r for r in Generator(clean_config(11, 120, interactions=False)).take(12_000) if r.value
    ]
    state = RawQoe(partitions)
    part_max = [0] * partitions
    out: list[dict[str, Any]] = []
    for i in range(0, len(records), 400):
        for r in records[i : i + 400]:
            p = partition_of(r.key, partitions)
            part_max[p] = max(part_max[p], r.value["event_time_ms"])
            state.add(p, r.value)
        out += state.advance()
    ref = qoe_reference([r.value for r in records], min(part_max) - BOUND_MS)
    verdict = check_qoe(ref, "qoe-json", as_output(out))
    assert verdict.correct, verdict.examples
    assert verdict.compared > 1_000 and verdict.repeated == 0 and state.late == 0
