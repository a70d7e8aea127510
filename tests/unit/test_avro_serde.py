"""Avro serdes: both wire formats, evolution, every decode failure, validation."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import schemas
from connectors.avro import (
    FORMATS,
    SINGLE_OBJECT_MAGIC,
    AvroSerde,
    RegistryLookup,
    RegistrySerde,
    SchemaRepository,
    make_serde,
    sample_datums,
    value_subject,
)
from connectors.kafka.client import registry_client
from runtime.api.errors import (
    ConfigError,
    DecodeError,
    RecordOrigin,
    SchemaError,
)

ORIGIN = RecordOrigin("plays", 3, 1234)

PLAY_V1: dict[str, Any] = {
    "type": "record",
    "name": "Play",
    "namespace": "test.events",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {
            "name": "kind",
            "type": {"type": "enum", "name": "Kind", "symbols": ["start", "stop", "seek"]},
        },
        {"name": "event_time_ms", "type": "long"},
        {"name": "bitrate_kbps", "type": "int"},
        {"name": "error_code", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {
            "name": "qoe",
            "type": {
                "type": "record",
                "name": "Qoe",
                "fields": [
                    {"name": "buffer_ms", "type": "int"},
                    {"name": "counters", "type": {"type": "map", "values": "long"}},
                ],
            },
        },
    ],
}


def play(**changes: Any) -> dict[str, Any]:
    """A valid ``Play`` value, with some fields changed."""
    value: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u-7",
        "kind": "start",
        "event_time_ms": 1_700_000_000_000,
        "bitrate_kbps": 4500,
        "error_code": None,
        "tags": ["hd", "wifi"],
        "qoe": {"buffer_ms": 250, "counters": {"stalls": 2}},
    }
    value.update(changes)
    return value


def play_v2() -> dict[str, Any]:
    """``Play`` with a new defaulted field, a dropped field and int promoted to long."""
    schema = copy.deepcopy(PLAY_V1)
    fields = [f for f in schema["fields"] if f["name"] != "tags"]
    for field in fields:
        if field["name"] == "bitrate_kbps":
            field["type"] = "long"
    fields.append({"name": "cdn", "type": "string", "default": "unknown"})
    schema["fields"] = fields
    return schema


@pytest.fixture()
def serde() -> AvroSerde:
    return AvroSerde("Play", SchemaRepository([PLAY_V1]))


def in_process_fake_registry(name: str) -> Any:
    """The registry client library's in-process fake registry (``mock://``).

    Unit tests need no server; tests/integration/test_schema_registry.py runs the same
    framing against a real registry server.
    """
    return registry_client({"url": f"mock://{name}"})


class CountingRegistry:
    """Wraps a registry client and counts its calls (to see the caches work)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def register_schema(self, subject_name: str, schema: Any) -> int:
        self.calls.append("register_schema")
        return int(self.inner.register_schema(subject_name, schema))

    def lookup_schema(self, subject_name: str, schema: Any) -> Any:
        self.calls.append("lookup_schema")
        return self.inner.lookup_schema(subject_name, schema)

    def get_schema(self, schema_id: int) -> Any:
        self.calls.append("get_schema")
        return self.inner.get_schema(schema_id)


# -- single-object encoding --------------------------------------------------


def test_round_trip(serde: AvroSerde) -> None:
    value = play()
    assert serde.decode(serde.encode(value)) == value


def test_round_trip_many_and_batch(serde: AvroSerde) -> None:
    values = [play(event_id=f"e-{i}", kind=k) for i, k in enumerate(["start", "seek", "stop"])]
    datas = serde.encode_many(values)
    assert [serde.decode(d) for d in datas] == values
    assert serde.decode_batch(datas) == (values, [])


def test_round_trip_of_generated_samples(serde: AvroSerde) -> None:
    samples = sample_datums(PLAY_V1, 20, seed=3)
    assert serde.decode_batch(serde.encode_many(samples)) == (samples, [])


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification gives it ("Schema Fingerprints")."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_avro_reference_matches_published_vectors() -> None:
    # Values from the Avro project's schema test data, as signed 64-bit longs.
    for text, signed in [('"null"', 7195948357588979594), ('"int"', 8247732601305521295)]:
        assert crc64_avro(text.encode()) == signed % 2**64


