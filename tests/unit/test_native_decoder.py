"""The native Avro decoder agrees with fastavro: on random schemas and values, on
mutated bytes (it either gives fastavro's value or hands the record back), and through
the serde, where values, failure indices and messages are the same with it on or off."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.avro import AvroSerde, SchemaRepository, native
from connectors.avro.serde import FramedSerde
from runtime.api.errors import RecordOrigin

_names = itertools.count()

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]


def _name(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


@st.composite
def schemas(draw: st.DrawFn, depth: int = 3) -> Any:
    """An Avro schema node (records, enums and fixed get fresh names)."""
    kinds = ["primitive"] * 4 + (
        ["enum", "fixed", "array", "map", "union", "record"] if depth > 0 else ["enum", "fixed"]
    )
    kind = draw(st.sampled_from(kinds))
    if kind == "primitive":
        return draw(st.sampled_from(PRIMITIVES))
    if kind == "enum":
        count = draw(st.integers(1, 5))
        return {"type": "enum", "name": _name("E"), "symbols": [f"S{i}" for i in range(count)]}
    if kind == "fixed":
        return {"type": "fixed", "name": _name("F"), "size": draw(st.integers(0, 6))}
    if kind == "array":
        return {"type": "array", "items": draw(schemas(depth - 1))}
    if kind == "map":
        return {"type": "map", "values": draw(schemas(depth - 1))}
    if kind == "union":
        branches = draw(st.lists(st.sampled_from(PRIMITIVES), min_size=1, max_size=4, unique=True))
        return branches
    return draw(records(depth - 1))


@st.composite
def records(draw: st.DrawFn, depth: int = 3) -> dict[str, Any]:
    count = draw(st.integers(0, 6))
    fields = [{"name": f"f{i}", "type": draw(schemas(depth))} for i in range(count)]
    return {"type": "record", "name": _name("R"), "fields": fields}


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Values fastavro writes with ``schema`` (as it reads them back)."""
    if isinstance(schema, list):
        return st.one_of([values(branch) for branch in schema])
    if isinstance(schema, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=20),
            "string": st.text(max_size=20),
        }[schema]
    kind = schema["type"]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=5), values(schema["values"]), max_size=4)
    return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})


def fast_read(parsed: Any, body: bytes) -> Any:
    """What fastavro reads, or ``_BAD`` when it fails or leaves bytes over."""
    stream = io.BytesIO(body)
    try:
        value = fastavro.schemaless_reader(stream, parsed, None)
    except Exception:
        return _BAD
    return value if stream.tell() == len(body) else _BAD


_BAD = object()


def _zero_size(node: Any, named: dict[str, Any]) -> bool:
    """Whether values of ``node`` can take no bytes at all (null, empty fixed, records
    of such fields)."""
    if isinstance(node, str):
        return node == "null" or (node in named and _zero_size(named[node], named))
    if isinstance(node, list):
        return False  # a union's branch index takes a byte
    if node["type"] == "fixed":
        return bool(node["size"] == 0)
    if node["type"] == "record":
        named[node["name"]] = node
        return all(_zero_size(f["type"], named) for f in node["fields"])
    return False


def has_zero_size_items(node: Any, named: dict[str, Any] | None = None) -> bool:
    """Whether an array or map somewhere in ``node`` holds items that take no bytes: a
    changed block count then asks fastavro (the reference here, and the serde's fallback)
    for billions of items, which it builds until memory runs out."""
    named = {} if named is None else named
    if isinstance(node, list):
        return any(has_zero_size_items(b, named) for b in node)
    if not isinstance(node, dict):
        return False
    if node["type"] == "array":
        return _zero_size(node["items"], named) or has_zero_size_items(node["items"], named)
    if node["type"] == "map":
        return _zero_size(node["values"], named) or has_zero_size_items(node["values"], named)
    if node["type"] == "record":
        named[node["name"]] = node
        return any(has_zero_size_items(f["type"], named) for f in node["fields"])
    return False


def test_zero_size_items_are_found() -> None:
    nulls = {"type": "array", "items": "null"}
    empty = {"type": "record", "name": "Empty0", "fields": []}
    assert has_zero_size_items(
        {"type": "record", "name": "A0", "fields": [{"name": "a", "type": nulls}]}
    )
    assert has_zero_size_items({"type": "map", "values": empty})
    assert has_zero_size_items(
        {"type": "array", "items": {"type": "fixed", "name": "F0", "size": 0}}
    )
    assert not has_zero_size_items({"type": "array", "items": ["null", "int"]})
    assert not has_zero_size_items({"type": "map", "values": "string"})


def decoder(schema: dict[str, Any]) -> tuple[Any, Any]:
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema, named)
    made = native.decoder_for(parsed, named)
    assert made is not None
    return parsed, made


