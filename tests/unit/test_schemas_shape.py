"""Shape of the Avro schemas in ``schemas/``: loadable standalone, named, documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))

INPUTS = {"PlaybackEvent", "InteractionEvent", "TitleCatalogEntry"}
OUTPUTS = {
    "SessionSummary",
    "QoeMetric",
    "PersonalizationScore",
    "QoeAlert",
    "DeadLetter",
    "AttributionMetric",
}

PLAYBACK_FIELDS = [
    "event_id",
    "user_id",
    "profile_id",
    "device_id",
    "device_type",
    "app_version",
    "country",
    "isp",
    "cdn",
    "title_id",
    "playback_id",
    "event_type",
    "event_time_ms",
    "position_ms",
    "bitrate_kbps",
    "buffer_ms",
    "error_code",
    "seek_from_ms",
]
INTERACTION_FIELDS = [
    "event_id",
    "user_id",
    "profile_id",
    "device_id",
    "device_type",
    "country",
    "event_type",
    "event_time_ms",
    "title_id",
    "genre",
    "row_name",
    "row_index",
    "rank",
    "search_query",
    "rating",
]


def _load(name: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{name}.avsc").open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def _fields(name: str) -> dict[str, dict[str, Any]]:
    return {field["name"]: field for field in _load(name)["fields"]}


def _named_types(node: Any) -> list[dict[str, Any]]:
    """Every enum and record definition nested anywhere in a schema."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") in ("enum", "record"):
            found.append(node)
        for value in node.values():
            found.extend(_named_types(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_named_types(item))
    return found


def test_every_expected_schema_exists() -> None:
    assert {path.stem for path in SCHEMA_FILES} >= INPUTS | OUTPUTS


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_schema_parses_standalone_as_a_documented_record(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    parsed = fastavro.parse_schema(schema)
    assert isinstance(parsed, dict)
    assert schema["type"] == "record"
    assert schema["name"] == path.stem
    assert parsed["name"] == f"{schema['namespace']}.{path.stem}"
    assert isinstance(schema.get("doc"), str) and schema["doc"].strip()
    expected_namespace = "shoal.events" if path.stem in INPUTS else "shoal.outputs"
    assert schema["namespace"] == expected_namespace


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_nullable_fields_default_to_null_and_enums_have_defaults(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    for node in _named_types(schema):
        if node["type"] == "enum":
            assert node.get("default") in node["symbols"], node["name"]
            continue
        for field in node["fields"]:
            kind = field["type"]
            if isinstance(kind, list) and kind[0] == "null":
                assert "default" in field and field["default"] is None, field["name"]


def test_playback_event_has_every_field_in_order() -> None:
    fields = _fields("PlaybackEvent")
    assert list(fields) == PLAYBACK_FIELDS
    assert fields["event_time_ms"]["type"] == "long"  # plain long: no logicalType
    assert fields["position_ms"]["type"] == "long"
    assert fields["bitrate_kbps"]["type"] == "int"
    assert fields["buffer_ms"]["type"] == "int"
    assert fields["error_code"]["type"] == ["null", "string"]
    assert fields["seek_from_ms"]["type"] == ["null", "long"]
    device = fields["device_type"]["type"]
    assert device["name"] == "DeviceType"
    assert device["symbols"] == ["tv", "mobile", "tablet", "web", "console"]
    event_type = fields["event_type"]["type"]
    assert event_type["name"] == "PlaybackEventType"
    assert event_type["symbols"] == [
        "start",
        "play",
        "pause",
        "resume",
        "seek",
        "rebuffer_start",
        "rebuffer_end",
        "bitrate_change",
        "error",
        "heartbeat",
        "stop",
    ]


def test_interaction_event_fields_and_shared_device_enum() -> None:
    fields = _fields("InteractionEvent")
    assert list(fields) == INTERACTION_FIELDS
    assert fields["device_type"]["type"] == _fields("PlaybackEvent")["device_type"]["type"]
    assert fields["rating"]["type"] == ["null", "int"]
    assert fields["row_index"]["type"] == ["null", "int"]
    assert fields["event_type"]["type"]["symbols"] == [
        "impression",
        "hover",
        "search",
        "play_intent",
        "add_to_list",
        "remove_from_list",
        "thumbs_up",
        "thumbs_down",
        "rating",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "SessionSummary",
            "user_id device_id session_start_ms session_end_ms titles plays watch_time_ms "
            "startup_times_ms rebuffer_count rebuffer_time_ms avg_bitrate_kbps "
            "bitrate_switches errors end_reason event_count revision",
        ),
        (
            "QoeMetric",
            "window_start_ms window_end_ms window_kind group_kind title_id device_type country "
            "cdn plays_started startup_p50_ms startup_p90_ms startup_p99_ms watch_time_ms "
            "rebuffer_time_ms rebuffer_count rebuffer_ratio rebuffers_per_hour "
            "avg_bitrate_kbps bitrate_switches play_attempts play_failures failure_rate "
            "concurrent_streams",
        ),
        (
            "PersonalizationScore",
            "user_id updated_ms model_version top_titles genre_affinity",
        ),
        (
            "QoeAlert",
            "alert_id rule state group metric value threshold window_end_ms "
            "incident_started_ms emitted_ms",
        ),
        (
            "DeadLetter",
            "job step error_class error_message source_topic source_partition source_offset "
            "original_key original_value failed_ms",
        ),
    ],
)
def test_output_schema_fields(name: str, expected: str) -> None:
    # The original fields stay, in order; later versions may only append fields (with
    # defaults: test_schema_evolution guards that).
    assert list(_fields(name))[: len(expected.split())] == expected.split()


def test_session_summary_revision_defaults_to_zero() -> None:
    revision = _fields("SessionSummary")["revision"]
    assert revision["type"] == "int"
    assert revision["default"] == 0
    reasons = _fields("SessionSummary")["end_reason"]["type"]
    assert reasons["symbols"] == ["stop", "error", "abandoned"]


def test_output_records_round_trip() -> None:
    record = {
        "user_id": "u000001",
        "updated_ms": 1,
        "model_version": "v1",
        "top_titles": [{"title_id": "t0001", "score": 0.5, "genre": None}],
        "genre_affinity": {"drama": 0.7},
    }
    parsed = fastavro.parse_schema(_load("PersonalizationScore"))
    assert fastavro.validation.validate(record, parsed, raise_errors=True)
    alert = {
        "alert_id": "a1",
        "rule": "rebuffer_ratio_high",
        "state": "fired",
        "group": {"cdn": "cdn-b"},
        "metric": "rebuffer_ratio",
        "value": 0.2,
        "threshold": 0.05,
        "window_end_ms": 2,
        "incident_started_ms": 2,
        "emitted_ms": 3,
    }
    assert fastavro.validation.validate(
        alert, fastavro.parse_schema(_load("QoeAlert")), raise_errors=True
    )
