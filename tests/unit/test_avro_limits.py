"""The limit on array and map items per Avro body (``connectors/avro/limits.py`` and the
native decoder's copy of the rule): a crafted block count of items of no bytes is
refused at once, whichever decoder runs, and nothing below the limit changes."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import fastavro
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from connectors.avro import AvroSerde, SchemaRepository, native
from connectors.avro.limits import ITEM_ALLOWANCE, TooManyItems, item_check
from runtime.api.errors import RecordOrigin

ROOT = pathlib.Path(__file__).resolve().parents[2]

NULLS = {
    "type": "record",
    "name": "Nulls",
    "namespace": "test.limits",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "marks", "type": {"type": "array", "items": "null"}},
    ],
}

EMPTY = {"type": "record", "name": "Empty", "namespace": "test.limits", "fields": []}
NESTED = {
    "type": "record",
    "name": "Nested",
    "namespace": "test.limits",
    "fields": [
        {
            "name": "groups",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Group",
                    "fields": [
                        {"name": "empties", "type": {"type": "array", "items": EMPTY}},
                        {
                            "name": "zeros",
                            "type": {
                                "type": "array",
                                "items": {"type": "fixed", "name": "Zero", "size": 0},
                            },
                        },
                    ],
                },
            },
        },
        {"name": "tags", "type": {"type": "map", "values": "null"}},
    ],
}


def varint(n: int) -> bytes:
    """Avro's zig-zag varint, written here from the spec."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        low, z = z & 0x7F, z >> 7
        if not z:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def count_items(value: Any) -> int:
    """Every array and map item in a decoded value (the brute-force reference)."""
    if isinstance(value, list):
        return len(value) + sum(count_items(v) for v in value)
    if isinstance(value, dict):  # a record here (the maps are counted by the caller)
        return sum(count_items(v) for v in value.values())
    return 0


