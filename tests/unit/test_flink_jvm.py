"""Which jobs run on Flink's JVM steps, and their Python ends, without a broker.

:func:`runtime.flink.jvm.plan` picks a source -> key -> count window chain only when
nothing in it needs Python per record; the translation then puts the JVM steps in
the job graph (in PyFlink's JVM, not executed). The Python ends of the JVM steps
(the refused records' decoder and the batch output step) run on plain rows here; the
records on a broker are ``tests/integration/test_flink_jvm.py``'s.
"""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.codecs import codec_factory
from runtime import Job, Json, WatermarkStrategy, Window, field, windows
from runtime.aggregates import Count, Max, Mean, Min, Quantiles, Sum
from runtime.api.graph import ErrorPolicy, WindowNode
from runtime.api.windows import WindowSpec
from runtime.flink import _pyflink as pf
from runtime.flink import jvm
from runtime.flink.failures import Failures
from runtime.flink.jars import STEPS_JAR, steps_jar, steps_sources
from runtime.settings import load_settings
from tests.unit.test_flink_translate import (  # noqa: F401
    dead,
    flink_env,
    main,
    playback_event,
)
from tests.unit.test_flink_translate import pytestmark as flink_marks

pytestmark = flink_marks  # PyFlink's import warnings, its gateway's JVM

NOW_MS = 1_700_000_000_000


def row(user: str, window: Window, count: int) -> dict[str, Any]:
    return {"user": user, "start": window.start_ms, "count": count}


def counts_job(
    *,
    key: Any = None,
    timestamp: Any = None,
    spec: WindowSpec | None = None,
    aggregate: Any = None,
    late: bool = False,
    map_after: bool = False,
    second_reader: bool = False,
) -> Job:
    job = Job("jvm")
    source = job.source(
        "playback",
        schema="PlaybackEvent",
        timestamp=field("event_time_ms") if timestamp is None else timestamp,
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=5)),
    )
    win = source.key_by("by_user", field("user_id") if key is None else key).window(
        "w", spec or windows.tumbling(timedelta(seconds=10))
    )
    counted = win.aggregate(aggregate or Count(), output=row)
    if late:
        counted.late().sink("late", Json())
    (counted.map(lambda r: r, name="m") if map_after else counted).sink("out", Json())
    if second_reader:
        source.sink("copy", Json())
    return job


def window_plan(job: Job, codecs: Any = None) -> jvm.Plan | None:
    return jvm.plans(job, codecs or codec_factory()).get("w")


def test_a_chain_of_fields_and_a_count_runs_on_the_jvm() -> None:
    p = window_plan(counts_job())
    assert p is not None
    assert (p.key_field, p.time_field) == ("user_id", "event_time_ms")
    assert p.sink is not None and p.sink.name == "out"
    assert '"name":"PlaybackEvent"' in p.reader and p.writers
    hopping = window_plan(
        counts_job(spec=windows.hopping(timedelta(seconds=10), timedelta(seconds=5)))
    )
    assert hopping is not None
    # A step after the window: the results go to it one by one, not to a sink in batches.
    after = window_plan(counts_job(map_after=True))
    assert after is not None and after.sink is None