def test_single_object_header_follows_the_spec(serde: AvroSerde) -> None:
    data = serde.encode(play())
    canonical = serde.schema.canonical
    assert data[:2] == SINGLE_OBJECT_MAGIC == b"\xc3\x01"
    assert data[2:10] == crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")
    # The canonical form drops docs, defaults and namespaces (names become full).
    assert canonical.startswith('{"name":"test.events.Play","type":"record","fields":[')
    assert "default" not in canonical


def test_single_object_header_of_the_published_empty_record() -> None:
    foo = {"fields": [], "type": "record", "name": "foo"}
    serde = AvroSerde("foo", SchemaRepository([foo]))
    assert serde.schema.canonical == '{"name":"foo","type":"record","fields":[]}'
    expected = (-4824392279771201922 % 2**64).to_bytes(8, "little")
    assert serde.encode({}) == SINGLE_OBJECT_MAGIC + expected


# -- evolution ---------------------------------------------------------------


def test_reader_adds_a_defaulted_field_drops_one_and_promotes() -> None:
    writer = AvroSerde("Play", SchemaRepository([PLAY_V1]))
    repository = SchemaRepository([play_v2()])
    repository.add_version(PLAY_V1)
    reader = AvroSerde("Play", repository)
    got = reader.decode(writer.encode(play()))
    expected = {k: v for k, v in play().items() if k != "tags"} | {"cdn": "unknown"}
    assert got == expected
    assert list(got) == [f["name"] for f in play_v2()["fields"]]  # reader's field order


def test_older_reader_reads_newer_data_by_dropping_fields() -> None:
    newer = copy.deepcopy(PLAY_V1)
    newer["fields"].append({"name": "cdn", "type": "string", "default": "unknown"})
    repository = SchemaRepository([PLAY_V1])
    repository.add_version(newer)
    value = play()
    data = AvroSerde("Play", SchemaRepository([newer])).encode(value | {"cdn": "edge-1"})
    assert AvroSerde("Play", repository).decode(data) == value


def test_evolution_that_needs_full_resolution() -> None:
    # A union gains a branch in the middle: not a simple reshape, fastavro resolves.
    old = {"type": "record", "name": "U", "fields": [{"name": "v", "type": ["null", "int"]}]}
    new = {
        "type": "record",
        "name": "U",
        "fields": [{"name": "v", "type": ["null", "string", "long"]}],
    }
    repository = SchemaRepository([new])
    repository.add_version(old)
    data = AvroSerde("U", SchemaRepository([old])).encode_many([{"v": 5}, {"v": None}])
    values, failures = AvroSerde("U", repository).decode_batch(data)
    assert (values, failures) == ([{"v": 5}, {"v": None}], [])


def test_writer_of_another_record_is_rejected() -> None:
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    repository = SchemaRepository([PLAY_V1, other])
    data = AvroSerde("Other", repository).encode({"x": 1})
    with pytest.raises(DecodeError, match="written as record Other"):
        AvroSerde("Play", repository).decode(data, ORIGIN)


# -- decode failures ---------------------------------------------------------


def _failures(serde: AvroSerde) -> dict[str, bytes]:
    good = serde.encode(play())
    header = good[:10]
    unknown = SINGLE_OBJECT_MAGIC + bytes(8)
    return {
        "empty": b"",
        "short header": good[:6],
        "bad magic": b"\x00\x01" + good[2:],
        "json instead of avro": b'{"event_id": "e-1"}',
        "unknown fingerprint": unknown + good[10:],
        "truncated body": good[:-3],
        "header only": header,
        "bad utf-8": header + b"\x04\xff\xfe" + good[13:],
        "bad enum index": header + b"\x02a\x02b\x7e" + good[15:],
        "trailing bytes": good + b"\x00\x00",
        "garbage body": header + bytes(range(200, 256)) * 3,
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "short header",
        "bad magic",
        "json instead of avro",
        "unknown fingerprint",
        "truncated body",
        "header only",
        "bad utf-8",
        "bad enum index",
        "trailing bytes",
        "garbage body",
    ],
)
def test_every_failure_is_a_decode_error_naming_the_origin(serde: AvroSerde, case: str) -> None:
    with pytest.raises(DecodeError) as info:
        serde.decode(_failures(serde)[case], ORIGIN)
    assert info.value.origin == ORIGIN
    assert "plays[3]@1234" in str(info.value)
    assert "test.events.Play" in str(info.value)


