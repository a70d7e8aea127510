"""Interval joins on the Flink engine without a JVM: ``JoinStep`` on the fake keyed
operator against the brute-force join (``tests.reference.joins``) over random
arrivals, its event times, late side outputs and dead letters, and a join job's
translation into a Flink job graph."""

from __future__ import annotations

import pickle
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Job, Json
from runtime.api.graph import ErrorPolicy, default_join_output
from runtime.flink.failures import Failures
from runtime.flink.functions import (
    DEAD_LETTERS,
    EncodeStep,
    MapStep,
    StampedPair,
    TimerPair,
    event_time,
    shoal_watermark,
)
from runtime.flink.joins import JoinBounds, JoinStep
from tests.reference.joins import Arrival, interval_join
from tests.unit.flink_fakes import LONG_MAX, FakeKeyedOperator, Output
from tests.unit.test_flink_translate import flink_env  # noqa: F401  (a fixture)

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:.*deprecated since version 2.1.0:DeprecationWarning:pyflink"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2"),
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
]


def failures(policy: ErrorPolicy = ErrorPolicy.DEAD_LETTER) -> Failures:
    return Failures("j", "joined", policy)


def ids(key: Any, left: Any, right: Any) -> tuple[Any, Any]:
    return (left["id"], None if right is None else right["id"])


def join_operator(
    lower: int, upper: int, lateness: int, how: str = "inner", output: Any = ids
) -> FakeKeyedOperator:
    step = JoinStep("joined", JoinBounds(lower, upper, lateness), how == "left", output, failures())
    return FakeKeyedOperator(step)


def emitted(outputs: list[Output]) -> Counter[tuple[Any, Any, Any, int]]:
    """Main outputs as the reference's pairs: (key, left id, right id, event time)."""
    got: Counter[tuple[Any, Any, Any, int]] = Counter()
    for o in outputs:
        if o.tag is None:
            key, (left, right) = o.value
            assert o.timestamp is not None
            got[(key, left, right, event_time(o.value, o.timestamp))] += 1
    return got


def late(outputs: list[Output], side: str) -> Counter[Any]:
    return Counter(o.value[1]["id"] for o in outputs if o.tag == f"joined.late_{side}")


CASES = [
    # lower, upper, lateness, how
    (0, 30, 0, "inner"),
    (-20, 10, 15, "inner"),
    (-25, -5, 0, "left"),
    (0, 30, 10, "left"),
    (5, 40, 0, "left"),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("lower", "upper", "lateness", "how"), CASES)
def test_join_step_equals_brute_force(
    lower: int, upper: int, lateness: int, how: str, seed: int
) -> None:
    rng = random.Random(seed)
    op = join_operator(lower, upper, lateness, how)
    arrivals: list[Arrival] = []
    now = 0
    for n in range(300):
        now += rng.randrange(0, 4)
        if rng.random() < 0.2:
            # Flink's watermark; Shoal's is one higher (every lateness rule in Shoal's).
            op.advance(now - 30 - rng.randrange(0, 20))
        side = rng.choice(("left", "right"))
        key = rng.choice("abc")
        ts = now - rng.randrange(0, 60)  # disorder, some of it late
        # Some inputs come from timers upstream: event time one above the Flink time.
        timed = rng.random() < 0.2
        pair = (TimerPair if timed else tuple)((key, {"id": n}))
        flink_ts = ts - 1 if timed else ts
        arrivals.append(Arrival(side, key, ts, n, shoal_watermark(op.watermark)))
        (op.element1 if side == "left" else op.element2)(pair, flink_ts)
    op.advance(LONG_MAX)  # the end of input fires every cleanup timer
    want = interval_join(arrivals, lower, upper, lateness, how)
    assert emitted(op.outputs) == want.pairs
    assert late(op.outputs, "left") == want.late_left
    assert late(op.outputs, "right") == want.late_right
    assert sum(want.pairs.values()) > 50 and want.late_left and want.late_right
    assert not any(op.state.values()), "a record outlived its cleanup timer"