def serdes(schema: dict[str, Any]) -> list[tuple[str, AvroSerde]]:
    """The serde of ``schema`` with the native decoder, and one without it."""
    repository = SchemaRepository([schema])
    made = []
    for flag in ("1", "0"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SHOAL_NATIVE_DECODER", flag)
            serde = AvroSerde(schema["name"], repository)
            serde.decode_batch([serde.encode(blank(schema))])  # its plan made under the flag
        made.append((flag, serde))
    return made


def blank(schema: dict[str, Any]) -> dict[str, Any]:
    return {"id": "x", "marks": []} if schema["name"] == "Nulls" else {"groups": [], "tags": {}}


def test_schemas_that_need_the_walk_are_found() -> None:
    def needs(schema: Any) -> bool:
        named: dict[str, Any] = {}
        return item_check(fastavro.parse_schema(schema, named), named) is not None

    assert needs(NULLS) and needs(NESTED)
    assert needs({"type": "array", "items": {"type": "fixed", "name": "Z0", "size": 0}})
    # Items that take bytes, and map entries (their keys take bytes), never need it.
    assert not needs({"type": "array", "items": ["null", "int"]})
    assert not needs({"type": "map", "values": "null"})
    assert not needs({"type": "array", "items": {"type": "array", "items": "int"}})
    assert not needs({"type": "array", "items": {"type": "fixed", "name": "F1", "size": 1}})
    for path in sorted((ROOT / "schemas").rglob("*.avsc")):
        schema = json.loads(path.read_text())
        named: dict[str, Any] = {}
        parsed = fastavro.parse_schema(schema, named, _write_hint=False)
        assert item_check(parsed, named) is None, path.name


@pytest.mark.parametrize("count", [50 * ITEM_ALLOWANCE, -50 * ITEM_ALLOWANCE])
def test_a_crafted_block_count_is_refused_by_either_decoder(count: int) -> None:
    # Small enough that a decoder without the limit builds the items and this fails.
    for flag, serde in serdes(NULLS):
        header = serde.encode({"id": "a", "marks": []})[:10]
        size = varint(8) if count < 0 else b""
        crafted = header + varint(1) + b"a" + varint(count) + size + b"\x00"
        good = serde.encode({"id": "b", "marks": [None] * 3})
        values, failures = serde.decode_batch(
            [good, crafted], [RecordOrigin("plays", 0, 1), RecordOrigin("plays", 0, 2)]
        )
        assert values == [{"id": "b", "marks": [None] * 3}], flag
        assert [i for i, _ in failures] == [1], flag
        message = str(failures[0][1])
        limit = len(crafted) - len(header) + ITEM_ALLOWANCE
        assert f"more than {limit:,} array and map items" in message, (flag, message)
        assert "plays[0]@2" in message, (flag, message)


@pytest.mark.parametrize("flag", ["1", "0"])
def test_a_block_count_of_billions_is_refused_within_a_memory_cap(flag: str) -> None:
    """In a child process capped at 2 GiB of address space beyond its start: without
    the limit, 2**62 nulls would take it to the cap and fail."""
    script = textwrap.dedent(
        """
        import json, resource, sys
        from connectors.avro import AvroSerde, SchemaRepository
        schema = json.loads(sys.argv[1])
        serde = AvroSerde(schema["name"], SchemaRepository([schema]))
        header = serde.encode({"id": "a", "marks": []})[:10]
        crafted = header + b"\\x02a" + bytes.fromhex(sys.argv[2]) + b"\\x00"
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 2 * 2**30, resource.RLIM_INFINITY))
        values, failures = serde.decode_batch([crafted])
        print(values, [str(e) for _, e in failures])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(NULLS), varint(2**62).hex()],
        cwd=ROOT,
        env={**os.environ, "SHOAL_NATIVE_DECODER": flag},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "array and map items" in done.stdout and done.stdout.startswith("[] "), done.stdout


def test_the_limit_is_exactly_one_item_per_byte_plus_the_allowance() -> None:
    messages = set()
    for flag, serde in serdes(NULLS):
        header = serde.encode({"id": "a", "marks": []})[:10]

        def body(n: int) -> bytes:
            return varint(1) + b"a" + varint(n) + b"\x00"

        # The body's length depends on n's varint: find the largest n allowed.
        allowed = max(
            n
            for n in range(ITEM_ALLOWANCE, ITEM_ALLOWANCE + 20)
            if n <= len(body(n)) + ITEM_ALLOWANCE
        )
        values, failures = serde.decode_batch([header + body(allowed), header + body(allowed + 1)])
        assert values == [{"id": "a", "marks": [None] * allowed}], flag
        assert [i for i, _ in failures] == [1], flag
        messages.add(str(failures[0][1]))
    assert len(messages) == 1  # the same words whichever decoder ran


@st.composite
def nested_values(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    sizes = draw(st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 40_000)), max_size=4))
    return _nested(sizes, draw(st.integers(0, 3)))


NESTED_SERDES = serdes(NESTED)


NESTED_SERDES = serdes(NESTED)


def _nested(sizes: list[tuple[int, int]], tags: int) -> tuple[dict[str, Any], Any]:
    groups = [{"empties": [{}] * a, "zeros": [b""] * b} for a, b in sizes]
    return {"groups": groups, "tags": {f"t{i}": None for i in range(tags)}}, sizes


@settings(max_examples=25, deadline=None)
@given(nested_values())
@example(_nested([(30_000, 30_000)], 2))  # allowed
@example(_nested([(30_000, 30_000), (3_000, 3_000)], 0))  # refused
def test_nested_items_count_toward_one_limit_as_the_reference_counts(
    drawn: tuple[dict[str, Any], list[tuple[int, int]]],
) -> None:
    value, sizes = drawn
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(NESTED, named)
    stream = io.BytesIO()
    fastavro.schemaless_writer(stream, parsed, value)
    body = stream.getvalue()
    # The reference: every list item and map entry of the value, against the rule.
    total = len(sizes) + sum(a + b for a, b in sizes) + len(value["tags"])
    assert total == count_items(value["groups"]) + len(value["tags"])
    allowed = total <= len(body) + ITEM_ALLOWANCE
    for flag, serde in NESTED_SERDES:
        header = serde.encode(blank(NESTED))[:10]
        values, failures = serde.decode_batch([header + body])
        assert (values == [value]) is allowed, flag
        assert (len(failures) == 1) is not allowed, flag
    check = item_check(parsed, named)
    assert check is not None
    if allowed:
        check(body, 0)
    else:
        with pytest.raises(TooManyItems):
            check(body, 0)


def test_the_native_decoder_is_part_of_the_run() -> None:
    assert native.enabled()  # else the cases above test one decoder twice