def test_failure_messages_say_what_is_wrong(serde: AvroSerde) -> None:
    cases = _failures(serde)
    expect = {
        "bad magic": "bad magic bytes 0001",
        "unknown fingerprint": "unknown writer schema fingerprint 0000000000000000",
        "short header": "shorter than the 10-byte",
        "trailing bytes": "2 bytes left after the body",
        "truncated body": "bad body (EOFError",
    }
    for case, text in expect.items():
        with pytest.raises(DecodeError, match=_escape(text)):
            serde.decode(cases[case], ORIGIN)


def test_a_tombstone_is_a_decode_error(serde: AvroSerde) -> None:
    values, failures = serde.decode_batch([None])  # type: ignore[list-item]
    assert values == [] and "expected bytes, got NoneType" in str(failures[0][1])


def test_decode_batch_collects_failures_by_index(serde: AvroSerde) -> None:
    cases = _failures(serde)
    good = [play(event_id=f"e-{i}") for i in range(4)]
    encoded = serde.encode_many(good)
    datas = [encoded[0], cases["bad magic"], encoded[1], encoded[2], cases["truncated body"]]
    datas.append(encoded[3])
    origins = [RecordOrigin("plays", 0, 100 + i) for i in range(len(datas))]
    values, failures = serde.decode_batch(datas, origins)
    assert values == good
    assert [index for index, _ in failures] == [1, 4]
    assert [error.origin.offset for _, error in failures] == [101, 104]
    assert all(isinstance(error, DecodeError) for _, error in failures)


def test_decode_batch_asks_for_origins_only_of_failures(serde: AvroSerde) -> None:
    asked: list[int] = []

    def origin_of(index: int) -> RecordOrigin:
        asked.append(index)
        return RecordOrigin("plays", 1, 500 + index)

    datas = [serde.encode(play()), b"\xc3\x01junk", serde.encode(play())]
    values, failures = serde.decode_batch(datas, origin_of)
    assert len(values) == 2 and asked == [1]
    assert "plays[1]@501" in str(failures[0][1])


# -- validation and encoding errors -----------------------------------------


@pytest.mark.parametrize(
    "value, path",
    [
        (play(bitrate_kbps="fast"), "bitrate_kbps: expected int, got str 'fast'"),
        (play(bitrate_kbps=2**40), "bitrate_kbps: expected int"),
        (play(kind="rewind"), "kind: expected enum test.events.Kind"),
        (play(tags=["ok", 3]), "tags[1]: expected string, got int 3"),
        (play(qoe={"buffer_ms": 1, "counters": {"a": "x"}}), "qoe.counters['a']: expected long"),
        (play(qoe={"counters": {}}), "qoe.buffer_ms: missing"),
        (play(error_code=7), "error_code: expected union[null, string], got int 7"),
        ({k: v for k, v in play().items() if k != "user_id"}, "user_id: missing"),
    ],
)
def test_validate_names_the_field_path(serde: AvroSerde, value: Any, path: str) -> None:
    with pytest.raises(SchemaError, match="test.events.Play: " + _escape(path)):
        serde.validate(value)


def _escape(text: str) -> str:
    return re.escape(text)


def test_validate_accepts_good_values_and_defaults(serde: AvroSerde) -> None:
    serde.validate(play())
    serde.validate({k: v for k, v in play().items() if k not in ("tags", "error_code")})


def test_encode_rejects_a_bad_value_with_a_schema_error(serde: AvroSerde) -> None:
    with pytest.raises(SchemaError, match=r"qoe\.buffer_ms: expected int"):
        serde.encode(play(qoe={"buffer_ms": "x", "counters": {}}))