@pytest.mark.parametrize(
    "kw",
    [
        {"key": lambda e: e["user_id"]},
        {"timestamp": lambda e: e["event_time_ms"]},
        {"key": field("bitrate_kbps")},  # not a string
        {"key": field("error_code")},  # a union with null
        {"timestamp": field("seek_from_ms")},  # a union with null
        {"key": field("device.os")},  # not at the top level
        {"aggregate": Sum(lambda e: e["bitrate_kbps"])},
        {"aggregate": Sum(field("seek_from_ms"))},  # a union with null
        {"aggregate": Max(field("user_id"))},  # not a number
        {"aggregate": Quantiles(field("bitrate_kbps"), (0.5,))},
        {"spec": windows.session(timedelta(seconds=10))},
        {"spec": windows.tumbling(timedelta(seconds=10), early_updates=timedelta(seconds=1))},
        {"late": True},
        {"second_reader": True},
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_anything_else_keeps_the_python_steps(kw: dict[str, Any]) -> None:
    assert window_plan(counts_job(**kw)) is None


@pytest.mark.parametrize(
    ("aggregate", "kind", "value_field", "floating_result"),
    [
        (Count(), "count", None, False),
        (Sum(field("bitrate_kbps")), "sum", "bitrate_kbps", True),
        (Mean(field("buffer_ms")), "mean", "buffer_ms", True),
        (Min(field("position_ms")), "min", "position_ms", False),
        (Max(field("event_time_ms")), "max", "event_time_ms", False),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_built_in_aggregates_of_numeric_fields_run_on_the_jvm(
    aggregate: Any, kind: str, value_field: str | None, floating_result: bool
) -> None:
    p = window_plan(counts_job(aggregate=aggregate))
    assert p is not None
    assert (p.aggregate, p.value_field, p.floating) == (kind, value_field, False)
    assert p.floating_result is floating_result


def test_codecs_without_single_object_schemas_keep_the_python_steps() -> None:
    class RegistryCodecs:  # like ``connectors.wire.EndpointCodecs``: no such method
        def __call__(self, schema: str) -> Any:
            return codec_factory()(schema)

    assert window_plan(counts_job(), RegistryCodecs()) is None


def test_the_steps_jar_builds_once_from_its_sources() -> None:
    jar = steps_jar(load_settings().cache / "flink")
    assert jar.name == STEPS_JAR and steps_jar(load_settings().cache / "flink") == jar
    names = set(zipfile.ZipFile(jar).namelist())
    for source in steps_sources():
        if source.suffix == ".java":
            assert f"dev/shoal/flink/{source.stem}.class" in names
    # Avro is in it, moved out of the way of any other Avro on the class path.
    assert "dev/shoal/flink/shaded/avro/Schema.class" in names
    assert not any(n.startswith("org/apache/avro/") for n in names)


def test_translation_puts_the_jvm_steps_in_the_graph(flink_env: Any) -> None:  # noqa: F811
    env, translation, _ = flink_env(counts_job(), {"playback": 4})
    assert set(translation.jvm) == {"w"}
    plan = env.get_execution_plan()
    assert "playback.split" in plan and "w.batches" in plan and "w.records" in plan
    assert translation.sinks == {"out": "out"}
    assert set(translation.streams) == {"playback", "by_user", "w", "out"}
    env, translation, _ = flink_env(counts_job(key=lambda e: e["user_id"]), {"playback": 4})
    assert translation.jvm == {}
    assert "w.batches" not in env.get_execution_plan()


@pytest.fixture(scope="module")
def loaded_steps(flink_env: Any) -> None:  # noqa: F811
    """The steps jar on the gateway's class path (the environment's ``pipeline.jars``)."""
    flink_env(counts_job(), {"playback": 1})
    assert pf.shoal_steps_loaded()


def failures(step: str) -> Failures:
    return Failures("j", step, ErrorPolicy.DEAD_LETTER, "topic-a")


def test_refused_records_are_dead_lettered_by_the_python_decoder() -> None:
    job = counts_job()
    source = job.nodes[0]
    step = jvm.RefusedStep(
        "PlaybackEvent", source.timestamp, source.watermarks, failures("playback"), codec_factory
    )
    step.open(None)
    encode = codec_factory()("PlaybackEvent").encode
    out = list(step.process_element(pf.Row(b"\x00garbage", "not Avro"), None))
    out += list(step.process_element(pf.Row(None, "a record without a value"), None))
    out += list(step.process_element(pf.Row(encode(playback_event(5)), "time"), None))
    # One the Python decoder reads after all: dead-lettered with the JVM decoder's reason.
    good = encode(playback_event(NOW_MS))
    out += list(step.process_element(pf.Row(good, "a string that is not UTF-8"), None))
    assert main(out) == []
    letters = dead(out)
    assert [d["error_class"] for d in letters] == [
        "DecodeError",
        "DecodeError",
        "TimestampError",
        "JvmRefusedError",
    ]
    assert letters[1]["original_value"] is None
    assert letters[3]["original_value"] == good
    assert "a string that is not UTF-8" in letters[3]["error_message"]


def test_batch_output_outputs_and_encodes_every_result() -> None:
    def output(user: str, window: Window, count: int) -> Any:
        if user == "bad-output":
            raise ValueError("no")
        return row(user, window, count)

    def key(value: dict[str, Any]) -> str:
        if value["user"] == "bad-key":
            raise KeyError("no key")
        return str(value["user"])

    step = jvm.BatchOutputStep(output, failures("w"), "", failures("out"), codec_factory, key)
    step.open(None)
    batch = pf.Row(
        ["a", "bad-output", "b", "bad-key"],
        [0, 0, 10_000, 0],
        [10_000, 10_000, 20_000, 10_000],
        [3, 1, 2, 5],
    )
    out = list(step.process_element(batch, None))
    [records] = main(out)
    keys, values, times = records
    assert keys == [b"a", b"b"]
    decoded = [codec_factory()("").decode_batch([v])[0][0] for v in values]
    assert decoded == [
        {"user": "a", "start": 0, "count": 3},
        {"user": "b", "start": 10_000, "count": 2},
    ]
    assert times == [9_999, 19_999]  # a window's result carries its end - 1
    letters = dead(out)
    assert [(d["step"], d["error_class"]) for d in letters] == [
        ("w", "ValueError"),
        ("out", "KeyError"),
    ]


def test_a_sink_key_function_keys_the_batch_records() -> None:
    step = jvm.BatchOutputStep(
        row, failures("w"), "", failures("out"), codec_factory, key=lambda v: v["count"]
    )
    step.open(None)
    [records] = main(list(step.process_element(pf.Row(["a"], [0], [10_000], [7]), None)))
    assert records[0] == [b"7"]


def test_every_window_node_of_a_plan_is_the_planned_one() -> None:
    job = counts_job()
    p = window_plan(job)
    assert p is not None
    assert isinstance(p.window, WindowNode) and p.window is job.nodes[2]
    assert p.key is job.nodes[1] and p.source is job.nodes[0]


def test_the_sources_of_the_steps_jar_are_its_pom_and_java_files() -> None:
    sources = steps_sources()
    assert sources[0].name == "pom.xml"
    assert {p.name for p in sources[1:]} >= {"AvroFields.java", "Steps.java", "Batches.java"}
    assert all(isinstance(p, Path) and p.exists() for p in sources)


def java_aggregate(kind: str, floating: bool, values: list[Any]) -> Any:
    """``Aggregates.of(kind, floating)`` of the steps jar over ``values``, in the JVM."""
    steps_jar(load_settings().cache / "flink")  # built, and on the gateway's class path
    aggregates = pf.shoal_steps().Aggregates
    agg = aggregates.of(kind, floating)
    acc = agg.createAccumulator()
    for v in values:
        acc = agg.add(pf.shoal_steps_row(None, 0, float(v) if floating else v), acc)
    return agg.getResult(acc)


NAN = float("nan")


@pytest.mark.parametrize(
    "values",
    [
        [3.5, -1.25, 7.0, 1e300, 1e300, -0.0, 0.0],
        [NAN, 2.0, 1.0],
        [2.0, NAN, 1.0],
        [0.1] * 10,
        [-0.0, 0.0],
        [0.0, -0.0],
    ],
)
def test_jvm_aggregates_of_doubles_give_shoals_results(
    values: list[float], loaded_steps: None
) -> None:
    for agg, kind in ((Sum(), "sum"), (Mean(), "mean"), (Min(), "min"), (Max(), "max")):
        acc = agg.create()
        for v in values:
            acc = agg.add(acc, v)
        want, got = agg.result(acc), java_aggregate(kind, True, values)
        assert repr(got) == repr(want), kind  # NaN and the sign of zero too


def test_jvm_aggregates_of_longs_give_shoals_results(loaded_steps: None) -> None:
    values = [2**62, -(2**62), 7, 2**53 + 1, -3]
    assert java_aggregate("count", False, values) == len(values)
    assert java_aggregate("min", False, values) == min(values)
    assert java_aggregate("max", False, values) == max(values)
    acc = Sum().create()
    for v in values:
        acc = Sum().add(acc, v)
    assert java_aggregate("sum", False, values) == acc  # float(x) added, as Shoal does
