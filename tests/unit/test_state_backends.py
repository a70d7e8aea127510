"""State backends: memory and RocksDB behave alike, checkpoint, restore and reopen."""

from __future__ import annotations

import os
import pickle  # only to write old-format bytes that must be refused
import subprocess
import sys
import tempfile
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.api.errors import ConfigError, StateError, StateFormatError
from runtime.state import (
    Change,
    MemoryBackend,
    RocksDBBackend,
    RocksDBStore,
    StateBackend,
    StateStore,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)

BACKEND_KINDS = ["memory", "rocksdb", "rocksdb-tiny-cache"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_backend(kind: str, root: Path) -> StateBackend:
    """A backend of the given kind; the tiny cache forces evictions constantly."""
    if kind == "memory":
        return MemoryBackend()
    if kind == "rocksdb":
        return RocksDBBackend(root)
    if kind == "rocksdb-tiny-cache":
        return RocksDBBackend(root, cache_entries=3)
    if kind == "rocksdb-no-cache":
        return RocksDBBackend(root, cache_entries=0)
    raise AssertionError(kind)


@contextmanager
def backend_in_tempdir(kind: str) -> Iterator[tuple[StateBackend, Path]]:
    """A fresh backend in its own folder (hypothesis examples cannot share tmp_path)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        backend = make_backend(kind, root)
        try:
            yield backend, root
        finally:
            backend.close()


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    made = make_backend(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture
def store(backend: StateBackend) -> StateStore:
    return backend.open_store("job", "step", 0)


def apply_changes(state: dict[Any, Any], changes: list[Change]) -> None:
    """Apply a changelog to a plain dict, decoding it independently of the stores."""
    for raw_key, raw_value in changes:
        key = decode_key(raw_key)
        if raw_value is None:
            state.pop(key, None)
        else:
            state[key] = decode_value(raw_value)


# ---------------------------------------------------------------- key encoding

scalar_keys = st.one_of(
    st.none(),
    st.integers(min_value=-(2**2000), max_value=2**2000),
    st.text(),
    st.binary(),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", b"\x00\xff", b"\xff\x00"]),
)
keys = st.recursive(scalar_keys, lambda inner: st.tuples(inner, inner) | st.lists(inner).map(tuple))


edge_ints = st.sampled_from(
    [0, 1, -1, 255, 256, -256, -257, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, True, False]
)
native_keys = st.recursive(
    st.one_of(scalar_keys, edge_ints, st.integers(-(2**64), 2**64)),
    lambda inner: st.tuples(inner, inner) | st.lists(inner).map(tuple),
)


@given(native_keys)
def test_the_native_key_encoder_gives_the_python_encoders_bytes(key: Hashable) -> None:
    from runtime.state import serde

    assert type(serde.encode_key).__name__ == "KeyEncoder", "the native encoder is not built"
    assert serde.encode_key(key) == serde.encode_key_python(key)


def _decoded(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        key = decode(data)
    except StateError as exc:
        return "error", str(exc)
    return "key", (type(key), key)


@given(native_keys, st.data())
def test_the_native_key_decoder_reads_what_the_python_decoder_reads(
    key: Hashable, data: st.DataObject
) -> None:
    from runtime.state import serde

    assert type(serde.decode_key).__name__ == "KeyDecoder", "the native decoder is not built"
    raw = serde.encode_key_python(key)
    assert _decoded(serde.decode_key, raw) == _decoded(serde.decode_key_python, raw)
    # the same on damaged bytes: a byte changed, cut short, or junk after the key
    i = data.draw(st.integers(0, len(raw) - 1))
    for damaged in (
        raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :],
        raw[:i],
        raw + data.draw(st.binary(min_size=1, max_size=3)),
        data.draw(st.binary(max_size=12)),
    ):
        assert _decoded(serde.decode_key, damaged) == _decoded(serde.decode_key_python, damaged)


@pytest.mark.parametrize("bad", [1.5, ("a", 1.0), ["a"], ("a", ("b", frozenset()))])
def test_the_native_key_encoder_refuses_what_the_python_one_refuses(bad: Any) -> None:
    from runtime.state import serde

    with pytest.raises(StateError) as native:
        serde.encode_key(bad)
    with pytest.raises(StateError) as python:
        serde.encode_key_python(bad)
    assert str(native.value) == str(python.value)


@given(keys)
def test_key_encoding_round_trips(key: Hashable) -> None:
    decoded = decode_key(encode_key(key))
    assert decoded == key
    assert type(decoded) is type(key)
    assert encode_key(decoded) == encode_key(key)


@given(keys, keys)
def test_key_encoding_is_injective(a: Hashable, b: Hashable) -> None:
    assert (encode_key(a) == encode_key(b)) == (a == b and type(a) is type(b))


@given(st.integers(-(2**700), 2**700), st.integers(-(2**700), 2**700))
def test_int_keys_sort_like_ints(a: int, b: int) -> None:
    assert (encode_key(a) < encode_key(b)) == (a < b)


@given(st.text(), st.text())
def test_str_keys_sort_like_strs(a: str, b: str) -> None:
    assert (encode_key(a) < encode_key(b)) == (a < b)


@given(st.tuples(st.text(max_size=3), st.integers()), st.tuples(st.text(max_size=3), st.integers()))
def test_tuple_keys_sort_element_by_element(a: tuple[str, int], b: tuple[str, int]) -> None:
    assert (encode_key(a) < encode_key(b)) == (a < b)


def test_key_encoding_is_pinned() -> None:
    # The bytes are a storage format: changing them orphans existing state and changelogs.
    assert encode_key(("user1", 1_700_000_000_000)) == (
        b"\x05\x03user1\x00\x26\x01\x8b\xcf\xe5\x68\x00\x00"
    )
    assert encode_key(0) == b"\x20"
    assert encode_key(-1) == b"\x1f\xfe"
    assert encode_key(255) == b"\x21\xff"
    assert encode_key(b"a\x00") == b"\x02a\x00\xff\x00"
    assert encode_key(None) == b"\x01"
    assert encode_key(()) == b"\x05\x00"


def test_key_encoding_is_the_same_in_another_process() -> None:
    sample = [("user1", 1_700_000_000_000), "naïve", b"\x00raw", -(2**70), (None, ("x", 3))]
    script = (
        "import sys\n"
        "from runtime.state.serde import encode_key\n"
        f"for key in {sample!r}:\n"
        "    sys.stdout.write(encode_key(key).hex() + '\\n')\n"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(done.stdout.split())
    assert outputs[0] == outputs[1] == [encode_key(key).hex() for key in sample]


def test_bool_keys_encode_like_the_equal_ints() -> None:
    # dicts treat True and 1 as one key, so the encoding must too.
    assert encode_key(True) == encode_key(1)
    assert encode_key(("k", False)) == encode_key(("k", 0))


@pytest.mark.parametrize("key", [1.5, float("nan"), frozenset(), ("ok", 2.0), object()])
def test_unsupported_keys_are_rejected(key: Hashable) -> None:
    with pytest.raises(StateError, match="unsupported state key type"):
        encode_key(key)


@pytest.mark.parametrize("data", [b"", b"\x99", b"\x03abc", b"\x05\x03a\x00", b"\x20\x20"])
def test_malformed_keys_are_rejected(data: bytes) -> None:
    with pytest.raises(StateError, match="malformed state key"):
        decode_key(data)


def test_values_use_format_1() -> None:
    value = {"sum": 3, "items": [1, 2], "window": ("u", 5)}
    data = encode_value(value)
    assert data[0] == 0x01
    assert decode_value(data) == value
    with pytest.raises(StateError, match="unsupported state value type builtins.function"):
        encode_value(lambda: None)
    with pytest.raises(StateFormatError, match="unknown format"):
        decode_value(b"not a value")


# ---------------------------------------------------------------- model-based

model_keys = st.one_of(
    st.integers(min_value=-2, max_value=6),
    st.sampled_from(["a", "b", "", "u", True, b"\x00", None]),
    st.tuples(st.sampled_from(["u", "v"]), st.integers(min_value=0, max_value=2)),
)
model_values = st.one_of(
    st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=3), st.none()
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), model_keys, model_values),
        st.tuples(st.just("delete"), model_keys),
        st.tuples(st.just("get"), model_keys),
        st.tuples(st.just("get_many"), st.lists(model_keys, max_size=6)),
        st.tuples(st.just("pop"), model_keys),
        st.tuples(st.just("put_new"), model_keys, model_values),
        st.tuples(st.just("contains"), model_keys),
        st.tuples(st.just("checkpoint")),
        st.tuples(st.just("len")),
        st.tuples(st.just("items")),
        st.tuples(
            st.just("meta"), st.sampled_from(["offsets", "checkpoint"]), st.binary(max_size=4)
        ),
    ),
    max_size=60,
)


def assert_same_state(store: StateStore, model: dict[Any, Any]) -> None:
    entries = list(store.items())
    assert len(entries) == len(model), "items() yielded duplicates or missed entries"
    assert dict(entries) == model
    assert len(store) == len(model)
    for key, value in model.items():
        assert key in store
        assert store.get(key) == value
    prefixes = {k[:i] for k in model if isinstance(k, tuple) for i in range(1, len(k) + 1)}
    for prefix in sorted(prefixes, key=repr)[:6]:
        want = {
            k: v for k, v in model.items() if isinstance(k, tuple) and k[: len(prefix)] == prefix
        }
        got = list(store.items_with_prefix(prefix))
        assert len(got) == len(want) and dict(got) == want, prefix


@pytest.mark.parametrize("kind", [*BACKEND_KINDS, "rocksdb-no-cache"])
@settings(max_examples=80, deadline=None)
@given(ops=operations)
def test_store_matches_a_dict_model(kind: str, ops: list[tuple[Any, ...]]) -> None:
    with backend_in_tempdir(kind) as (backend, _):
        store = backend.open_store("job", "step", 0)
        model: dict[Any, Any] = {}
        committed: dict[Any, Any] = {}
        meta: dict[str, bytes] = {}
        committed_meta: dict[str, bytes] = {}
        changelog: list[Change] = []
        missing = object()
        for op, *args in ops:
            if op == "put":
                store.put(args[0], args[1])
                model[args[0]] = args[1]
            elif op == "delete":
                store.delete(args[0])
                model.pop(args[0], None)
            elif op == "get":
                assert store.get(args[0], missing) == model.get(args[0], missing)
            elif op == "get_many":
                got = store.get_many(args[0], missing)
                assert got == [model.get(key, missing) for key in args[0]]
            elif op == "pop":
                assert store.pop(args[0], missing) == model.pop(args[0], missing)
            elif op == "put_new":  # only for a key with no value, as its callers know
                if args[0] not in model:
                    store.put_new(args[0], args[1])
                    model[args[0]] = args[1]
            elif op == "contains":
                assert (args[0] in store) == (args[0] in model)
            elif op == "len":
                assert len(store) == len(model)
            elif op == "items":
                assert_same_state(store, model)
            elif op == "meta":
                store.put_meta(args[0], args[1])
                meta[args[0]] = args[1]
                assert store.get_meta(args[0]) == args[1]
            else:
                changes = store.checkpoint()
                raw_keys = [raw_key for raw_key, _ in changes]
                assert len(raw_keys) == len(set(raw_keys)), "a key appears twice in one checkpoint"
                apply_changes(committed, changes)
                assert committed == model, "the changelog does not capture the changes"
                changelog.extend(changes)
                committed_meta = dict(meta)
        assert_same_state(store, model)
        for name in ("offsets", "checkpoint"):
            assert store.get_meta(name) == meta.get(name)

        # Closing without a checkpoint is a crash: only the last checkpoint survives.
        store.close()
        reopened = backend.open_store("job", "step", 0)
        if kind == "memory":
            assert_same_state(reopened, {})
            assert reopened.get_meta("offsets") is None
        else:
            # Read in one go, before anything else brings the keys into memory.
            asked = [*committed, "never", ("u", 9)]
            assert reopened.get_many(asked, missing) == [committed.get(k, missing) for k in asked]
            assert_same_state(reopened, committed)
            for name in ("offsets", "checkpoint"):
                assert reopened.get_meta(name) == committed_meta.get(name)

        # Replaying the changelog on a fresh store reproduces the checkpointed state.
        replay = backend.open_store("job", "replay", 0)
        replay.restore(changelog)
        assert_same_state(replay, committed)
        assert replay.get_meta("offsets") is None
        if kind != "memory":
            replay.close()
            assert_same_state(backend.open_store("job", "replay", 0), committed)


# ---------------------------------------------------------------- behaviour


def test_backends_satisfy_the_protocols(backend: StateBackend, store: StateStore) -> None:
    assert isinstance(backend, StateBackend)
    assert isinstance(store, StateStore)
    assert store.name == "step"


def test_checkpoint_returns_only_the_net_changes(store: StateStore) -> None:
    store.put("kept", 1)
    store.put("kept", 2)
    store.put("gone", 1)
    store.checkpoint()
    assert store.checkpoint() == []
    store.put("kept", 3)
    store.delete("gone")
    store.delete("never")
    changes = dict(store.checkpoint())
    assert changes[encode_key("kept")] == encode_value(3)
    assert changes[encode_key("gone")] is None
    assert encode_key("never") not in changes or changes[encode_key("never")] is None


def test_uncheckpointed_changes_are_lost_on_reopen(tmp_path: Path) -> None:
    backend = RocksDBBackend(tmp_path, cache_entries=2)
    store = backend.open_store("sessions", "by_user", 3)
    for i in range(10):
        store.put(("user", i), {"count": i})
    store.put_meta("checkpoint_id", b"7")
    store.checkpoint()
    store.put(("user", 0), {"count": 100})
    store.delete(("user", 1))
    store.put(("user", 99), {"count": 99})
    store.put_meta("checkpoint_id", b"8")
    assert store.get_meta("checkpoint_id") == b"8"
    assert len(store) == 10
    store.close()  # no checkpoint: the process "crashed"
    backend.close()

    reopened_backend = RocksDBBackend(tmp_path, cache_entries=2)
    reopened = reopened_backend.open_store("sessions", "by_user", 3)
    assert (tmp_path / "sessions" / "by_user" / "3").is_dir()
    assert reopened.get_meta("checkpoint_id") == b"7"
    assert dict(reopened.items()) == {("user", i): {"count": i} for i in range(10)}
    assert len(reopened) == 10
    assert ("user", 99) not in reopened
    reopened_backend.close()


def test_checkpoint_with_only_metadata_is_durable(tmp_path: Path) -> None:
    backend = RocksDBBackend(tmp_path)
    store = backend.open_store("job", "step", 0)
    store.put_meta("offsets", b"\x01\x02")
    assert store.checkpoint() == []
    store.close()
    assert backend.open_store("job", "step", 0).get_meta("offsets") == b"\x01\x02"
    backend.close()


def test_memory_store_reopens_empty() -> None:
    backend = MemoryBackend()
    store = backend.open_store("job", "step", 0)
    store.put("k", 1)
    store.put_meta("checkpoint_id", b"1")
    store.checkpoint()
    store.close()
    reopened = backend.open_store("job", "step", 0)
    assert len(reopened) == 0
    assert reopened.get_meta("checkpoint_id") is None


def test_state_larger_than_the_cache(tmp_path: Path) -> None:
    def key_of(i: int) -> Hashable:
        return ("user", i) if i % 2 else f"key-{i}"

    total = 200_000
    backend = RocksDBBackend(tmp_path, cache_entries=1_000)
    store = backend.open_store("job", "big", 0)
    expected: dict[Hashable, Any] = {}
    for i in range(total):
        store.put(key_of(i), [i, str(i)])
        expected[key_of(i)] = [i, str(i)]
        if i % 20_000 == 19_999:
            store.checkpoint()
            assert isinstance(store, RocksDBStore)
            assert store.cached_entries <= 1_000
    # Blind updates and deletes of keys that are no longer cached.
    for i in range(0, total, 7):
        store.delete(key_of(i))
        expected.pop(key_of(i))
    for i in range(0, total, 5):
        store.put(key_of(i), i * 2)
        expected[key_of(i)] = i * 2
    assert len(store) == len(expected)
    store.checkpoint()
    assert len(store) == len(expected)

    for i in range(total):
        assert store.get(key_of(i), "missing") == expected.get(key_of(i), "missing")
    assert store.cached_entries <= 1_000
    entries = list(store.items())
    assert len(entries) == len(expected)
    assert dict(entries) == expected

    store.close()
    reopened = backend.open_store("job", "big", 0)
    assert len(reopened) == len(expected)
    assert dict(reopened.items()) == expected
    backend.close()


def test_items_tolerates_changes_while_iterating(store: StateStore) -> None:
    for i in range(20):
        store.put(i, i)
    store.checkpoint()
    store.put(100, 100)
    seen = {}
    for key, value in store.items():
        seen[key] = value
        store.delete(key)
        store.put(key + 1_000, value)
        store.checkpoint()  # the iteration still sees the state as of its start
    assert seen == {**{i: i for i in range(20)}, 100: 100}
    assert dict(store.items()) == {k + 1_000: k for k in seen}


def test_restore_applies_repeated_keys_in_order(store: StateStore) -> None:
    store.put("stays", 0)
    store.checkpoint()
    changelog: list[Change] = [
        (encode_key("a"), encode_value(1)),
        (encode_key("b"), encode_value(2)),
        (encode_key("a"), None),
        (encode_key("b"), encode_value(3)),
        (encode_key("stays"), encode_value(9)),
        (encode_key("c"), None),
    ]
    store.restore(changelog)
    assert store.get("stays") == 9
    assert "a" not in store
    assert dict(store.items()) == {"b": 3, "stays": 9}
    assert len(store) == 2
    assert store.checkpoint() == []


def test_restore_in_batches_keeps_the_count_exact_through_writes_and_a_reopen(
    tmp_path: Path,
) -> None:
    """RocksDB restores write without reading and count once afterwards: the count
    after several batches with repeated keys and tombstones, after later writes, and
    after a reopen mid-restore (no count on disk then) is the number of live keys."""
    backend = RocksDBBackend(tmp_path)
    store = backend.open_store("job", "step", 0)
    store.put("old", 0)
    store.checkpoint()
    live: dict[str, int] = {"old": 0}
    for batch in range(4):
        changes: list[Change] = []
        for i in range(50):
            key = f"k{(i * 7 + batch * 13) % 60}"
            if i % 9 == 4:
                changes.append((encode_key(key), None))
                live.pop(key, None)
            else:
                changes.append((encode_key(key), encode_value(i)))
                live[key] = i
        store.restore(changes)
    assert len(store) == len(live) and dict(store.items()) == live
    store.put("new", 1)
    store.delete("old")
    store.checkpoint()
    live = {**{k: v for k, v in live.items() if k != "old"}, "new": 1}
    assert len(store) == len(live)
    store.restore([(encode_key("after"), encode_value(2))])
    store.close()  # before anything counted: the count is not on disk
    reopened = backend.open_store("job", "step", 0)
    assert len(reopened) == len(live) + 1
    backend.close()


def test_restore_refuses_a_store_with_pending_changes(store: StateStore) -> None:
    store.put("k", 1)
    with pytest.raises(StateError, match="uncheckpointed changes"):
        store.restore([(encode_key("k"), encode_value(2))])


class Boom:
    """Writes a file when unpickled: what a hostile old-format value could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "ran"))