@pytest.mark.parametrize(
    "value, path",
    [
        (play(event_time_ms=1.7), "event_time_ms: expected long, got float 1.7"),
        (play(event_time_ms=2.0), "event_time_ms: expected long, got float 2.0"),
        (play(bitrate_kbps=True), "bitrate_kbps: expected int, got bool True"),
        (play(bitrate_kbps=2**31), "bitrate_kbps: expected int"),
        (play(event_time_ms=2**63), "event_time_ms: expected long"),
    ],
)
def test_encode_refuses_what_the_writer_would_truncate(
    serde: AvroSerde, value: Any, path: str
) -> None:
    """fastavro writes 1.7 into a long as 1 and True as 1, silently: encode refuses."""
    with pytest.raises(SchemaError, match="test.events.Play: " + _escape(path)):
        serde.encode(value)
    with pytest.raises(SchemaError, match=_escape(path)):
        serde.encode_many([play(), value])


def test_integer_check_leaves_nullable_and_good_integers_alone() -> None:
    schema = copy.deepcopy(PLAY_V1)
    schema["fields"].append({"name": "retries", "type": ["null", "long"], "default": None})
    nullable = AvroSerde("Play", SchemaRepository([schema]))
    for value in (play(), play(retries=None), play(retries=3), play(event_time_ms=-(2**63))):
        assert nullable.decode(nullable.encode(value))["event_time_ms"] == value["event_time_ms"]
    with pytest.raises(SchemaError, match=r"retries: expected union\[null, long\]"):
        nullable.encode(play(retries=0.5))


# -- schema repository and loader -------------------------------------------


def test_repository_finds_by_short_and_full_name() -> None:
    repository = SchemaRepository([PLAY_V1])
    assert repository.current("Play") is repository.current("test.events.Play")
    with pytest.raises(ConfigError, match=r"'Nope' is unknown \(known: test.events.Play\)"):
        repository.current("Nope")


def test_repository_loads_the_schemas_folder() -> None:
    repository = SchemaRepository.from_directory()
    names = schemas.schema_names()
    assert names, "no .avsc files in schemas/"
    assert sorted(n.rsplit(".", 1)[-1] for n in repository.names) == names
    for name in names:
        assert repository.current(name).schema == schemas.load_schema(name)


def test_repository_checks_file_names(tmp_path: Path) -> None:
    (tmp_path / "Wrong.avsc").write_text('{"type":"record","name":"Play","fields":[]}')
    with pytest.raises(ConfigError, match=r"must be named after its record \(Play.avsc\)"):
        SchemaRepository.from_directory(tmp_path)


def test_load_schema_lists_known_names_for_an_unknown_one() -> None:
    with pytest.raises(schemas.SchemaNotFoundError, match="known: .*PlaybackEvent"):
        schemas.load_schema("NoSuchSchema")
    with pytest.raises(schemas.SchemaNotFoundError):
        schemas.load_schema("../pyproject")


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_shipped_schema_round_trips(name: str) -> None:
    serde = AvroSerde(name, SchemaRepository.from_directory())
    samples = sample_datums(serde.schema.schema, seed=11)
    for sample in samples:
        serde.validate(sample)
    assert serde.decode_batch(serde.encode_many(samples)) == (samples, [])


# -- Confluent schema registry framing (in-process fake registry) -------------


def test_registry_round_trip_with_the_fake_registry() -> None:
    registry = CountingRegistry(in_process_fake_registry("round-trip"))
    serde = RegistrySerde("Play", SchemaRepository([PLAY_V1]), registry, value_subject("plays"))
    datas = serde.encode_many([play(), play(kind="stop")])
    schema_id = serde.schema_id()
    assert datas[0][:5] == b"\x00" + schema_id.to_bytes(4, "big")
    assert serde.decode_batch(datas) == ([play(), play(kind="stop")], [])
    # Ids are cached both ways: one registration, and no lookup of our own id.
    assert registry.calls == ["register_schema"]
    reader = RegistrySerde("Play", SchemaRepository([PLAY_V1]), registry, "plays-value")
    assert reader.decode(datas[0]) == play() and reader.decode(datas[1])["kind"] == "stop"
    assert registry.calls == ["register_schema", "get_schema"]


