"""The Flink engine without a broker: its functions on fake Flink contexts, the session
merging rule, time conversions, the connector-version check, the missing-extra error,
and the translation of every reference job into a Flink job graph (in PyFlink's JVM,
not executed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Json
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, JobDefinitionError, UserFunctionError
from runtime.api.functions import MapState, ValueState
from runtime.api.graph import ErrorPolicy
from runtime.api.watermarks import WatermarkStrategy
from runtime.api.windows import WindowSpec, hopping, session, tumbling
from runtime.flink import _pyflink as pf
from runtime.flink import options as flink_options
from runtime.flink.failures import Failures
from runtime.flink.functions import (
    DEAD_LETTERS,
    DecodeStep,
    EncodeStep,
    KeyStep,
    MapStep,
    TimerPair,
    shoal_watermark,
)
from runtime.flink.jars import (
    POM,
    bundled_jars,
    check_pom_matches,
    installed_flink_version,
    python_jar,
)
from runtime.flink.process import ProcessStep
from runtime.flink.windows import WindowStep
from tests.unit.flink_fakes import LONG_MAX, FakeKeyedOperator, Output

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:.*deprecated since version 2.1.0:DeprecationWarning:pyflink"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2"),
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
]

NOW_MS = 1_700_000_000_000


def failures(policy: ErrorPolicy = ErrorPolicy.DEAD_LETTER) -> Failures:
    return Failures("j", "step", policy, "topic-a")


def dead(outputs: list[Any]) -> list[dict[str, Any]]:
    return [o[1] for o in outputs if isinstance(o, tuple) and o[0] is DEAD_LETTERS]


def main(outputs: list[Any]) -> list[Any]:
    return [o for o in outputs if not (isinstance(o, tuple) and o[0] is DEAD_LETTERS)]


# -- time and sessions -----------------------------------------------------------------
def test_watermark_is_one_above_flinks() -> None:
    assert shoal_watermark(9_999) == 10_000
    assert shoal_watermark(-(2**63)) == -(2**63)


def test_sessions_merge_only_when_they_overlap_strictly() -> None:
    op = window_operator(session(timedelta(milliseconds=10)))
    for t in (0, 5, 15, 30):  # 15 starts exactly where [0, 15) ends: a new session
        op.element(("u", 1), t)
    op.advance(LONG_MAX)
    assert results(op.outputs) == [(0, 15, 2, 14), (15, 25, 1, 24), (30, 40, 1, 39)]


# -- decode and stateless steps --------------------------------------------------------
def playback_event(event_time_ms: int) -> dict[str, Any]:
    from runtime.generator import Generator, GeneratorConfig

    template = next(
        r.value for r in Generator(GeneratorConfig(seed=1, users=1)) if r.stream == "playback"
    )
    return {**template, "event_time_ms": event_time_ms}


def test_decode_dead_letters_bad_bytes_and_absurd_times() -> None:
    step = DecodeStep(
        "PlaybackEvent",
        lambda e: e["event_time_ms"],
        WatermarkStrategy(),
        failures(),
        codec_factory,
    )
    step.open(None)
    encode = codec_factory()("PlaybackEvent").encode
    good = playback_event(NOW_MS)
    # The event time goes beside the pair, for the JVM's timestamp and watermark steps.
    assert list(step.process_element(encode(good), None)) == [((None, good), NOW_MS)]
    out = list(step.process_element(b"\x00garbage", None))
    out += list(step.process_element(encode(playback_event(5)), None))
    letters = dead(out)
    assert [d["error_class"] for d in letters] == ["DecodeError", "TimestampError"]
    assert letters[0]["original_value"] == b"\x00garbage"
    assert letters[0]["source_topic"] == "topic-a" and letters[0]["step"] == "step"
    codec_factory()("DeadLetter").encode(letters[1])  # a valid DeadLetter record


def test_decode_clamps_far_future_times_when_asked() -> None:
    def decode_at(event_time_ms: int, future: str) -> list[Any]:
        strategy = WatermarkStrategy(max_future_ms=60_000, future=future)  # type: ignore[arg-type]
        step = DecodeStep(
            "PlaybackEvent", lambda e: e["event_time_ms"], strategy, failures(), codec_factory
        )
        step.open(None)
        encode = codec_factory()("PlaybackEvent").encode
        return list(step.process_element(encode(playback_event(event_time_ms)), None))

    ahead = time.time_ns() // 1_000_000 + 3_600_000
    before = time.time_ns() // 1_000_000
    [(_pair, stamped)] = decode_at(ahead, "clamp")
    assert before + 60_000 <= stamped <= time.time_ns() // 1_000_000 + 60_000
    assert [d["error_class"] for d in dead(decode_at(ahead, "dead_letter"))] == ["TimestampError"]
    # A time within the bound is kept as it is.
    assert decode_at(before + 1_000, "clamp")[0][1] == before + 1_000


def boom(v: Any) -> Any:
    raise ValueError(f"bad {v}")


def test_user_function_errors_follow_the_policy() -> None:
    assert list(MapStep(lambda v: v + 1, failures()).process_element(("k", 1), None)) == [("k", 2)]
    letters = dead(list(MapStep(boom, failures()).process_element(("k", 1), None)))
    assert letters[0]["error_class"] == "ValueError" and letters[0]["original_value"] == b"1"
    assert list(MapStep(boom, failures(ErrorPolicy.SKIP)).process_element(("k", 1), None)) == []
    with pytest.raises(UserFunctionError, match="step 'step'"):
        list(MapStep(boom, failures(ErrorPolicy.FAIL)).process_element(("k", 1), None))


# -- windows ---------------------------------------------------------------------------
class FakeState:
    def __init__(self) -> None:
        self.v: Any = None

    def value(self) -> Any:
        return self.v

    def update(self, v: Any) -> None:
        self.v = v

    def clear(self) -> None:
        self.v = None


class FakeStore:
    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def get_state(self, desc: Any) -> FakeState:
        return self.states.setdefault(desc.name, FakeState())  # type: ignore[no-any-return]


class SumOf:
    """Sums ints; raises on anything else."""

    def create(self) -> int:
        return 0

    def add(self, acc: int, value: Any) -> int:
        if not isinstance(value, int):
            raise TypeError(f"not a number: {value!r}")
        return acc + value

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, acc: int) -> int:
        return acc


def row(key: Any, w: Any, result: Any) -> dict[str, Any]:
    return {"key": key, "start": w.start_ms, "end": w.end_ms, "sum": result}


def window_operator(spec: WindowSpec, policy: ErrorPolicy = ErrorPolicy.DEAD_LETTER) -> Any:
    return FakeKeyedOperator(WindowStep("w", spec, SumOf(), row, failures(policy)))


def results(outputs: list[Output]) -> list[tuple[int, int, Any, int | None]]:
    """(start, end, sum, Flink timestamp) of the main outputs."""
    return [
        (o.value[1]["start"], o.value[1]["end"], o.value[1]["sum"], o.timestamp)
        for o in outputs
        if o.tag is None
    ]


def test_fixed_window_fires_at_its_end_and_dead_letters_failing_records() -> None:
    op = window_operator(
        tumbling(timedelta(milliseconds=10), allowed_lateness=timedelta(milliseconds=5))
    )
    for v, t in ((1, 1), (2, 3), ("x", 4), (4, 12)):
        op.element(("u", v), t)
    letters = [o.value for o in op.outputs if o.tag == "shoal.dead-letters"]
    assert [d["error_class"] for d in letters] == ["TypeError"]
    assert op.advance(8) == []  # Flink's watermark 8 is Shoal's 9
    assert results(op.advance(9)) == [(0, 10, 3, 9)]  # Shoal's 10: stamped end - 1
    # Late but within lateness: the window's new result goes out with the next
    # watermark, stamped with its end again, not with the late record's time.
    assert op.element(("u", 5), 2) == []
    assert results(op.advance(11)) == [(0, 10, 8, 9)]
    # Lateness over: a record of [0, 10) goes to the late output.
    op.advance(15)
    late = op.element(("u", 7), 6)
    assert [(o.tag, o.value) for o in late] == [("w.late", ("u", 7))]
    assert results(op.advance(LONG_MAX)) == [(10, 20, 4, 19)]
    assert not op.state["u"]  # every window forgotten


def test_hopping_record_goes_to_every_window_that_still_exists() -> None:
    op = window_operator(hopping(timedelta(milliseconds=4), timedelta(milliseconds=2)))
    op.element(("u", 1), 5)  # in [2, 6) and [4, 8)
    op.advance(6 - 1)  # Shoal watermark 6: [2, 6) fires
    op.element(("u", 10), 5)  # [2, 6) is gone (no lateness): only [4, 8) gets it
    op.advance(LONG_MAX)
    assert results(op.outputs) == [(2, 6, 1, 5), (4, 8, 11, 7)]


def test_session_that_absorbs_an_emitted_session_retracts_it() -> None:
    op = window_operator(
        session(timedelta(milliseconds=10), allowed_lateness=timedelta(milliseconds=30))
    )
    op.element(("u", 1), 0)
    op.element(("u", 2), 15)
    op.advance(26)  # Shoal watermark 27: [0, 10) and [15, 25) fired
    assert results(op.outputs) == [(0, 10, 1, 9), (15, 25, 2, 24)]
    # A late record at 8 bridges both: the later start is retracted at once, and the
    # merged session goes out with the next watermark, stamped with its end.
    bridged = op.element(("u", 5), 8)
    assert [o.value[1] for o in bridged] == [{"key": "u", "start": 15, "end": 25, "sum": None}]
    assert results(op.advance(27)) == [(0, 25, 8, 24)]
    # Kept until no record on time can reach it: end + gap - 1 + lateness.
    op.advance(25 + 10 - 1 + 30 - 2)
    assert op.state["u"]
    op.advance(25 + 10 - 1 + 30 - 1)
    assert not op.state["u"]


# -- process steps ---------------------------------------------------------------------
class FakeTimers:
    def __init__(self) -> None:
        self.event: list[int] = []
        self.now = 1_000

    def register_event_time_timer(self, t: int) -> None:
        self.event.append(t)

    def current_watermark(self) -> int:
        return 4_999

    def current_processing_time(self) -> int:
        return self.now


class ProcessContext:
    def __init__(self, timers: FakeTimers, ts: int = 0) -> None:
        self.timers = timers
        self.ts = ts

    def timer_service(self) -> FakeTimers:
        return self.timers

    def timestamp(self) -> int:
        return self.ts

    def get_current_key(self) -> str:
        return "u"

    def time_domain(self) -> Any:
        return pf.TimeDomain.EVENT_TIME


class Runtime:
    def __init__(self) -> None:
        self.store = FakeStore()

    def get_state(self, desc: Any) -> FakeState:
        return self.store.get_state(desc)


class Remember:
    """Counts records per key (TTL 500 ms), remembers the last, fires a timer at ts + 100."""

    states = (ValueState("n", default=0, ttl=timedelta(milliseconds=500)), MapState("last"))

    def process(self, value: Any, ctx: Any) -> Iterator[Any]:
        n = ctx.state(self.states[0])
        n.set(n.get() + 1)
        ctx.state(self.states[1]).set({"v": value})
        ctx.timers.register_event_time(ctx.timestamp_ms + 100)
        yield {"n": n.get(), "wm": ctx.watermark_ms}

    def on_timer(self, ts_ms: int, ctx: Any) -> Iterator[Any]:
        yield {"timer": ts_ms, "last": ctx.state(self.states[1]).get()}


def test_process_step_adapts_state_ttl_and_timers() -> None:
    step = ProcessStep(Remember(), failures())
    step.open(Runtime())
    timers = FakeTimers()
    assert list(step.process_element(("u", "a"), ProcessContext(timers, ts=2_000))) == [
        ("u", {"n": 1, "wm": 5_000})
    ]
    assert timers.event == [2_099]  # fires when Shoal's watermark reaches 2_100
    assert list(step.process_element(("u", "b"), ProcessContext(timers)))[0][1]["n"] == 2
    timers.now += 500  # the count's TTL passes
    assert list(step.process_element(("u", "c"), ProcessContext(timers)))[0][1]["n"] == 1
    fired = list(step.on_timer(2_099, ProcessContext(timers)))
    assert fired == [("u", {"timer": 2_100, "last": {"v": "c"}})]


def test_timer_outputs_keep_shoal_event_time_downstream() -> None:
    # A Shoal timer at 60_000 is a Flink timer at 59_999, whose outputs Flink stamps
    # 59_999: downstream they must still count as 60_000 (the next minute's window).
    step = ProcessStep(Remember(), failures())
    step.open(Runtime())
    fired = list(step.on_timer(59_999, ProcessContext(FakeTimers())))
    assert fired == [("u", {"timer": 60_000, "last": {}})]
    assert type(fired[0]) is TimerPair
    mapped = list(MapStep(lambda v: v["timer"], failures()).process_element(fired[0], None))
    keyed = list(KeyStep(lambda v: "k", failures()).process_element(mapped[0], None))
    assert type(mapped[0]) is TimerPair and type(keyed[0]) is TimerPair
    minute = window_operator(tumbling(timedelta(minutes=1)))
    minute.element(keyed[0], 59_999)  # event time 60_000: the next minute
    minute.element(("k", 1), 59_999)  # a plain pair: event time 59_999
    minute.advance(LONG_MAX)
    assert [(start, total) for start, _, total, _ in results(minute.outputs)] == [
        (0, 1),
        (60_000, 60_000),
    ]
    # A process step downstream sees the record at 60_000, and its outputs stay timed.
    seen = list(step.process_element(keyed[0], ProcessContext(FakeTimers(), ts=59_999)))
    assert type(seen[0]) is TimerPair


class Stamped:
    def __init__(self, ts: int) -> None:
        self.ts = ts

    def timestamp(self) -> int:
        return self.ts


def test_sink_rows_carry_the_native_engines_message_key_and_event_time() -> None:
    by_stream_key = EncodeStep("", failures(), codec_factory)
    by_stream_key.open(None)
    row = next(by_stream_key.process_element((("t1", "mobile"), {"n": 1}), Stamped(5)))
    assert (row[0], row[1], row[2]) == (b"t1|mobile", b'{"n":1}', 5)
    by_sink_key = EncodeStep("", failures(), codec_factory, key=lambda v: v["user"])
    by_sink_key.open(None)
    row = next(by_sink_key.process_element(TimerPair((None, {"user": "u1"})), Stamped(59_999)))
    assert (row[0], row[2]) == (b"u1", 60_000)
    unkeyed = next(by_stream_key.process_element((None, {"n": 2}), Stamped(7)))
    assert unkeyed[0] is None


# -- versions, the missing extra and the CLI -------------------------------------------
def test_connector_pom_matches_the_installed_flink() -> None:
    check_pom_matches(POM.read_text(), installed_flink_version())
    with pytest.raises(ConfigError, match="apache-flink 1.20.0 is installed"):
        check_pom_matches(POM.read_text(), "1.20.0")


def test_bundled_connector_must_be_there_and_for_this_flink(tmp_path: Path) -> None:
    # What the shoal-flink image carries in /opt/flink/usrlib (SHOAL_FLINK_JARS).
    with pytest.raises(ConfigError, match="holds no Flink Kafka connector jar"):
        bundled_jars(tmp_path, flink_version="2.2.1")
    (tmp_path / "other.jar").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds no Flink Kafka connector jar"):
        bundled_jars(tmp_path, flink_version="2.2.1")
    connector = tmp_path / "flink-sql-connector-kafka-5.0.0-2.2.jar"
    connector.write_bytes(b"")
    assert bundled_jars(tmp_path, flink_version="2.2.1") == [connector, tmp_path / "other.jar"]
    with pytest.raises(ConfigError, match="for Flink 2.2, but Flink 2.3 is installed"):
        bundled_jars(tmp_path, flink_version="2.3.0")


def test_settings_name_the_bundled_connector_folder(tmp_path: Path) -> None:
    from runtime.settings import load_settings

    assert load_settings({}).flink_jars is None
    assert load_settings({"SHOAL_FLINK_JARS": str(tmp_path)}).flink_jars == tmp_path
    options = flink_options.FlinkOptions(bootstrap="x", jar_dir=tmp_path)
    assert options.jar_dir == tmp_path


def test_a_remote_cluster_gets_flinks_python_operators_with_the_job(tmp_path: Path) -> None:
    from runtime.flink.submit import flink_config

    jar = python_jar()
    assert jar.name == f"flink-python-{installed_flink_version()}.jar" and jar.is_file()
    connector = tmp_path / "flink-sql-connector-kafka-5.0.0-2.2.jar"
    job = build_user_counts_job()
    local = flink_options.FlinkOptions(bootstrap="x", checkpoint_dir=tmp_path)
    remote = flink_options.FlinkOptions(
        bootstrap="x", checkpoint_dir=tmp_path, jobmanager="127.0.0.1:8081"
    )
    assert flink_config(job, local, [connector], "")["pipeline.jars"] == connector.as_uri()
    config = flink_config(job, remote, [connector], "")
    assert config["pipeline.jars"] == f"{connector.as_uri()};{jar.resolve().as_uri()}"
    assert (config["execution.target"], config["rest.port"]) == ("remote", "8081")


def test_missing_pyflink_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flink_options.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install \"shoal\[flink\]\""):
        flink_options.require_pyflink()


def test_jobmanager_needs_the_flink_engine() -> None:
    from click.testing import CliRunner

    from runtime.cli.run_cmd import run

    result = CliRunner().invoke(
        run, ["jobs.user_counts:job", "--bootstrap", "127.0.0.1:1", "--jobmanager", "h:8081"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "--engine flink" in str(result.exception)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        flink_options.FlinkOptions(bootstrap="x", jobmanager="nohost")


# -- translation of the reference jobs -------------------------------------------------
@pytest.fixture(scope="module")
def flink_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Flink environment in PyFlink's gateway JVM, with the Kafka connector loaded."""
    from runtime.composition import FLINK_CONNECTORS
    from runtime.flink.options import FlinkOptions
    from runtime.flink.submit import build_environment
    from runtime.settings import load_settings

    options = FlinkOptions(
        bootstrap="127.0.0.1:1",
        bounded=True,
        checkpoint_dir=tmp_path_factory.mktemp("flink-checkpoints"),
        jar_cache=load_settings().cache / "flink",
    )
    return lambda job, partitions: build_environment(
        job, Bindings.for_job(job), options, partitions, FLINK_CONNECTORS
    )


