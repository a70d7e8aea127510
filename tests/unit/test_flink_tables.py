"""Table joins on the Flink engine without a JVM: ``TableJoinStep`` fed by an in-memory
table reader (a stand-in for ``connectors.kafka.tables.TableReader``; the real reader
and Flink run in ``tests/integration/test_flink_attribution.py``) against the
brute-force table join, its dead letters, and a table job's translation."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.codecs import codec_factory
from runtime import ConfigError
from runtime.api.bindings import Bindings
from runtime.api.graph import ErrorPolicy
from runtime.flink.failures import Failures
from runtime.flink.functions import DEAD_LETTERS, StampedPair
from runtime.flink.tables import TableJoinStep, TableSpec
from tests.reference.tables import Record, Update, table_join
from tests.unit.engine.test_tables import SCRIPT, catalogue_job, enrich
from tests.unit.test_flink_translate import flink_env  # noqa: F401  (a fixture)

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:.*deprecated since version 2.1.0:DeprecationWarning:pyflink"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2"),
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
]

TOPIC = "titles"


class Message:
    """A table record as the reader hands it over."""

    def __init__(self, partition: int, offset: int, key: bytes | None, value: bytes | None):
        self._p, self._o, self._k, self._v = partition, offset, key, value

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


class InMemoryFeed:
    """A table reader over records held in memory (a fake, for the unit tests): what is
    written before ``open`` is loaded, what is written later is polled."""

    def __init__(self, partitions: int = 2) -> None:
        self.logs: list[list[Message]] = [[] for _ in range(partitions)]
        self.followed: dict[int, int] = {}
        self.closed = False

    def write(self, key: str | bytes | None, value: Any, partition: int | None = None) -> None:
        raw_key = key.encode() if isinstance(key, str) else key
        if partition is None:
            partition = 0 if raw_key is None else sum(raw_key) % len(self.logs)
        data = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
        log = self.logs[partition]
        log.append(Message(partition, len(log), raw_key, data))

    def partitions(self, topic: str) -> int:
        assert topic == TOPIC
        return len(self.logs)

    def load(self, topic: str, partition: int) -> Iterator[list[Message]]:
        if self.logs[partition]:
            yield list(self.logs[partition])

    def follow(self, positions: Mapping[tuple[str, int], int]) -> None:
        self.followed = {p: off for (_, p), off in positions.items()}

    def poll(self) -> list[Message]:
        out = []
        for p, off in self.followed.items():
            out.extend(self.logs[p][off:])
            self.followed[p] = len(self.logs[p])
        return out

    def close(self) -> None:
        self.closed = True


class Context:
    def __init__(self, index: int = 0, parallelism: int = 1) -> None:
        self.index, self.parallelism = index, parallelism

    def get_index_of_this_subtask(self) -> int:
        return self.index

    def get_number_of_parallel_subtasks(self) -> int:
        return self.parallelism


def step(feed: InMemoryFeed, how: str = "inner", policy: ErrorPolicy = ErrorPolicy.DEAD_LETTER,
         ctx: Context | None = None) -> TableJoinStep:  # fmt: skip
    table = TableSpec(TOPIC, lambda b: b.decode(), "", Failures("enrich", "titles", policy, TOPIC))
    s = TableJoinStep(
        table, lambda e: e["title"], how == "left", enrich,
        Failures("enrich", "with_genre", policy), lambda: feed, codec_factory,
    )  # fmt: skip
    s.open(ctx or Context())
    return s


def process(s: TableJoinStep, value: Any, follow: bool = True) -> list[Any]:
    if follow:
        s.next_follow = 0.0  # look for table records now
    return list(s.process_element((None, value), None))


@pytest.mark.parametrize("how", ["inner", "left"])
def test_updates_and_tombstones_between_records_equal_the_reference(how: str) -> None:
    feed = InMemoryFeed()
    s = step(feed, how)
    out = []
    for event in SCRIPT:
        if isinstance(event, Update):
            feed.write(event.key, event.value)
        else:
            out.extend(v for _, v in process(s, event.value))
    assert out == table_join(SCRIPT, how, enrich)
    s.close()
    assert feed.closed


events = st.lists(
    st.one_of(
        st.builds(Update, st.sampled_from(("a", "b", "c")),
                  st.one_of(st.none(), st.builds(lambda g: {"genre": g}, st.sampled_from("xyz")))),
        st.builds(Record, st.sampled_from(("a", "b", "c")), st.just(None)),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(events, st.sampled_from(["inner", "left"]), st.integers(0, 40), st.integers(1, 3))
def test_random_updates_and_records_equal_the_reference(
    script: list[Update | Record], how: str, opened_at: int, partitions: int
) -> None:
    """The table written up to ``opened_at`` is there when the step opens; the rest of
    the updates come while it runs, spread over ``partitions`` partitions."""
    script = [
        Record(e.key, {"id": i, "title": e.key}) if isinstance(e, Record) else e
        for i, e in enumerate(script)
    ]
    feed = InMemoryFeed(partitions)
    opened_at = min(opened_at, len(script))
    before = [e for e in script[:opened_at] if isinstance(e, Update)]
    for event in before:
        feed.write(event.key, event.value)
    s = step(feed, how)
    out = []
    for event in script[opened_at:]:
        if isinstance(event, Update):
            feed.write(event.key, event.value)
        else:
            out.extend(v for _, v in process(s, event.value))
    # The records before the step opened are not processed; the table they saw is.
    assert out == table_join([*before, *script[opened_at:]], how, enrich)


def test_the_table_is_read_before_the_first_record_and_followed_only_when_due() -> None:
    feed = InMemoryFeed()
    feed.write("t1", {"genre": "drama"})
    feed.write("t1", {"genre": "crime"})  # the later value wins
    feed.write("t9", {"genre": "news"})
    feed.write("t9", None)  # deleted before the job started
    s = step(feed, "left")
    assert process(s, {"id": 1, "title": "t1"}, follow=False) == [
        (None, {"key": "t1", "id": 1, "genre": "crime"})
    ]
    assert process(s, {"id": 2, "title": "t9"}, follow=False)[0][1]["genre"] is None
    feed.write("t9", {"genre": "sport"})
    # Not due yet: the record sees the table as it was; then it is followed.
    s.next_follow = float("inf")
    assert process(s, {"id": 3, "title": "t9"}, follow=False)[0][1]["genre"] is None
    assert process(s, {"id": 4, "title": "t9"})[0][1]["genre"] == "sport"


def test_event_time_of_the_record_is_kept() -> None:
    feed = InMemoryFeed()
    feed.write("t1", {"genre": "drama"})
    s = step(feed)
    [out] = list(s.process_element(StampedPair((None, {"id": 1, "title": "t1"}), 42), None))
    assert type(out) is StampedPair and out.ts == 42


def test_bad_table_records_are_dead_lettered_once_with_their_offsets() -> None:
    feed = InMemoryFeed(partitions=2)
    feed.write(None, {"genre": "drama"}, partition=0)  # no key
    feed.write(b"\xff\xfe", {"genre": "drama"}, partition=1)  # not UTF-8
    feed.write("t1", b"{not json", partition=1)
    feed.write("t1", {"genre": "drama"}, partition=1)
    outputs = []
    for index in (0, 1):
        s = step(feed, ctx=Context(index, 2))
        outputs.append(process(s, {"id": 1, "title": "t1"}))
        # The table went on past its bad records.
        assert outputs[-1][-1] == (None, {"key": "t1", "id": 1, "genre": "drama"})
        assert process(s, {"id": 2, "title": "t1"}) == [
            (None, {"key": "t1", "id": 2, "genre": "drama"})
        ]  # dead letters go out once
    letters = [(v["source_partition"], v["source_offset"], v["error_class"])
               for out in outputs for tag, v in out[:-1] if tag is DEAD_LETTERS]  # fmt: skip
    # Partition 0's by subtask 0, partition 1's by subtask 1: each once.
    assert letters == [(0, 0, "DecodeError"), (1, 0, "DecodeError"), (1, 1, "DecodeError")]
    assert all(v["step"] == "titles" and v["source_topic"] == TOPIC
               for out in outputs for _, v in out[:-1])  # fmt: skip


def test_a_failing_output_is_dead_lettered_and_fail_policy_raises() -> None:
    feed = InMemoryFeed()
    feed.write("t1", {"genre": "drama"})
    s = step(feed)
    [(tag, letter)] = process(s, {"id": 1})  # no "title": the key function fails
    assert tag is DEAD_LETTERS and letter["step"] == "with_genre"
    assert letter["error_class"] == "KeyError"
    feed.write("t2", b"junk")
    with pytest.raises(Exception, match="titles"):
        step(feed, policy=ErrorPolicy.FAIL)


def test_a_table_job_translates_and_needs_a_table_reader(flink_env: Any) -> None:  # noqa: F811
    from runtime.flink.translate import KafkaSettings, translate

    for kind in ("global", "co-partitioned"):
        job = catalogue_job("left", kind)
        env, translation, _ = flink_env(job, {"plays": 2})
        assert set(translation.streams) == {n.name for n in job.nodes}
        assert "with_genre" in env.get_execution_plan()
    job = catalogue_job()
    settings = KafkaSettings("127.0.0.1:1", "g", codecs=codec_factory)
    with pytest.raises(ConfigError, match="has tables and the Flink engine no table reader") as e:
        translate(object(), job, Bindings.for_job(job), settings)
    assert "\n" not in str(e.value)


def test_the_subtask_is_found_in_the_task_info_when_the_old_methods_are_gone() -> None:
    from runtime.flink.tables import subtask

    class TaskInfo:
        def getIndexOfThisSubtask(self) -> int:  # noqa: N802  (Java's name)
            return 2

        def getNumberOfParallelSubtasks(self) -> int:  # noqa: N802
            return 3

    class Java:
        def getTaskInfo(self) -> TaskInfo:  # noqa: N802
            return TaskInfo()

    class ThreadModeContext:  # PyFlink's thread mode on Flink 2: the old calls fail
        _runtime_context = Java()

        def get_index_of_this_subtask(self) -> int:
            raise AttributeError(
                "'pemja.PyJObject' object has no attribute 'getIndexOfThisSubtask'"
            )

    assert subtask(ThreadModeContext()) == (2, 3)
    assert subtask(Context(1, 4)) == (1, 4)
