"""The state value codec: plain data round-trips exactly, hostile bytes never run code."""

from __future__ import annotations

import math
import pickle  # only to write the old format and hostile payloads that must be refused
import random
from collections import OrderedDict
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.api.aggregates import Quantiles, Sketch, sketch_fields
from runtime.api.errors import StateError, StateFormatError
from runtime.state.codec import REGISTRY, decode_value, encode_value, pack, unpack


def same(a: Any, b: Any) -> bool:
    """Equal values of identical types all the way down (NaN equals NaN here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.isnan(a) and math.isnan(b) or a == b
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keys_b = list(b)
        return all(same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, keys_b, strict=True))
    if isinstance(a, set | frozenset):
        return a == b and all(type(x) in {type(y) for y in b} for x in a)
    return bool(a == b)


hashables = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**200), max_value=2**200),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
        st.binary(),
    ),
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner, max_size=4),
    max_leaves=10,
)
plain = st.recursive(
    st.one_of(
        hashables,
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 2**63, -(2**63) - 1]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
        st.sets(hashables, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=400)
@given(plain)
def test_plain_data_round_trips_with_its_types(value: Any) -> None:
    data = encode_value(value)
    assert data[0] == 0x01
    assert same(decode_value(data), value)


def test_every_state_shape_of_the_reference_jobs_round_trips() -> None:
    event = (1_700_000_000_000, 2, 123_456, 3000, None, "title-7", "play")
    cases: list[Any] = [
        7,  # Count
        [12.5, 3],  # Mean
        None,  # Min/Max of nothing
        [[1_700_000_000_000, 1_700_001_800_000, {"p": {"pb-1": {"e1": event}}, "i": {}}, 0]],
        ({"u": 1.5}, 1_700_000_000_000),  # a ValueState entry: (value, written ms)
        {1_700_000_060_000: {"start": 1, "parts": {"a": {"x": 1.0}}}},  # int dict keys
        {"firing": False, "last_end": None, "quiet_until": float("inf")},
        [0] * 8 + [None, {"pb-1", "pb-2"}],  # QoE accumulator before its first startup
        ([("t1", 0.9, "drama")], {"drama": 0.5}),  # personalization's last output
        {("u", 5): [b"\x00\xff", True, -1]},
        1,  # a timer
    ]
    for value in cases:
        assert same(decode_value(encode_value(value)), value), value


def make_sketch(values: list[float], accuracy: float = 0.01) -> Any:
    sketch = Quantiles(relative_accuracy=accuracy).create()
    for v in values:
        sketch.add(v)
    return sketch


QS = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0]


@pytest.mark.parametrize(
    "values",
    [
        [],
        [0.0],
        [5.0],
        [1, 5, 100, 3.5, 0, 250],
        [-3.0, -1e6, 0.0, 2.5],
        [random.Random(7).lognormvariate(6, 2) for _ in range(5000)],
    ],
    ids=["empty", "zero", "one", "mixed", "negative", "lognormal"],
)
def test_ddsketch_round_trips_exactly(values: list[float]) -> None:
    sketch = make_sketch(values)
    back = decode_value(encode_value(sketch))
    assert type(back) is Sketch
    assert sketch_fields(back) == sketch_fields(sketch)
    assert [back.get_quantile_value(q) for q in QS] == [sketch.get_quantile_value(q) for q in QS]
    assert (back.count, back.sum) == (sketch.count, sketch.sum)
    # Still mergeable, and merging the copy equals merging the original.
    more = [1.0, 2.0, 400.0, 0.0]
    a, b = make_sketch(values), decode_value(encode_value(sketch))
    a.merge(make_sketch(more))
    b.merge(make_sketch(more))
    assert [a.get_quantile_value(q) for q in QS] == [b.get_quantile_value(q) for q in QS]
    assert sketch_fields(a) == sketch_fields(b)
    c = make_sketch(more)
    c.merge(back)
    assert c.count == len(values) + len(more)


def test_ddsketch_inside_the_qoe_accumulator_round_trips() -> None:
    acc = [3, 0, 10, 0, 0, 0, 0, 1, make_sketch([120.0, 80.0, 4000.0]), {"pb-1"}]
    back = decode_value(encode_value(acc))
    assert same(back[:8], acc[:8]) and back[9] == {"pb-1"}
    assert back[8].get_quantile_value(0.5) == acc[8].get_quantile_value(0.5)
    assert sorted(REGISTRY) == ["ddsketch", "window"]


@pytest.mark.parametrize(
    "fields",
    [
        [0.01],
        [2.0, 0.0, 0.0, 0.0, 0.0, 0.0, [0, None, None, 0, b""], [0, None, None, 0, b""]],
        [0.01, "x", 0.0, 0.0, 0.0, 0.0, [0, None, None, 0, b""], [0, None, None, 0, b""]],
        [0.01, 1.0, 0.0, 1.0, 1.0, 1.0, [0, 5, 9, 1.0, b"\x00" * 16], [0, None, None, 0, b""]],
        [0.01, 1.0, 0.0, 1.0, 1.0, 1.0, [0, None, None, 0, b"\x00" * 3], [0, None, None, 0, b""]],
    ],
    ids=["short", "accuracy", "count", "keys-outside-bins", "partial-bin"],
)
def test_malformed_sketches_are_refused(fields: list[Any]) -> None:
    data = b"\x01" + pack_object("ddsketch", fields)
    with pytest.raises(StateFormatError, match="malformed encoded value"):
        decode_value(data)


def pack_object(name: str, fields: list[Any]) -> bytes:
    """A registered-object body made by hand: marker, name, fields."""
    import msgpack  # the test builds hostile bodies byte by byte

    return msgpack.packb([msgpack.ExtType(4, b""), name, fields], use_bin_type=True)


@pytest.mark.parametrize(
    "value,named",
    [
        (object(), "builtins.object"),
        (lambda: None, "builtins.function"),
        (OrderedDict(a=1), "collections.OrderedDict"),
        (IntEnum("Color", "RED").RED, "Color"),
        ({"nested": [1, Path("x")]}, "Path"),
        (2 ** (8 * 2000), None),
    ],
    ids=["object", "function", "ordereddict", "intenum", "nested-path", "huge-int"],
)
def test_unsupported_values_fail_to_encode_with_one_line(value: Any, named: str | None) -> None:
    with pytest.raises(StateError) as info:
        encode_value(value)
    message = str(info.value)
    assert "\n" not in message
    if named is not None:
        assert named in message and "tuple, dict, set" in message and "ddsketch" in message
    assert decode_value(encode_value([1, (2,)])) == [1, (2,)]  # the encoder still works


class Hostile:
    """Creates a file when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "pwned"))


