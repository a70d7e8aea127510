"""Field expressions give what the Python expressions they stand for give, and a job
written with them gives exactly what the same job with lambdas gives (and what a
brute-force count says), on both state backends."""

from __future__ import annotations

import operator
import pickle  # only to check that expressions survive being shipped to Flink workers
from collections import Counter
from datetime import timedelta
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Expr, Job, Json, WatermarkStrategy, field, windows
from runtime.aggregates import Count, Sum
from runtime.api.expressions import function_of
from runtime.testing import TestDriver

NAMES = ["a", "b", "c"]
values = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["x", "y", "z"]))
records = st.fixed_dictionaries({name: values for name in NAMES})
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le}
OPS.update({">": operator.gt, ">=": operator.ge})


@st.composite
def predicates(draw: st.DrawFn, depth: int = 2) -> tuple[Expr, Any]:
    """An expression and a plain Python function that computes the same thing."""
    kind = draw(st.sampled_from(["cmp", "in", "null"] + (["and", "or", "not"] if depth else [])))
    name = draw(st.sampled_from(NAMES))
    if kind == "cmp":
        symbol = draw(st.sampled_from(sorted(OPS)))
        if draw(st.booleans()):
            other = draw(st.sampled_from(NAMES))
            expr = OPS[symbol](field(name), field(other))
            return expr, lambda r: OPS[symbol](r[name], r[other])
        constant = draw(values)
        return OPS[symbol](field(name), constant), lambda r: OPS[symbol](r[name], constant)
    if kind == "in":
        options = draw(st.lists(values, max_size=3))
        return field(name).is_in(options), lambda r: r[name] in set(options)
    if kind == "null":
        if draw(st.booleans()):
            return field(name).is_null(), lambda r: r[name] is None
        return field(name).not_null(), lambda r: r[name] is not None
    left, lf = draw(predicates(depth - 1))
    if kind == "not":
        return ~left, lambda r: not lf(r)
    right, rf = draw(predicates(depth - 1))
    if kind == "and":
        return left & right, lambda r: bool(lf(r)) and bool(rf(r))
    return left | right, lambda r: bool(lf(r)) or bool(rf(r))


def outcome(fn: Any, record: dict[str, Any]) -> Any:
    try:
        return ("value", fn(record))
    except Exception as exc:  # e.g. None < 1: the same error either way
        return ("error", type(exc))


@settings(max_examples=400, deadline=None)
@given(predicates(), records)
def test_an_expression_gives_what_its_python_gives(case: tuple[Expr, Any], record: Any) -> None:
    expr, plain = case
    assert outcome(expr, record) == outcome(plain, record)
    assert outcome(function_of(expr), record) == outcome(plain, record)
    assert expr.fields <= set(NAMES)


def test_fields_text_and_errors() -> None:
    expr = (field("buffer_ms") > 2000) & ~field("cdn").is_in({"cdn-a"})
    assert expr.fields == {"buffer_ms", "cdn"}
    assert str(expr) == "(field('buffer_ms') > 2000) & ~field('cdn').is_in(['cdn-a'])"
    assert field("device.os")({"device": {"os": "tv"}}) == "tv"
    assert field("device.os").fields == {"device"}
    with pytest.raises(KeyError):
        field("missing")({"a": 1})
    with pytest.raises(TypeError, match="no truth value"):
        bool(field("a") == 1)
    with pytest.raises(TypeError, match="field name"):
        field("a..b")
    with pytest.raises(TypeError, match="combines expressions"):
        field("a") & True  # type: ignore[operator]
    assert function_of(field("a")) is not field("a")  # the plain getter, not the wrapper
    lam = lambda r: r  # noqa: E731
    assert function_of(lam) is lam


def test_expressions_survive_pickling() -> None:
    expr = (field("a") == 1) | field("b").is_null()
    again = pickle.loads(cloudpickle.dumps(expr))
    assert again({"a": 1, "b": 2}) and again({"a": 0, "b": None}) and not again({"a": 0, "b": 2})
    assert str(again) == str(expr)


T0 = 1_700_000_000_000