def test_records_are_dropped_once_nothing_can_pair_with_them() -> None:
    op = join_operator(-5, 10, 5, "left")
    op.element1(("k", {"id": 1}), 100)
    op.advance(114)  # Shoal's watermark 115: 100 + 10 + 5 is not passed yet
    assert op.state["k"]["shoal.join.left"] == [[100, {"id": 1}, False]]
    assert not emitted(op.outputs)
    op.element2(("k", {"id": 2}), 110)  # 110 + 5 >= 115: not late, pairs
    assert emitted(op.outputs) == {("k", 1, 2, 110): 1}
    op.advance(115)  # 116 > 115: the left one is dropped (it matched: nothing more),
    # the right one is kept while a left record at 110 + 5 could still come on time
    assert op.state["k"] == {"shoal.join.right": [[110, {"id": 2}, True]]}
    assert sum(emitted(op.outputs).values()) == 1
    op.element1(("k", {"id": 3}), 120)
    op.advance(LONG_MAX)
    # The unmatched left record goes out at its own event time, not the timer's.
    unmatched = [o for o in op.outputs if o.tag is None][-1]
    assert unmatched.timestamp == 120 + 10 + 5 and type(unmatched.value) is StampedPair
    assert event_time(unmatched.value, unmatched.timestamp) == 120
    assert unmatched.value == ("k", (3, None))


def test_late_records_keep_their_event_time_and_failing_outputs_dead_letter() -> None:
    def fragile(key: Any, left: Any, right: Any) -> Any:
        if right is None or right["id"] == 13:
            raise ValueError("no partner")
        return default_join_output(key, left, right)

    op = join_operator(0, 10, 0, "left", output=fragile)
    op.advance(1_000)
    late_pair = TimerPair(("k", {"id": 9}))
    out = op.element2(late_pair, 900)
    assert [(o.tag, o.value) for o in out] == [("joined.late_right", late_pair)]
    assert type(out[0].value) is TimerPair  # read as 901 downstream, as it came
    op.element1(("k", {"id": 11}), 1_005)
    op.element2(("k", {"id": 12}), 1_003)  # pairs with nothing: before the left record
    op.element2(("k", {"id": 13}), 1_010)  # pairs with 11, but the output function fails
    op.element2(("k", {"id": 14}), 1_015)  # pairs, emitted at 1_015
    op.element1(("k", {"id": 15}), 1_002)  # pairs with 12 at 1_003 and 13 (fails)
    op.advance(LONG_MAX)
    letters = [o.value for o in op.outputs if o.tag == DEAD_LETTERS.tag_id]
    assert [(d["step"], d["error_class"]) for d in letters] == [("joined", "ValueError")] * 2
    main = [
        (o.value[1]["left"]["id"], o.value[1]["right"]["id"], event_time(o.value, o.timestamp or 0))
        for o in op.outputs
        if o.tag is None
    ]
    assert main == [(11, 14, 1_015), (15, 12, 1_003)]
    assert [d["original_value"] for d in letters][0].startswith(b'{"key"')


def test_stamped_pairs_keep_their_time_through_steps_and_pickling() -> None:
    pair = StampedPair(("k", {"n": 1}), 1_234)
    again = pickle.loads(pickle.dumps(pair))
    assert type(again) is StampedPair and again == pair and again.ts == 1_234
    mapped = next(MapStep(lambda v: v["n"], failures()).process_element(again, None))
    assert type(mapped) is StampedPair and mapped == ("k", 1)
    assert event_time(mapped, 99_999) == 1_234

    class Stamped:
        def timestamp(self) -> int:
            return 99_999

    encode = EncodeStep("", failures(), codec_factory)
    encode.open(None)
    row = next(encode.process_element(mapped, Stamped()))
    assert (row[0], row[1], row[2]) == (b"k", b"1", 1_234)


def join_job() -> Job:
    job = Job("joins_on_flink")
    playback = job.source("playback", schema="PlaybackEvent",
                          timestamp=lambda e: e["event_time_ms"])  # fmt: skip
    starts = playback.filter(lambda e: e["event_type"] == "start", name="starts")
    stalls = playback.filter(lambda e: e["event_type"] == "rebuffer_start", name="stalls")
    joined = starts.key_by("start_by_playback", lambda e: e["playback_id"]).join(
        stalls.key_by("stall_by_playback", lambda e: e["playback_id"]),
        "stalled_starts",
        within=(timedelta(0), timedelta(seconds=30)),
        how="left",
        allowed_lateness=timedelta(seconds=5),
    )
    joined.sink("stalled-starts", Json())
    joined.late_left().sink("late-starts", Json())
    joined.late_right().sink("late-stalls", Json())
    return job


def test_a_join_job_translates(flink_env: Any) -> None:  # noqa: F811
    job = join_job()
    env, translation, _ = flink_env(job, {"playback": 2})
    assert set(translation.streams) == {n.name for n in job.nodes}
    assert set(translation.late) == {"stalled_starts.late_left", "stalled_starts.late_right"}
    assert set(translation.sinks) == {"stalled-starts", "late-starts", "late-stalls"}
    plan = env.get_execution_plan()
    assert "stalled_starts" in plan and "late-stalls" in plan
