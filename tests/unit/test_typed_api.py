"""The typed job API: what a type checker sees, and that the types change nothing at run time.

``mypy --strict`` runs over two small jobs (``tests/unit/typing_cases``): one typed
end to end must check cleanly; the other makes one mistake per marked line (a field
of another step, a field read as the wrong type, an output function for another
key type, a session output that ignores retractions ...) and mypy must report
exactly those lines. The typed job then runs in the test driver against a
brute-force reference, on both backends. Sink formats, their deprecated older
spelling and the choices of guarantee and state backend are checked here too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, get_type_hints

import pytest

from jobs.records import InteractionEvent, PlaybackEvent, TitleCatalogEntry
from runtime import Avro, ConfigError, Job, JobDefinitionError, Json, ValueState
from runtime.aggregates import Count, Mean, Quantiles, Sum
from runtime.api.choices import (
    GUARANTEES,
    STATE_BACKENDS,
    check_guarantee,
    check_state_backend,
)
from runtime.api.functions import ListState, MapState
from runtime.api.graph import SinkNode
from runtime.generator import Generator, GeneratorConfig
from runtime.testing import TestDriver
from schemas import load_schema
from tests.unit.typing_cases import ok_job

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parent / "typing_cases"
ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")
MARK = re.compile(r"# mypy: (?P<expect>.+)$")
T0 = 1_735_689_600_000  # a minute boundary
MINUTE = 60_000


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[str]]]:
    """``mypy --strict`` (the project's configuration) over both cases: file -> line -> errors."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    files = [str(CASES / "ok_job.py"), str(CASES / "wrong_job.py")]
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 2: mypy itself failed
    out: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in run.stdout.splitlines():
        m = ERROR.match(line)
        if m:
            out[Path(m["path"]).name][int(m["line"])].append(m["message"])
    return out


def test_a_job_typed_end_to_end_type_checks(mypy_errors: dict[str, dict[int, list[str]]]) -> None:
    assert dict(mypy_errors["ok_job.py"]) == {}


def test_mypy_catches_each_wrong_type_across_steps(
    mypy_errors: dict[str, dict[int, list[str]]],
) -> None:
    marks = {
        n: m["expect"]
        for n, text in enumerate((CASES / "wrong_job.py").read_text().splitlines(), 1)
        if (m := MARK.search(text))
    }
    assert len(marks) >= 7
    got = mypy_errors["wrong_job.py"]
    assert set(got) == set(marks), (sorted(got), sorted(marks))  # those lines, no others
    for line, expect in marks.items():
        assert any(expect in message for message in got[line]), (line, expect, got[line])


# --- the typed job at run time ----------------------------------------------------------


TEMPLATE = next(
    r.value for r in Generator(GeneratorConfig(seed=1, users=1)) if r.stream == "playback"
)


def _play(n: int, user: str, kind: str, t: int, kbps: int) -> dict[str, Any]:
    """A valid PlaybackEvent with the fields the typed job reads set."""
    return {**TEMPLATE, "user_id": user, "event_type": kind, "event_time_ms": t,
            "bitrate_kbps": kbps, "event_id": f"e{n}"}  # fmt: skip


@pytest.mark.parametrize("state", STATE_BACKENDS)
def test_the_typed_job_runs_and_matches_brute_force(state: str) -> None:
    kinds = ["heartbeat", "heartbeat", "pause", "heartbeat"]
    events = [
        _play(n, f"u{n % 3}", kinds[n % 4], T0 + n * 7_001, 1_000 + 500 * ((n * 7) % 5))
        for n in range(120)
    ]
    driver = TestDriver(ok_job.job, state=check_state_backend(state), start_ms=T0 + 10 * MINUTE)
    try:
        driver.send_many("playback", events)
        driver.advance_watermark(T0 + 60 * MINUTE)
        minutes = driver.output("user-minutes")
        changes = driver.output("changes")
        copies = driver.output("copies")
    finally:
        driver.close()
    # brute force: the heartbeats' mean Mbit/s per user and minute, and per user the
    # bitrates that differ from that user's previous heartbeat
    samples: dict[tuple[str, int], list[float]] = defaultdict(list)
    want_changes: list[float] = []
    last: dict[str, float] = {}
    for e in events:
        if e["event_type"] != "heartbeat":
            continue
        user, t, mbps = e["user_id"], e["event_time_ms"], e["bitrate_kbps"] / 1000
        samples[(user, t - t % MINUTE)].append(mbps)
        if last.get(user) != mbps:
            want_changes.append(mbps)
        last[user] = mbps
    want = {k: sum(v) / len(v) for k, v in samples.items()}
    got = {(m["user"], m["start_ms"]): m["mean_mbps"] for m in minutes}
    assert len(minutes) == len(got) == len(want) > 10
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k], rel=1e-12) for k in want)
    assert sorted(c["mbps"] for c in changes) == sorted(want_changes)
    assert copies == events