def test_registry_decode_resolves_an_older_writer() -> None:
    registry = in_process_fake_registry("evolution")
    old = RegistrySerde("Play", SchemaRepository([PLAY_V1]), registry, "plays-value")
    data = old.encode(play())
    new = RegistrySerde("Play", SchemaRepository([play_v2()]), registry, "plays-value")
    assert new.decode(data)["cdn"] == "unknown"
    assert new.schema_id() != old.schema_id()


def test_registry_failures_are_decode_errors_naming_the_origin() -> None:
    registry = in_process_fake_registry("failures")
    serde = RegistrySerde("Play", SchemaRepository([PLAY_V1]), registry, "plays-value")
    good = serde.encode(play())
    cases = {
        "schema id 999 is unknown to the registry": b"\x00\x00\x00\x03\xe7" + good[5:],
        "bad magic byte": b"\x07" + good[1:],
        "shorter than the 5-byte": good[:3],
        "bad body": good[:-2],
    }
    for text, data in cases.items():
        with pytest.raises(DecodeError, match=text) as info:
            serde.decode(data, ORIGIN)
        assert "plays[3]@1234" in str(info.value)


def test_registry_outage_dead_letters_the_record_and_is_remembered_a_while() -> None:
    class DownRegistry(CountingRegistry):
        def get_schema(self, schema_id: int) -> Any:
            self.calls.append("get_schema")
            raise OSError("connection refused")

    now = [0.0]
    registry = DownRegistry(None)
    lookup = RegistryLookup(registry, retry_after_s=30, clock=lambda: now[0])
    serde = RegistrySerde(
        "Play", SchemaRepository([PLAY_V1]), registry, "plays-value", lookup=lookup
    )
    record = b"\x00\x00\x00\x00\x01\x00"
    values, failures = serde.decode_batch([record, record], [ORIGIN, ORIGIN])
    assert values == [] and [i for i, _ in failures] == [0, 1]
    assert "lookup of schema id 1 failed: connection refused" in str(failures[0][1])
    assert "plays[3]@1234" in str(failures[0][1])
    assert registry.calls == ["get_schema"]  # the second record did not ask again
    now[0] = 29.0
    serde.decode_batch([record])
    assert registry.calls == ["get_schema"]
    now[0] = 31.0
    serde.decode_batch([record])
    assert registry.calls == ["get_schema", "get_schema"]


def test_registry_without_auto_register_needs_a_registered_schema() -> None:
    registry = in_process_fake_registry("no-auto")
    repository = SchemaRepository([PLAY_V1])
    serde = RegistrySerde("Play", repository, registry, "plays-value", auto_register=False)
    with pytest.raises(ConfigError, match="not registered .* auto.register.schemas is false"):
        serde.register()
    RegistrySerde("Play", repository, registry, "plays-value").register()
    assert serde.decode(serde.encode(play())) == play()


# -- format selection --------------------------------------------------------


def test_make_serde_picks_the_format() -> None:
    repository = SchemaRepository([PLAY_V1])
    assert FORMATS == ("single-object", "confluent")
    assert isinstance(make_serde("single-object", "Play", repository), AvroSerde)
    registry = in_process_fake_registry("select")
    serde = make_serde("confluent", "Play", repository, topic="plays", registry=registry)
    assert isinstance(serde, RegistrySerde) and serde.subject == "plays-value"
    assert serde.decode(serde.encode(play())) == play()


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda r: make_serde("json", "Play", r),
            "unknown serialization format 'json'; valid formats: single-object, confluent",
        ),
        (lambda r: make_serde("confluent", "Play", r, {"url": "http://x"}), "needs the topic"),
        (lambda r: make_serde("confluent", "Play", r, topic="t"), "needs a schema registry"),
        (lambda r: make_serde("single-object", "Nope", r), "schema 'Nope' is unknown"),
    ],
)
def test_make_serde_config_errors(call: Callable[[SchemaRepository], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=_escape(message)):
        call(SchemaRepository([PLAY_V1]))