def per_cdn_job(declarative: bool) -> Job:
    """Rebuffer starts and their buffer per CDN in 10 s windows, with expressions or lambdas."""
    job = Job("rebuffers")
    events = job.source(
        "playback",
        schema="",
        timestamp=field("t") if declarative else (lambda e: e["t"]),
        watermarks=WatermarkStrategy.bounded(timedelta(seconds=1)),
    )
    if declarative:
        kept = events.filter(
            (field("event_type") == "rebuffer_start") & field("buffer_ms").not_null()
        )
        keyed = kept.key_by("by_cdn", field("cdn"))
    else:
        kept = events.filter(
            lambda e: e["event_type"] == "rebuffer_start" and e["buffer_ms"] is not None
        )
        keyed = kept.key_by("by_cdn", lambda e: e["cdn"])
    win = keyed.window("per_10s", windows.tumbling(timedelta(seconds=10)))
    (
        win.aggregate(
            Count(), output=lambda cdn, w, n: {"cdn": cdn, "start": w.start_ms, "n": n}
        ).sink("counts", Json())
    )
    buffered = keyed.window("buffer_10s", windows.tumbling(timedelta(seconds=10)))
    buffered.aggregate(
        Sum(field("buffer_ms") if declarative else (lambda e: e["buffer_ms"])),
        output=lambda cdn, w, total: {"cdn": cdn, "start": w.start_ms, "total": total},
    ).sink("buffer", Json())
    return job


event_lists = st.lists(
    st.fixed_dictionaries(
        {
            "event_type": st.sampled_from(["rebuffer_start", "play", "heartbeat"]),
            "cdn": st.sampled_from(["cdn-a", "cdn-b", "cdn-c"]),
            "buffer_ms": st.one_of(st.none(), st.integers(0, 5000)),
            "t": st.integers(T0, T0 + 60_000),
        }
    ),
    max_size=60,
)


def run(job: Job, state: str, events: list[dict[str, Any]]) -> tuple[Any, ...]:
    driver = TestDriver(job, state=state, start_ms=T0)
    for event in events:
        driver.send("playback", event)
    driver.advance_watermark(T0 + 10**6)
    out = (
        driver.output("counts"),
        driver.output("buffer"),
        driver.late("per_10s"),
        driver.late("buffer_10s"),
        driver.counters(),
    )
    driver.close()
    return out


@pytest.mark.parametrize("state", ["memory", "rocksdb"])
@settings(max_examples=25, deadline=None)
@given(events=event_lists)
def test_a_job_with_expressions_equals_the_same_job_with_lambdas_and_the_reference(
    state: str, events: list[dict[str, Any]]
) -> None:
    # Out of order (some records late): both ways agree on outputs, late records, counters.
    assert run(per_cdn_job(True), state, events) == run(per_cdn_job(False), state, events)
    # In order (nothing late): the outputs are the brute-force counts and sums.
    ordered = sorted(events, key=lambda e: e["t"])
    counts, buffers, late, late_buffer, _ = run(per_cdn_job(True), state, ordered)
    assert late == late_buffer == []
    n: Counter[tuple[str, int]] = Counter()
    total: Counter[tuple[str, int]] = Counter()
    for e in ordered:
        if e["event_type"] == "rebuffer_start" and e["buffer_ms"] is not None:
            at = (e["cdn"], e["t"] - e["t"] % 10_000)
            n[at] += 1
            total[at] += e["buffer_ms"]
    assert {(o["cdn"], o["start"]): o["n"] for o in counts} == dict(n)
    assert {(o["cdn"], o["start"]): o["total"] for o in buffers} == dict(total)


def test_plain_fields_say_their_path_and_nothing_else_does() -> None:
    from runtime.api.expressions import path_of

    assert path_of(field("user_id")) == ("user_id",)
    assert path_of(field("device.os")) == ("device", "os")
    assert path_of(field("a") == 1) is None
    assert path_of(field("a").is_null()) is None
    assert path_of(~(field("a") == 1)) is None
    assert path_of(lambda r: r["a"]) is None
