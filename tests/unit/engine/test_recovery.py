"""Restore checks: an undecodable changelog record or local entry fails with where it is;
changelog chunks fetched ahead on a thread come in order, with their errors."""

from __future__ import annotations

import pickle  # only to write the old format that must be refused
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.api.errors import StateError, StateFormatError
from runtime.engine.recovery import apply_changes, check_local_state, prefetched
from runtime.state import Change, MemoryBackend, RocksDBBackend, StateBackend
from runtime.state.serde import encode_key, encode_value

TOPIC = "g.counts.changelog"


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    made: StateBackend = MemoryBackend() if request.param == "memory" else RocksDBBackend(tmp_path)
    yield made
    made.close()


def test_good_changes_restore(backend: StateBackend) -> None:
    store = backend.open_store("job", "counts", 3)
    changes: list[Change] = [
        (encode_key(("u", 1)), encode_value([1, (2, 3)])),
        (encode_key("x"), None),
    ]
    apply_changes(store, changes, [40, 41], TOPIC, 3)
    assert dict(store.items()) == {("u", 1): [1, (2, 3)]}
    check_local_state(store)


@pytest.mark.parametrize(
    "bad,problem",
    [
        ((encode_key("b"), pickle.dumps({"n": 1}, protocol=5)), "old format"),
        ((encode_key("b"), b"\x01\xc1"), "malformed encoded value"),
        ((b"\x99", encode_value(1)), "malformed state key"),
    ],
    ids=["old-format", "junk-value", "junk-key"],
)
def test_a_bad_record_names_topic_partition_and_offset(
    backend: StateBackend, bad: Change, problem: str
) -> None:
    store = backend.open_store("job", "counts", 3)
    changes: list[Change] = [(encode_key("a"), encode_value(1)), bad, (encode_key("c"), None)]
    with pytest.raises(StateFormatError) as info:
        apply_changes(store, changes, [7, 8, 9], TOPIC, 3)
    message = str(info.value)
    assert message.startswith(f"changelog {TOPIC}[3] at offset 8 (step 'counts'): "), message
    assert problem in message and "\n" not in message


def test_other_restore_failures_pass_through(backend: StateBackend) -> None:
    store = backend.open_store("job", "counts", 0)
    store.put("pending", 1)
    with pytest.raises(StateError, match="uncheckpointed changes") as info:
        apply_changes(store, [(encode_key("a"), encode_value(1))], [0], TOPIC, 0)
    assert not isinstance(info.value, StateFormatError)


def test_reused_local_state_in_the_old_format_fails_with_the_store_named(tmp_path: Path) -> None:
    backend = RocksDBBackend(tmp_path)
    store = backend.open_store("job", "counts", 0)
    store.put("k", 1)
    store.checkpoint()
    store.close()
    from rocksdict import Options, Rdict  # the disk as the old version left it

    db = Rdict(str(tmp_path / "job" / "counts" / "0"), Options(raw_mode=True))
    db[encode_key("k")] = pickle.dumps(5, protocol=5)
    db.close()
    store = backend.open_store("job", "counts", 0)
    with pytest.raises(StateFormatError) as info:
        check_local_state(store)
    message = str(info.value)
    assert "job 'job' step 'counts' partition 0" in message and "old format" in message
    assert "local state folder" in message and "\n" not in message
    backend.close()


def test_prefetched_items_come_in_order_and_errors_where_they_happened() -> None:
    assert list(prefetched(iter(range(100)), 3)) == list(range(100))

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise StateError("the broker went away")

    got: list[int] = []
    with pytest.raises(StateError, match="went away"):
        for item in prefetched(failing(), 1):
            got.append(item)
    assert got == [1, 2]


def test_a_reader_that_stops_early_closes_the_prefetched_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.set()

    items = prefetched(endless(), 2)
    assert [next(items) for _ in range(5)] == [1, 2, 3, 4, 5]
    items.close()  # what an exception in the reader's loop does
    assert closed.is_set()
