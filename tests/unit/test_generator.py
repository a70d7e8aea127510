"""Tests of the traffic generator: determinism, delivery faults, coherence, schemas."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import pytest

from runtime.generator import (
    CDNS,
    CORRUPTIONS,
    GENRES,
    LABELS,
    Degradation,
    GeneratedRecord,
    Generator,
    GeneratorConfig,
    catalogue,
    corrupt_bytes,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
MINUTE_MS = 60_000

FAULTY = GeneratorConfig(
    seed=11,
    out_of_order_rate=0.10,
    late_rate=0.02,
    duplicate_rate=0.02,
    malformed_rate=0.01,
    bad_timestamp_rate=0.01,
)
# The same viewers as FAULTY, delivered without faults.
CLEAN_OF_FAULTY = replace(
    FAULTY,
    out_of_order_rate=0.0,
    late_rate=0.0,
    duplicate_rate=0.0,
    malformed_rate=0.0,
    bad_timestamp_rate=0.0,
)
CLEAN = GeneratorConfig(
    seed=5,
    out_of_order_rate=0.0,
    late_rate=0.0,
    duplicate_rate=0.0,
    malformed_rate=0.0,
    bad_timestamp_rate=0.0,
)


@cache
def _records(config: GeneratorConfig, n: int) -> tuple[GeneratedRecord, ...]:
    return tuple(Generator(config).take(n))


@cache
def _schema(name: str) -> Any:
    return fastavro.parse_schema(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text()))


def _field_names(name: str) -> set[str]:
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    return {field["name"] for field in raw["fields"]}


def _playback(records: Iterable[GeneratedRecord]) -> list[dict[str, Any]]:
    return [r.value for r in records if r.stream == "playback"]


# --- determinism and basic shape -------------------------------------------------------


def test_same_seed_same_records_and_other_seed_differs() -> None:
    config = GeneratorConfig(seed=3, users=200)
    first = Generator(config).take(3_000)
    assert first == Generator(config).take(3_000)
    generator = Generator(config)
    assert generator.take(500) == generator.take(500) == first[:500]
    other = Generator(GeneratorConfig(seed=4, users=200)).take(3_000)
    assert [r.value["event_id"] for r in other] != [r.value["event_id"] for r in first]


def test_take_gives_exactly_n_records() -> None:
    generator = Generator(GeneratorConfig(seed=1, users=10))
    assert generator.take(0) == []
    assert len(generator.take(1)) == 1
    assert len(generator.take(2_345)) == 2_345
    with pytest.raises(ValueError, match="n must be >= 0"):
        generator.take(-1)


def test_records_have_key_stream_label_and_corruption_consistent() -> None:
    for record in _records(FAULTY, 20_000):
        assert record.stream in ("playback", "interactions")
        assert record.key == record.value["user_id"].encode("utf-8")
        assert record.label in LABELS
        if record.label == "malformed":
            assert record.corrupt in CORRUPTIONS
        else:
            assert record.corrupt is None


@pytest.mark.parametrize("config", [FAULTY, CLEAN], ids=["faulty", "clean"])
def test_every_value_matches_its_schema_exactly(config: GeneratorConfig) -> None:
    names = {"playback": "PlaybackEvent", "interactions": "InteractionEvent"}
    fields = {stream: _field_names(name) for stream, name in names.items()}
    seen: Counter[str] = Counter()
    for record in _records(config, 20_000):
        seen[record.stream] += 1
        assert set(record.value) == fields[record.stream]
        assert fastavro.validation.validate(
            record.value, _schema(names[record.stream]), raise_errors=True
        )
    assert seen["playback"] > 5_000 and seen["interactions"] > 2_000


def test_event_ids_unique_except_duplicates() -> None:
    records = _records(FAULTY, 20_000)
    originals = [r.value["event_id"] for r in records if r.label != "duplicate"]
    assert len(originals) == len(set(originals))
    playbacks = {v["playback_id"] for v in _playback(records)}
    assert not playbacks & set(originals)


# --- delivery faults --------------------------------------------------------------------


def test_rates_roughly_honoured() -> None:
    records = _records(FAULTY, 20_000)
    labels = Counter(r.label for r in records)
    events = len(records) - labels["duplicate"]
    expected = {
        "out_of_order": FAULTY.out_of_order_rate,
        "late": FAULTY.late_rate,
        "duplicate": FAULTY.duplicate_rate,
        "malformed": FAULTY.malformed_rate,
        "bad_timestamp": FAULTY.bad_timestamp_rate,
    }
    for label, rate in expected.items():
        share = labels[label] / events
        assert abs(share - rate) < 0.2 * rate + 0.002, (label, share, rate)
    # The first delivery of a duplicated event is an ordinary "ok" record.
    not_ok = sum(expected.values()) - expected["duplicate"]
    assert labels["ok"] / events == pytest.approx(1 - not_ok, abs=0.01)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6])
def test_interaction_ratio_roughly_honoured(ratio: float) -> None:
    config = GeneratorConfig(seed=2, users=300, interaction_ratio=ratio)
    records = _records(config, 30_000)
    share = sum(r.stream == "interactions" for r in records) / len(records)
    if ratio == 0.0:
        assert share == 0.0
    else:
        assert abs(share - ratio) < 0.1, share


def test_duplicates_repeat_an_earlier_record_shortly_after() -> None:
    records = _records(FAULTY, 20_000)
    first_seen: dict[str, tuple[int, dict[str, Any]]] = {}
    duplicates = 0
    for position, record in enumerate(records):
        event_id = record.value["event_id"]
        if record.label == "duplicate":
            duplicates += 1
            assert event_id in first_seen
            where, original = first_seen[event_id]
            assert record.value == original
            assert record.value is not original
            assert position - where < 2_000
        else:
            first_seen[event_id] = (position, record.value)
    assert duplicates > 100


def test_disorder_bounded_for_records_not_late() -> None:
    config = GeneratorConfig(seed=8, out_of_order_rate=0.3, out_of_order_ms=3_000, late_rate=0.01)
    records = _records(config, 20_000)
    bound = config.out_of_order_ms
    high = 0
    behind: Counter[bool] = Counter()
    late_behind = 0
    for record in records:
        t = record.value["event_time_ms"]
        if record.label == "bad_timestamp":
            continue
        if record.label == "late":
            # Far behind: beyond the bound by most of the minimum extra delay.
            late_behind += t < high - bound - config.late_delay_ms[0] // 2
        else:
            assert t >= high - bound, record
            behind[high - t > 0] += 1
        high = max(high, t)
    assert behind[True] > 1_000  # disorder did happen
    late = sum(r.label == "late" for r in records)
    assert late > 100 and late_behind >= 0.95 * late


def test_bad_timestamps_are_missing_or_absurd() -> None:
    records = [r for r in _records(FAULTY, 20_000) if r.label == "bad_timestamp"]
    assert len(records) > 50
    year_2001 = 978_307_200_000
    far_future = FAULTY.start_ms + 50 * 365 * 24 * 3_600_000
    kinds: Counter[str] = Counter()
    for record in records:
        t = record.value["event_time_ms"]
        kinds["zero" if t == 0 else "old" if t < year_2001 else "future"] += 1
        assert t == 0 or t < year_2001 or t >= far_future
    assert set(kinds) == {"zero", "old", "future"}


def test_delivery_faults_do_not_change_the_simulated_events() -> None:
    faulty = _records(FAULTY, 10_000)
    clean = _records(CLEAN_OF_FAULTY, 10_000)
    newest = min(
        max(r.value["event_time_ms"] for r in records if r.label == "ok")
        for records in (faulty, clean)
    )
    cutoff = newest - FAULTY.out_of_order_ms - FAULTY.late_delay_ms[1] - 1
    expected = {r.value["event_id"]: r.value for r in clean if r.value["event_time_ms"] <= cutoff}
    delivered = {r.value["event_id"]: r for r in faulty if r.value["event_id"] in expected}
    assert len(expected) > 5_000
    assert set(delivered) == set(expected)
    for event_id, record in delivered.items():
        if record.label != "bad_timestamp":
            assert record.value == expected[event_id]


# --- corruption ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_bytes_breaks_both_wire_formats(how: str) -> None:
    rng = random.Random(0)
    for data in (b"\xc3\x01" + bytes(range(40)), b"\x00\x00\x00\x00\x07payload", b"\xc3"):
        original = bytes(data)
        damaged = corrupt_bytes(data, how, rng)
        assert data == original
        assert damaged != data
        if how == "truncated":
            assert len(damaged) < len(data) and data.startswith(damaged)
        else:
            assert len(damaged) == len(data)
            assert damaged[0] not in (0xC3, 0x00)
    assert corrupt_bytes(b"abc", how, random.Random(5)) == corrupt_bytes(
        b"abc", how, random.Random(5)
    )


def test_corrupt_bytes_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'flip'"):
        corrupt_bytes(b"abc", "flip", random.Random(0))


# --- catalogue and model coherence --------------------------------------------------------


def test_catalogue_is_deterministic_and_used_by_records() -> None:
    titles = catalogue(CLEAN)
    assert titles == catalogue(CLEAN) == Generator(CLEAN).titles
    assert len(titles) == CLEAN.titles
    assert titles[0].title_id == "t0001" and titles[-1].title_id == "t0200"
    assert {t.genre for t in titles} <= set(GENRES)
    by_id = {t.title_id: t for t in titles}
    for record in _records(CLEAN, 20_000):
        value = record.value
        if value["title_id"] is None:
            continue
        title = by_id[value["title_id"]]
        if record.stream == "interactions":
            assert value["genre"] == title.genre
        else:
            assert 0 <= value["position_ms"] <= title.duration_ms


def test_playback_sequences_are_coherent() -> None:
    config = GeneratorConfig(seed=9, bad_timestamp_rate=0.0, late_rate=0.01)
    records = _records(config, 60_000)
    # Only events old enough that every delayed copy has surely arrived.
    newest = max(r.value["event_time_ms"] for r in records)
    cutoff = newest - config.out_of_order_ms - config.late_delay_ms[1] - 1
    plays: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for value in _playback(records):
        if value["event_time_ms"] <= cutoff:
            plays[value["playback_id"]][value["event_id"]] = value
    endings: Counter[str] = Counter()
    for events in plays.values():
        ordered = sorted(events.values(), key=lambda v: v["event_time_ms"])
        times = [v["event_time_ms"] for v in ordered]
        assert len(set(times)) == len(times)
        endings[_check_play(ordered)] += 1
    assert endings["stop"] > 50 and endings["error"] > 5 and endings["startup_error"] > 5


def _check_play(events: list[dict[str, Any]]) -> str:
    """Assert one playback is coherent; return how it ended so far."""
    kinds: list[str] = [v["event_type"] for v in events]
    assert kinds[0] == "start"
    assert kinds.count("start") == 1 and kinds.count("play") <= 1
    constant = ("user_id", "device_id", "title_id", "cdn", "country", "profile_id")
    assert len({tuple(v[f] for f in constant) for v in events}) == 1
    stalled = paused = False
    previous = events[0]
    for index, value in enumerate(events):
        kind = value["event_type"]
        assert (value["error_code"] is not None) == (kind == "error")
        assert (value["seek_from_ms"] is not None) == (kind == "seek")
        if index == 0:
            continue
        assert previous["event_type"] not in ("stop", "error"), "event after the end"
        if kind not in ("error", "play"):
            assert "play" in kinds[:index], kinds[: index + 1]
        if kind == "seek":
            assert value["seek_from_ms"] >= previous["position_ms"]
        else:
            assert value["position_ms"] >= previous["position_ms"], (previous, value)
        assert (kind == "rebuffer_end") == stalled, kinds[: index + 1]
        stalled = kind == "rebuffer_start"
        assert (kind == "resume") == paused, kinds[: index + 1]
        paused = kind == "pause"
        previous = value
    if kinds[-1] == "error":
        return "startup_error" if "play" not in kinds else "error"
    return kinds[-1]


def test_play_intent_leads_to_a_start_of_that_title() -> None:
    records = _records(CLEAN, 20_000)
    ordered = sorted((r.value for r in records), key=lambda v: v["event_time_ms"])
    newest = ordered[-1]["event_time_ms"]
    intents: dict[str, dict[str, Any]] = {}
    matched = 0
    for value in ordered:
        if value["event_type"] == "play_intent" and value["event_time_ms"] < newest - 5_000:
            intents[value["user_id"]] = value
        elif value["event_type"] == "start" and value["user_id"] in intents:
            intent = intents.pop(value["user_id"])
            assert value["title_id"] == intent["title_id"]
            assert 0 < value["event_time_ms"] - intent["event_time_ms"] <= 2_000
            matched += 1
    assert matched > 50
    assert not intents, "a play intent without a start"


def test_sessions_have_short_and_long_gaps() -> None:
    config = GeneratorConfig(seed=4, users=30, late_rate=0.0, bad_timestamp_rate=0.0)
    last: dict[str, int] = {}
    gaps: Counter[str] = Counter()
    for record in _records(config, 30_000):
        value = record.value
        previous = last.get(value["user_id"])
        if previous is not None:
            gap = value["event_time_ms"] - previous
            gaps["long" if gap > 30 * MINUTE_MS else "short" if gap > MINUTE_MS else "none"] += 1
        last[value["user_id"]] = max(previous or 0, value["event_time_ms"])
    assert gaps["long"] > 20 and gaps["short"] > 5


def test_degradation_raises_rebuffering_of_its_cdn_in_its_stretch() -> None:
    stretch = (MINUTE_MS, 4 * MINUTE_MS)
    config = GeneratorConfig(seed=13, degradations=(Degradation("cdn-b", *stretch),))
    start, end = (config.start_ms + offset for offset in stretch)
    heartbeats: Counter[tuple[str, bool]] = Counter()
    stalls: Counter[tuple[str, bool]] = Counter()
    bitrate: Counter[tuple[str, bool]] = Counter()
    for value in _playback(_records(config, 40_000)):
        key = (value["cdn"], start <= value["event_time_ms"] < end)
        if value["event_type"] == "heartbeat":
            heartbeats[key] += 1
            bitrate[key] += value["bitrate_kbps"]
        elif value["event_type"] == "rebuffer_start":
            stalls[key] += 1

    def stall_rate(key: tuple[str, bool]) -> float:
        return stalls[key] / heartbeats[key]

    assert heartbeats[("cdn-b", True)] > 500
    assert stall_rate(("cdn-b", True)) > 3 * stall_rate(("cdn-b", False))
    for cdn in CDNS:
        if cdn != "cdn-b":
            assert stall_rate(("cdn-b", True)) > 3 * stall_rate((cdn, True))
    degraded_kbps = bitrate[("cdn-b", True)] / heartbeats[("cdn-b", True)]
    assert degraded_kbps < 0.6 * bitrate[("cdn-b", False)] / heartbeats[("cdn-b", False)]


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0}, "users must be >= 1"),
        ({"titles": -1}, "titles must be >= 1"),
        ({"users": 1.5}, "users must be an int"),
        ({"late_rate": 1.5}, "late_rate must be between 0 and 1"),
        ({"duplicate_rate": -0.1}, "duplicate_rate must be between 0 and 1"),
        ({"malformed_rate": "x"}, "malformed_rate must be a number"),
        ({"out_of_order_rate": 0.6, "late_rate": 0.5}, "must sum to at most 1"),
        ({"out_of_order_ms": 0}, "out_of_order_rate > 0 needs out_of_order_ms >= 1"),
        ({"out_of_order_ms": -5}, "out_of_order_ms must be >= 0"),
        ({"interaction_ratio": 1.0}, "interaction_ratio must be below 1"),
        ({"late_delay_ms": (5_000, 1_000)}, r"late_delay_ms\[1\] must be >= 5000"),
        ({"late_delay_ms": 5}, "late_delay_ms must be a"),
        ({"degradations": ["cdn-a"]}, "degradations must be a tuple of Degradation"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cdn-z", 0, 10), "Degradation.cdn must be one of"),
        (("cdn-a", 10, 10), "end_offset_ms must be after start_offset_ms"),
        (("cdn-a", -1, 10), "start_offset_ms must be >= 0"),
        (("cdn-a", 0, 10, 0.0), "rebuffer_multiplier must be a positive number"),
        (("cdn-a", 0, 10, 2.0, -1.0), "bitrate_divisor must be a positive number"),
    ],
)
def test_degradation_validation(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Degradation(*args)


def test_config_is_frozen_and_hashable() -> None:
    config = GeneratorConfig(seed=1, degradations=(Degradation("cdn-c", 0, 1_000),))
    assert hash(config) == hash(GeneratorConfig(seed=1, degradations=config.degradations))
    with pytest.raises(AttributeError):
        config.seed = 2  # type: ignore[misc]