def reference_jobs() -> list[Any]:
    from jobs.attribution import job as attribution
    from jobs.personalization import job as personalization
    from jobs.playback_health import job as playback_health
    from jobs.qoe import job as qoe
    from jobs.sessionization import job as sessionization
    from jobs.user_counts import job as user_counts

    return [user_counts, sessionization, qoe, personalization, playback_health, attribution]


@pytest.mark.parametrize("job", reference_jobs(), ids=lambda j: j.name)
def test_reference_jobs_translate(job: Any, flink_env: Any) -> None:
    partitions = {s.name: 4 for s in job.sources}
    env, translation, restored = flink_env(job, partitions)
    assert restored is None
    assert set(translation.sinks) == {s.name for s in job.sinks}
    assert set(translation.streams) == {n.name for n in job.nodes}
    plan = env.get_execution_plan()
    assert "dead-letters" in plan and all(s.name in plan for s in job.sinks)


def test_unsupported_steps_are_refused(flink_env: Any) -> None:
    from runtime import Job, windows
    from runtime.aggregates import Count

    job = Job("early")
    (
        job.source("playback", schema="PlaybackEvent")
        .key_by("k", lambda e: e["user_id"])
        .window("w", windows.tumbling(timedelta(seconds=1), early_updates=timedelta(seconds=1)))
        .aggregate(Count())
        .sink("out", Json())
    )
    with pytest.raises(JobDefinitionError, match="early updates"):
        flink_env(job, {"playback": 1})
    with pytest.raises(ConfigError, match="does not exist"):
        flink_env(build_user_counts_job(), {})


def build_user_counts_job() -> Any:
    from jobs.user_counts import build

    return build(name="uc")


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="execution mode"):
        flink_options.FlinkOptions(bootstrap="x", execution_mode="fast")


def test_every_window_kind_runs_in_thread_mode() -> None:
    from runtime.flink.submit import execution_mode

    assert execution_mode(flink_options.FlinkOptions(bootstrap="x")) == "thread"
    process = flink_options.FlinkOptions(bootstrap="x", execution_mode="process")
    assert execution_mode(process) == "process"