def same(a: Any, b: Any) -> bool:
    """Equal, with -0.0 and 0.0 told apart (bit-exact floats)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_the_native_decoder_is_built_and_on() -> None:
    """``make`` builds it (``native/``); a machine without it would quietly use fastavro."""
    assert native.AVAILABLE, "shoal_native is not installed: run make (needs Rust's cargo)"
    assert native.enabled()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_schemas_and_values_decode_as_fastavro_reads_them(data: st.DataObject) -> None:
    schema = data.draw(records())
    parsed, made = decoder(schema)
    batch = data.draw(st.lists(values(schema), min_size=1, max_size=5))
    bodies = []
    for value in batch:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, value)
        bodies.append(out.getvalue())
    decoded, failed = made.decode_many(bodies, b"")
    assert failed == []
    for got, body in zip(decoded, bodies, strict=True):
        assert same(got, fast_read(parsed, body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_bytes_decode_as_fastavro_reads_them_or_are_handed_back(
    data: st.DataObject,
) -> None:
    # Not schemas with items of no bytes: fastavro, the reference, would build billions
    # of them from a changed count (the native decoder hands such records back at once).
    schema = data.draw(records().filter(lambda s: not has_zero_size_items(s)))
    parsed, made = decoder(schema)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, data.draw(values(schema)))
    body = bytearray(out.getvalue())
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "add"]))
        if action == "flip" and body:
            at = data.draw(st.integers(0, len(body) - 1))
            body[at] = data.draw(st.integers(0, 255))
        elif action == "cut" and body:
            del body[data.draw(st.integers(0, len(body) - 1)) :]
        else:
            body += data.draw(st.binary(min_size=1, max_size=4))
    decoded, failed = made.decode_many([bytes(body)], b"")
    if failed:
        assert decoded == [None]  # handed back: the serde asks fastavro
    else:
        expected = fast_read(parsed, bytes(body))
        assert expected is not _BAD, "native accepted bytes fastavro refuses"
        assert same(decoded[0], expected)


def test_hand_made_edge_cases() -> None:
    parsed, made = decoder(
        {
            "type": "record",
            "name": "Edge",
            "fields": [
                {"name": "b", "type": "boolean"},
                {"name": "n", "type": "long"},
                {"name": "u", "type": ["null", "string"]},
            ],
        }
    )
    good = b"\x01" + b"\x01" + b"\x02" + b"\x04hi"
    overlong = b"\x01" + b"\xff" * 10 + b"\x01" + b"\x00"
    cases = [good, b"\x02\x01\x00", overlong, b"\x01\x01\x04", good + b"\x00", good[:-1], b""]
    decoded, failed = made.decode_many(cases, b"")
    assert decoded[0] == {"b": True, "n": -1, "u": "hi"}
    assert failed == [1, 2, 3, 4, 5, 6]  # boolean 2, 11-byte varint, bad branch, over, short
    long_min = b"\x00" + b"\xff" * 9 + b"\x01" + b"\x00"
    ((value,), []) = made.decode_many([long_min], b"")
    assert value == fast_read(parsed, long_min) and value["n"] == -(2**63)


def test_a_recursive_schema_decodes() -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "v", "type": "int"},
            {"name": "next", "type": ["null", "Node"]},
        ],
    }
    parsed, made = decoder(schema)
    value = {"v": 1, "next": {"v": 2, "next": {"v": 3, "next": None}}}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, value)
    assert made.decode_many([out.getvalue()], b"") == ([value], [])


def test_logical_types_are_left_to_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "When",
        "fields": [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
    }
    named: dict[str, Any] = {}
    assert native.decoder_for(fastavro.parse_schema(schema, named), named) is None


PLAY = {
    "type": "record",
    "name": "Play",
    "namespace": "test.native",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
        {"name": "n", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


@pytest.fixture()
def both(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FramedSerde, FramedSerde]]:
    repository = SchemaRepository([PLAY])
    fast = AvroSerde("Play", repository)
    monkeypatch.setenv("SHOAL_NATIVE_DECODER", "0")
    fast.decode_batch([fast.encode({"user": "u", "kind": "a", "n": 1, "note": None})])
    monkeypatch.setenv("SHOAL_NATIVE_DECODER", "1")
    yield AvroSerde("Play", repository), fast


def test_the_serde_gives_the_same_values_and_failures_either_way(
    both: tuple[FramedSerde, FramedSerde],
) -> None:
    with_native, without = both
    good = [{"user": f"u{i}", "kind": "ab"[i % 2], "n": i * 7 - 20, "note": None} for i in range(9)]
    encoded = with_native.encode_many(good)
    header = encoded[0][:10]
    batch: list[Any] = list(encoded)
    batch[2] = encoded[2][:-1]  # truncated
    batch[4] = encoded[4] + b"\x00"  # trailing bytes
    batch[5] = header + b"\x02x\x06"  # enum index out of range
    batch[6] = b"\x00\x01" + encoded[6][2:]  # bad magic: another header
    batch[7] = None  # a tombstone
    origins = [RecordOrigin("plays", 1, 50 + i) for i in range(len(batch))]
    got = with_native.decode_batch(batch, origins)
    expected = without.decode_batch(batch, origins)
    assert got[0] == expected[0] == [good[i] for i in (0, 1, 3, 8)]
    assert [(i, str(e)) for i, e in got[1]] == [(i, str(e)) for i, e in expected[1]]
    assert [i for i, _ in got[1]] == [2, 4, 5, 6, 7]
    # A batch whose first record is bad still decodes the rest.
    values, failures = with_native.decode_batch([b"junk", encoded[0]])
    assert values == [good[0]] and [i for i, _ in failures] == [0]
