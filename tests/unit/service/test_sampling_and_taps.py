"""Sampling of taps, and the bounded per-subscriber queues that feed SSE streams."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from runtime.api.errors import ConfigError
from runtime.service.filters import compile_filter
from runtime.service.sampling import Sampler, SampleSpec, parse_sample
from runtime.service.taps import Subscription, TapHub, TooManySubscribers


@pytest.mark.parametrize(
    "text,fraction,every",
    [
        (None, 1.0, 1),
        ("", 1.0, 1),
        ("1", 1.0, 1),
        ("0.25", 0.25, 1),
        ("1e-3", 0.001, 1),
        ("1/10", 1.0, 10),
        (" 1 / 3 ", 1.0, 3),
        ("1/1", 1.0, 1),
    ],
)
def test_parse_sample(text: str | None, fraction: float, every: int) -> None:
    spec = parse_sample(text)
    assert (spec.fraction, spec.every) == (fraction, every)


@pytest.mark.parametrize("text", ["0", "-0.5", "1.5", "2", "nan", "inf", "1/0", "2/10", "x", "1/"])
def test_bad_samples_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="sample"):
        parse_sample(text)


def test_one_in_n_keeps_exactly_every_nth() -> None:
    sampler = Sampler(SampleSpec(every=4))
    kept = [i for i in range(20) if sampler.keep()]
    assert kept == [0, 4, 8, 12, 16]
    assert str(SampleSpec(every=4)) == "1/4" and str(SampleSpec(fraction=0.5)) == "0.5"


def test_fraction_keeps_about_that_share() -> None:
    sampler = Sampler(SampleSpec(fraction=0.1), random.Random(3))
    kept = sum(sampler.keep() for _ in range(20_000))
    assert 1_800 < kept < 2_200
    everything = Sampler(SampleSpec())
    assert all(everything.keep() for _ in range(100))


def _batch(n: int, start: int = 0) -> list[tuple[Any, Any, int, Any]]:
    return [
        (f"k{i}", {"i": i, "even": i % 2 == 0}, 1000 + i, None) for i in range(start, start + n)
    ]


def _sub(loop: asyncio.AbstractEventLoop, **kw: Any) -> Subscription:
    args: dict[str, Any] = {
        "predicate": None,
        "sampler": Sampler(SampleSpec()),
        "limit": None,
        "capacity": 100,
    }
    args.update(kw)
    return Subscription("step", loop=loop, **args)


def test_slow_subscribers_lose_the_oldest_records_and_count_them() -> None:
    loop = asyncio.new_event_loop()
    try:
        sub = _sub(loop, capacity=5)
        sub.offer(_batch(12))
        assert sub.dropped == 7 and sub.accepted == 12
        assert [k for k, _, _ in sub.drain(100)] == ["k7", "k8", "k9", "k10", "k11"]
        assert sub.drain(100) == []
    finally:
        loop.close()


def test_filter_sample_and_limit_apply_in_that_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        sub = _sub(
            loop, predicate=compile_filter("even"), sampler=Sampler(SampleSpec(every=2)), limit=3
        )
        sub.offer(_batch(10))  # even: 0 2 4 6 8; one in two of them: 0 4 8
        sub.offer(_batch(10, 10))  # the limit is reached: nothing more is taken
        assert [v["i"] for _, v, _ in sub.drain(100)] == [0, 4, 8]
        assert sub.exhausted
    finally:
        loop.close()


def test_a_failing_predicate_never_reaches_the_engine() -> None:
    loop = asyncio.new_event_loop()

    def boom(k: Any, v: Any, t: int) -> bool:
        raise RuntimeError("broken")

    try:
        sub = _sub(loop, predicate=boom)
        sub.offer(_batch(3))  # must not raise on the worker thread
        assert sub.errors == 1 and sub.drain(10) == []
    finally:
        loop.close()


def test_the_hub_installs_a_tap_only_while_someone_listens() -> None:
    loop = asyncio.new_event_loop()
    taps: dict[str, Any] = {}
    hub = TapHub(taps, ["a", "b"], max_subscribers=2, background=False)
    try:
        s1 = hub.subscribe("a", None, Sampler(SampleSpec()), None, loop)
        s2 = hub.subscribe("a", compile_filter("even"), Sampler(SampleSpec()), None, loop)
        assert set(taps) == {"a"}
        with pytest.raises(TooManySubscribers):
            hub.subscribe("b", None, Sampler(SampleSpec()), None, loop)
        with pytest.raises(KeyError):
            hub.subscribe("nope", None, Sampler(SampleSpec()), None, loop)
        taps["a"]("a", _batch(4))  # what the engine does on the worker thread
        assert s1.accepted == 0  # nothing is filtered there: the pump does it
        assert hub.pump() == 1
        assert len(s1.drain(10)) == 4 and len(s2.drain(10)) == 2
        hub.unsubscribe(s1)
        assert set(taps) == {"a"}
        hub.unsubscribe(s2)
        hub.unsubscribe(s2)  # twice is harmless
        assert taps == {}
        assert hub.stats() == {"a": (0, 6, 0)}
    finally:
        loop.close()


def test_history_is_replayed_once_then_records_go_live() -> None:
    loop = asyncio.new_event_loop()
    taps: dict[str, Any] = {}
    hub = TapHub(taps, ["a"], background=False)
    try:
        hub.keep_history("a", 5)
        assert "a" in taps and hub.history_size("a") == 5
        taps["a"]("a", _batch(8))  # nobody listens: only the last 5 are kept
        hub.pump()
        sub = hub.subscribe(
            "a", compile_filter("even"), Sampler(SampleSpec()), None, loop, recent=2
        )
        assert sub.replayed == 2
        taps["a"]("a", _batch(2, 8))
        hub.pump()
        assert [v["i"] for _, v, _ in sub.drain(10)] == [4, 6, 8]
        hub.unsubscribe(sub)
        assert "a" in taps  # history keeps its tap
        hub.close()
        assert taps == {}
    finally:
        loop.close()


def test_wait_wakes_on_records_from_another_thread() -> None:
    async def scenario() -> tuple[bool, bool]:
        sub = _sub(asyncio.get_running_loop())
        timed_out = await sub.wait(0.05)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: loop.run_in_executor(None, sub.offer, _batch(1)))
        woke = await sub.wait(5)
        return timed_out, woke

    timed_out, woke = asyncio.run(scenario())
    assert timed_out is False and woke is True


def test_history_keeps_only_what_its_filter_keeps() -> None:
    loop = asyncio.new_event_loop()
    taps: dict[str, Any] = {}
    hub = TapHub(taps, ["a"], background=False)
    try:
        hub.keep_history("a", 3, compile_filter("even"))
        taps["a"]("a", _batch(10))
        hub.pump()
        sub = hub.subscribe("a", None, Sampler(SampleSpec()), None, loop, recent=10)
        assert [v["i"] for _, v, _ in sub.drain(10)] == [4, 6, 8]
        hub.close()
    finally:
        loop.close()