def test_old_format_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for protocol in (2, 4, 5):
        data = pickle.dumps(Hostile(marker), protocol=protocol)
        with pytest.raises(StateFormatError) as info:
            decode_value(data)
        assert "old format" in str(info.value) and "--group" in str(info.value)
        assert "\n" not in str(info.value)
        with pytest.raises(StateFormatError):
            unpack(data)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x01\xc1",  # a byte msgpack never uses
        b"\x01\x92\x01",  # an array cut short
        b"\x01\x01\x01",  # trailing bytes
        b"\x01\xd4\x09\x00",  # an unknown ext code
        b"\x01\xc7\x00\x01",  # a stray tuple marker
        b"\x01\x91\xc7\x00\x04",  # a registered object without a name
        b"\x01\x93\xc7\x00\x04\xa3abc\x90",  # an unregistered state type
        b"\x01\x81\x91\x01\x02",  # a list as a dict key
        b"\x01\x92\xc7\x00\x02\x90",  # a list inside a set
        b"\x01" + b"\x91" * 5000 + b"\x00",  # nesting deeper than the decoder allows
        b"junk bytes 14!",
        b"\x80\x04K\x01.",
    ],
)
def test_junk_fails_with_one_line(data: bytes) -> None:
    with pytest.raises(StateFormatError) as info:
        decode_value(data)
    assert "\n" not in str(info.value)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    """Any bytes either fail with StateFormatError or give a value that encodes again."""
    try:
        value = decode_value(b"\x01" + data)
    except StateFormatError:
        return
    again = encode_value(value)  # a checkpoint of whatever decoded never fails
    assert again[0] == 0x01


def test_a_stray_marker_is_inert_and_encodes_back() -> None:
    # A tuple marker that is not first in its array: only crafted bytes do that.
    value = decode_value(b"\x01\x92\x01\xc7\x00\x01")
    assert value[0] == 1 and type(value[1]).__name__ == "_Marker"
    assert encode_value(value) == b"\x01\x92\x01\xc7\x00\x01"


def test_msgpack_timestamps_decode_as_plain_numbers() -> None:
    # ext -1 is msgpack's timestamp: it must not surface as msgpack's own class.
    value = decode_value(b"\x01\xd6\xff\x00\x00\x00\x05")
    assert type(value) is float and value == 5.0


def test_big_and_edge_integers() -> None:
    for n in (0, 2**63 - 1, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**300, -(10**300)):
        assert same(decode_value(encode_value(n)), n)
    assert len(encode_value(5)) == 2 and len(encode_value(True)) == 2
    assert pack(True) != pack(1) and unpack(pack(True)) is True