def test_restore_refuses_old_format_values(store: StateStore, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    changelog: list[Change] = [
        (encode_key("ok"), encode_value(1)),
        (encode_key("old"), pickle.dumps(Boom(marker), protocol=5)),
    ]
    with pytest.raises(StateFormatError, match=r"old format \(first byte 0x80\).*new --group"):
        store.restore(changelog)
    assert not marker.exists()


@pytest.mark.parametrize(
    "raw_key,raw_value",
    [
        (encode_key("k"), b"\x01\xc1"),
        (encode_key("k"), b"\x01\x92\x01"),
        (encode_key("k"), b""),
        (b"\x99junk", encode_value(1)),
    ],
)
def test_restore_refuses_undecodable_records(
    store: StateStore, raw_key: bytes, raw_value: bytes
) -> None:
    with pytest.raises(StateFormatError, match="restore of job 'job' step 'step' partition 0"):
        store.restore([(raw_key, raw_value)])


def test_old_format_on_disk_fails_on_first_read(tmp_path: Path) -> None:
    """A local store written by the old format fails reads with one line naming it."""
    backend = RocksDBBackend(tmp_path)
    store = backend.open_store("job", "step", 0)
    store.put("k", 1)
    store.checkpoint()
    store.close()
    from rocksdict import Options, Rdict  # the disk as the old version left it

    db = Rdict(str(tmp_path / "job" / "step" / "0"), Options(raw_mode=True))
    db[encode_key("k")] = pickle.dumps({"n": 1}, protocol=5)
    db.close()
    store = backend.open_store("job", "step", 0)
    for read in (lambda: store.get("k"), lambda: next(iter(store.items()))):
        with pytest.raises(StateFormatError, match="job 'job' step 'step' partition 0 at .*old"):
            read()
    backend.close()


def test_restore_rejects_reserved_keys(tmp_path: Path) -> None:
    backend = RocksDBBackend(tmp_path)
    store = backend.open_store("job", "step", 0)
    with pytest.raises(StateError, match="invalid changelog key"):
        store.restore([(b"\x00c", b"\x00" * 8)])
    backend.close()


def test_clear_drops_entries_and_metadata(backend: StateBackend, store: StateStore) -> None:
    store.put("a", 1)
    store.put_meta("checkpoint_id", b"3")
    store.checkpoint()
    store.put("b", 2)
    store.clear()
    assert len(store) == 0
    assert list(store.items()) == []
    assert store.get_meta("checkpoint_id") is None
    assert store.checkpoint() == []
    store.close()
    reopened = backend.open_store("job", "step", 0)
    assert len(reopened) == 0
    assert reopened.get_meta("checkpoint_id") is None


def test_failed_checkpoint_keeps_changes_pending(store: StateStore) -> None:
    store.put("ok", 1)
    store.put("bad", lambda: None)
    with pytest.raises(StateError, match="job 'job' step 'step' partition 0"):
        store.checkpoint()
    store.put("bad", 2)
    assert dict(store.checkpoint()) == {
        encode_key("ok"): encode_value(1),
        encode_key("bad"): encode_value(2),
    }


def test_unsupported_key_fails_at_checkpoint(store: StateStore) -> None:
    store.put(1.5, "x")
    with pytest.raises(StateError, match="unsupported state key type float"):
        store.checkpoint()


def test_opening_a_store_twice_fails(backend: StateBackend) -> None:
    backend.open_store("job", "step", 1)
    with pytest.raises(StateError, match="job 'job' step 'step' partition 1.*already open"):
        backend.open_store("job", "step", 1)


def test_closed_store_refuses_operations(backend: StateBackend, store: StateStore) -> None:
    store.close()
    store.close()
    operations: list[Callable[[], object]] = [
        lambda: store.put("k", 1),
        lambda: store.delete("k"),
        store.checkpoint,
        store.clear,
        lambda: store.put_meta("m", b""),
        lambda: store.get("k"),
        lambda: "k" in store,
        lambda: len(store),
        store.items,
        lambda: store.get_meta("m"),
        lambda: store.restore([]),
    ]
    for operation in operations:
        with pytest.raises(StateError, match="is closed"):
            operation()
    backend.open_store("job", "step", 0).put("k", 1)


def test_rocksdb_errors_name_the_store(tmp_path: Path) -> None:
    (tmp_path / "job").write_text("a file where the job folder should be")
    backend = RocksDBBackend(tmp_path)
    with pytest.raises(StateError, match="job 'job' step 'step' partition 2") as caught:
        backend.open_store("job", "step", 2)
    assert caught.value.__cause__ is not None
    backend.close()


def test_rocksdb_lock_error_is_wrapped(tmp_path: Path) -> None:
    first = RocksDBBackend(tmp_path)
    first.open_store("job", "step", 0)
    second = RocksDBBackend(tmp_path)
    with pytest.raises(StateError, match="cannot open RocksDB state of job 'job' step 'step'"):
        second.open_store("job", "step", 0)
    second.close()
    first.close()


@pytest.mark.parametrize(
    ("job", "step", "partition"),
    [("", "s", 0), ("j", "a/b", 0), ("..", "s", 0), ("j", "s\x00", 0), ("j", "s", -1)],
)
def test_names_that_cannot_be_folders_are_rejected(
    backend: StateBackend, job: str, step: str, partition: int
) -> None:
    with pytest.raises(ConfigError):
        backend.open_store(job, step, partition)


def test_closed_backend_refuses_to_open_stores(backend: StateBackend) -> None:
    store = backend.open_store("job", "step", 0)
    backend.close()
    with pytest.raises(StateError, match="is closed"):
        store.get("k")
    with pytest.raises(StateError, match="backend .*is closed"):
        backend.open_store("job", "step", 0)


def test_negative_cache_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cache_entries"):
        RocksDBBackend(tmp_path, cache_entries=-1)


def test_rocksdb_stores_share_one_cache_budget(tmp_path: Path) -> None:
    from runtime.state.rocksdb import RocksDBBackend

    backend = RocksDBBackend(tmp_path, cache_entries=50_000, total_cache_entries=16_000)
    stores = [backend.open_store("job", "step", p) for p in range(8)]
    first = stores[0]
    for i in range(10_000):
        first.put(("k", i), i)
    assert first.cached_entries == 10_000  # changes not yet checkpointed always stay
    first.checkpoint()
    assert first.cached_entries <= 2_000  # its share: 16,000 / 8 stores
    for store in stores[1:]:
        store.close()
    for i in range(10_000):
        assert first.get(("k", i)) == i  # read back from disk into the larger cache
    assert 2_000 < first.cached_entries <= 16_000
    backend.close()


def test_the_native_key_functions_pickle_and_keep_working() -> None:
    """Flink ships functions that may hold them: they pickle as the same functions."""
    import pickle

    from runtime.state import serde

    for fn, arg in ((serde.encode_key, ("u", 7)), (serde.decode_key, serde.encode_key(("u", 7)))):
        again = pickle.loads(pickle.dumps(fn))
        assert type(again) is type(fn)
        assert again(arg) == fn(arg)
