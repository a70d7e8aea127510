"""The worker's side of the control protocol, driven phase by phase.

``FakeChannel`` stands for the control topic and ``FakeSource`` for the worker's
consumer (pause state and assignment only); the broker-backed protocol runs in
tests/integration/test_savepoints.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from runtime.engine.control import ControlAgent


class FakeChannel:
    """Records sent; hands out queued ones."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.queue: list[tuple[str, dict[str, Any] | None]] = []

    def send(self, key: str, value: Mapping[str, Any] | None) -> None:
        self.sent.append((key, value))

    def read(self, timeout_s: float = 0.0) -> list[tuple[str, dict[str, Any] | None]]:
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        pass


class FakeSource:
    """Assignment and paused partitions of a consumer."""

    def __init__(self, assigned: set[tuple[str, int]]) -> None:
        self.assignment = set(assigned)
        self.paused: set[tuple[str, int]] = set()
        self.polls = 0

    def pause(self, pairs: list[tuple[str, int]]) -> None:
        self.paused.update(pairs)

    def resume(self, pairs: list[tuple[str, int]]) -> None:
        self.paused.difference_update(pairs)

    def member_id(self) -> str:
        return "m-1"

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        self.polls += 1
        return []

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        raise AssertionError("nothing was polled, so nothing is sought")


class FakeWorker:
    """Counts checkpoints."""

    internal_topics = {"g.by_user.repartition": "by_user.repartition"}

    def __init__(self, fail: bool = False) -> None:
        self.checkpoints = 0
        self.last_progress = 0.0
        self.fail = fail

    def checkpoint(self) -> None:
        self.checkpoints += 1
        if self.fail:
            raise RuntimeError("disk full")


INPUTS = {("in", 0), ("in", 1)}
INTERNAL = {("g.by_user.repartition", 0), ("g.by_user.repartition", 1)}


def agent(worker: FakeWorker | None = None) -> tuple[ControlAgent, FakeChannel, FakeSource]:
    channel, source = FakeChannel(), FakeSource(INPUTS | INTERNAL)
    a = ControlAgent(worker or FakeWorker(), source, channel, serve_calls=lambda: None,
                     worker_id="w0", announce={"job": "j"}, clock=lambda: 1_000)  # fmt: skip
    a._next_read = 0.0
    return a, channel, source


def command(phase: str, cmd: str = "c1", deadline: int = 10_000) -> tuple[str, dict[str, Any]]:
    return "command", {"id": cmd, "phase": phase, "deadline_ms": deadline}


def step(a: ControlAgent) -> bool:
    a._next_read = 0.0
    return a.should_stop()


def test_pause_hold_resume() -> None:
    a, channel, source = agent()
    a.start()
    assert channel.sent[0][0] == "job"
    channel.queue = [command("pause1")]
    assert not step(a)
    assert source.paused == INPUTS and a.worker.checkpoints == 1  # type: ignore[attr-defined]
    assert channel.sent[-1][0] == "ack.c1.pause1.m-1" and channel.sent[-1][1]["error"] is None
    # A partition assigned while paused is paused too.
    source.assignment.add(("in", 2))
    step(a)
    assert ("in", 2) in source.paused
    # hold: everything paused until the next phase arrives (queued before the hold reads).
    channel.queue = [command("hold1")]

    def read(timeout_s: float = 0.0) -> list[Any]:
        if not channel.sent[-1][0].startswith("ack.c1.hold1"):
            out, channel.queue = channel.queue, []
            return out
        assert source.paused == source.assignment  # held: nothing is fetched
        return [command("resume")]

    channel.read = read  # type: ignore[method-assign]
    assert not step(a)
    assert source.paused == set() and a.worker.checkpoints == 2  # type: ignore[attr-defined]
    assert source.polls >= 1


def test_phases_are_answered_once_and_stop_ends_the_loop() -> None:
    a, channel, source = agent()
    channel.queue = [command("pause1"), command("pause1")]
    step(a)
    assert [k for k, _ in channel.sent].count("ack.c1.pause1.m-1") == 1
    channel.queue = [command("stop")]
    assert step(a) and a.should_stop()
    assert channel.sent[-1][0] == "ack.c1.stop.m-1"


def test_a_hold_past_its_deadline_resumes_on_its_own() -> None:
    a, channel, source = agent()
    channel.queue = [command("hold1", deadline=500)]  # the clock says 1000
    assert not step(a)
    assert source.paused == set()


def test_a_failed_checkpoint_is_acked_then_raised() -> None:
    a, channel, _ = agent(FakeWorker(fail=True))
    channel.queue = [command("pause1")]
    with pytest.raises(RuntimeError, match="disk full"):
        step(a)
    assert channel.sent[-1][1]["error"] == "RuntimeError: disk full"