def test_window_state_round_trips_as_a_named_record() -> None:
    from runtime.state.records import WindowState

    windows = [WindowState(0, 10, [1, 2], emitted=True, pending=False), WindowState(20, 35, 7)]
    back = decode_value(encode_value(windows))
    assert back == windows and all(type(w) is WindowState for w in back)
    assert b"window" in encode_value(windows)  # the stored value names its type


@pytest.mark.parametrize(
    "fields",
    [[0, 10, 1, True], [0, "10", 1, True, False], [0, 10, 1, 1, False], [0.5, 10, 1, True, True]],
    ids=["short", "end", "flag", "start"],
)
def test_malformed_window_states_are_refused(fields: list[Any]) -> None:
    with pytest.raises(StateFormatError, match="malformed encoded value"):
        decode_value(b"\x01" + pack_object("window", fields))


def test_window_state_reads_the_older_list_form() -> None:
    from runtime.state.records import WindowState

    assert WindowState.from_legacy([0, 10, 5, 0]) == WindowState(0, 10, 5, False, True)
    assert WindowState.from_legacy([0, 10, 5, 1]) == WindowState(0, 10, 5, True, False)
    assert WindowState.from_legacy([0, 10, 5, 2]) == WindowState(0, 10, 5, True, True)
    with pytest.raises(ValueError, match="status"):
        WindowState.from_legacy([0, 10, 5, 3])


# --- the native restore check ------------------------------------------------------------

simple = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**200), max_value=2**200),
        st.floats(allow_nan=True),
        st.text(),
        st.binary(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=3) | st.integers(-5, 5), inner, max_size=4),
        st.frozensets(st.integers() | st.text(max_size=3), max_size=4),
    ),
    max_leaves=20,
)
simple_keys = st.recursive(
    st.one_of(st.none(), st.text(max_size=4), st.integers(-(2**63), 2**64 - 1), st.binary()),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)


def _reads(raw_key: Any, raw_value: Any) -> bool:
    """Whether the restore's Python check passes the entry."""
    from runtime.state.serde import decode_key

    if type(raw_key) is not bytes or not raw_key or raw_key[0] == 0:
        return False
    if raw_value is not None and type(raw_value) is not bytes:
        return False
    try:
        decode_key(raw_key)
        if raw_value is not None:
            decode_value(raw_value)
    except StateError:
        return False
    return True


def _damaged(raw: bytes, data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["none", "byte", "cut", "tail", "junk"]))
    i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
    if how == "byte" and raw:
        return raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]
    if how == "cut":
        return raw[:i]
    if how == "tail":
        return raw + data.draw(st.binary(min_size=1, max_size=3))
    if how == "junk":
        return b"\x01" + data.draw(st.binary(max_size=12))
    return raw


@settings(max_examples=300)
@given(st.lists(st.tuples(simple_keys, plain | simple | st.none()), max_size=8), st.data())
def test_the_native_restore_check_vouches_only_for_entries_python_reads(
    entries: list[tuple[Any, Any]], data: st.DataObject
) -> None:
    from runtime.state import serde

    assert serde.unvouched is not serde.unvouched_python, "the native check is not built"
    chunk: dict[Any, Any] = {}
    for key, value in entries:
        raw_value = None if value is None else _damaged(encode_value(value), data)
        chunk[_damaged(serde.encode_key(key), data)] = raw_value
    if data.draw(st.booleans()):  # what no restore should meet: not bytes, reserved, registered
        chunk[data.draw(st.sampled_from(["text", 7, b"", b"\x00\x03a\x00"]))] = b"\x01\xc0"
        chunk[serde.encode_key("sketch")] = encode_value(Quantiles(0.01).create())
    left = serde.unvouched(chunk, 0, 0x01)
    order = list(chunk)
    assert [order.index(k) for k in left] == sorted(order.index(k) for k in left)
    for raw_key, raw_value in chunk.items():
        if raw_key not in left:
            assert _reads(raw_key, raw_value), (raw_key, raw_value)


@settings(max_examples=300)
@given(st.lists(st.tuples(simple_keys, simple | st.none()), max_size=8))
def test_the_native_restore_check_vouches_for_plain_entries(entries: list[Any]) -> None:
    from runtime.state import serde

    chunk = {serde.encode_key(k): None if v is None else encode_value(v) for k, v in entries}
    assert serde.unvouched(chunk, 0, 0x01) == []
    # a registered object or a value of another format is left to the Python check
    sketch = {serde.encode_key("s"): encode_value(Quantiles(0.01).create())}
    old = {serde.encode_key("o"): b"\x80" + encode_value(1)[1:]}
    assert serde.unvouched({**chunk, **sketch, **old}, 0, 0x01) == [*sketch, *old]