# --- sink formats -------------------------------------------------------------------------


def test_sink_formats_name_the_schema_the_engines_know() -> None:
    job = Job("formats")
    stream = job.source("in", schema="PlaybackEvent")
    stream.sink("as_avro", Avro("PlaybackEvent"))
    stream.sink("as_json", Json(), key=lambda e: e["user_id"])
    stream.sink("keyword", format=Json())
    sinks = {n.name: n for n in job.sinks}
    assert [(n.name, n.schema) for n in job.sinks] == [
        ("as_avro", "PlaybackEvent"), ("as_json", ""), ("keyword", ""),
    ]  # fmt: skip
    assert isinstance(sinks["as_json"], SinkNode) and sinks["as_json"].key is not None


def test_the_old_schema_spelling_still_works_with_a_deprecation_warning() -> None:
    job = Job("old_spelling")
    stream = job.source("in", schema="PlaybackEvent")
    with pytest.warns(DeprecationWarning, match=r"Avro\('QoeMetric'\)"):
        stream.sink("old_avro", schema="QoeMetric")
    with pytest.warns(DeprecationWarning, match=r"Json\(\)"):
        stream.sink("old_json", schema=None)
    assert [(n.name, n.schema) for n in job.sinks] == [("old_avro", "QoeMetric"), ("old_json", "")]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.sink("x"), "needs a format"),
        (lambda s: s.sink("x", "QoeMetric"), "needs a format"),
        (lambda s: s.sink("x", Json(), schema=None), "not both"),
        (lambda s: s.sink("x", schema=3), "record name or None"),
        (lambda s: s.sink("x", Avro("")), "needs a record name"),
    ],
)
def test_a_missing_or_wrong_sink_format_is_a_one_line_error(call: object, message: str) -> None:
    stream = Job("bad_format").source("in", schema="PlaybackEvent")
    with pytest.raises(JobDefinitionError, match=message) as caught:
        call(stream)  # type: ignore[operator]
    assert "\n" not in str(caught.value)


# --- choices and generic descriptors --------------------------------------------------------


def test_guarantees_and_backends_are_checked_in_one_place() -> None:
    assert GUARANTEES == ("exactly_once", "at_least_once")
    assert STATE_BACKENDS == ("rocksdb", "memory")
    assert [check_guarantee(g) for g in GUARANTEES] == list(GUARANTEES)
    with pytest.raises(ConfigError, match="unknown guarantee 'exactly-once'"):
        check_guarantee("exactly-once")
    with pytest.raises(ConfigError, match="unknown state backend 'disk': use rocksdb or memory"):
        check_state_backend("disk")
    with pytest.raises(ConfigError, match="unknown state backend 'disk'"):
        TestDriver(Job("j"), state="disk")  # type: ignore[arg-type]


def test_typed_descriptors_and_aggregates_are_the_same_objects_at_run_time() -> None:
    assert ValueState[int]("n", 0) == ValueState("n", 0)
    assert ValueState[int | None]("n").default is None
    assert MapState[str, int]("m") == MapState("m")
    assert ListState[float]("l") == ListState("l")
    assert Quantiles[float]((0.5,)) == Quantiles((0.5,))
    assert Sum[float]() == Sum() and Mean[float]() == Mean()
    agg = Sum(of=lambda e: e["v"])
    assert agg.result(agg.add(agg.add(agg.create(), {"v": 2}), {"v": 3.5})) == 5.5
    assert Count().add(Count().create(), object()) == 1


# --- what ships ---------------------------------------------------------------------------


def test_the_typed_packages_ship_py_typed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    for package in ("runtime", "connectors", "jobs"):
        assert "py.typed" in package_data[package], package
        assert (ROOT / package / "py.typed").is_file(), package


AVRO_TYPES: dict[str, object] = {"string": str, "long": int, "int": int, "double": float}


def _python_type(avro: Any) -> object:
    """The type the decoder gives a field of Avro type ``avro`` (as ``jobs.records`` spells it)."""
    if isinstance(avro, list):  # ["null", X]
        (inner,) = [t for t in avro if t != "null"]
        return _python_type(inner) | None  # type: ignore[operator]
    if isinstance(avro, dict) and avro["type"] == "enum":
        return Literal[tuple(avro["symbols"])]
    return AVRO_TYPES[avro]


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("PlaybackEvent", PlaybackEvent),
        ("InteractionEvent", InteractionEvent),
        ("TitleCatalogEntry", TitleCatalogEntry),
    ],
)
def test_the_typed_views_of_input_records_match_their_schemas(name: str, typed: type) -> None:
    schema = load_schema(name)
    hints = get_type_hints(typed)
    assert list(hints) == [f["name"] for f in schema["fields"]]
    for f in schema["fields"]:
        assert hints[f["name"]] == _python_type(f["type"]), f["name"]
