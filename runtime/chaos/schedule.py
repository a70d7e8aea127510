"""When faults happen: seeded random intervals, so a chaos run can be repeated."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["kill", "broker_pause", "sink_stall"]


@dataclass(frozen=True)
class Fault:
    """One planned fault: ``kind`` at ``at_s`` seconds after the run starts.

    ``pick`` is a random number in [0, 1) drawn with the plan: which worker a kill
    takes among those running then (so the choice is seeded too).
    """

    at_s: float
    kind: FaultKind
    pick: float = 0.0


def plan(
    seed: int,
    duration_s: float,
    every_s: float,
    *,
    broker_pause: bool = False,
    sink_stall: bool = False,
) -> list[Fault]:
    """The faults of a run: one every ``every_s`` on average (uniform in 0.5x..1.5x).

    Most faults are kills. With ``broker_pause`` (``sink_stall``) one fault near the
    middle (the last third) of the run pauses the broker (stalls the sink), and further
    ones are drawn with probability 1/10 each, never two pauses in a row.

    Raises:
        ValueError: ``duration_s`` or ``every_s`` is not positive.
    """
    if duration_s <= 0 or every_s <= 0:
        raise ValueError("duration and interval must be positive")
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = rng.uniform(0.5, 1.5) * every_s
    while t < duration_s:
        kind: FaultKind = "kill"
        roll = rng.random()
        previous = faults[-1].kind if faults else "kill"
        if previous == "kill" and broker_pause and roll < 0.1:
            kind = "broker_pause"
        elif previous == "kill" and sink_stall and 0.1 <= roll < 0.2:
            kind = "sink_stall"
        faults.append(Fault(round(t, 3), kind, rng.random()))
        t += rng.uniform(0.5, 1.5) * every_s
    _ensure(faults, "broker_pause", broker_pause, duration_s / 2)
    _ensure(faults, "sink_stall", sink_stall, 2 * duration_s / 3)
    return faults


def _ensure(faults: list[Fault], kind: FaultKind, wanted: bool, near_s: float) -> None:
    """Turn the kill closest to ``near_s`` into ``kind`` if the draw gave none."""
    if not wanted or any(f.kind == kind for f in faults):
        return
    kills = [i for i, f in enumerate(faults) if f.kind == "kill"]
    if not kills:
        return
    i = min(kills, key=lambda j: abs(faults[j].at_s - near_s))
    faults[i] = Fault(faults[i].at_s, kind, faults[i].pick)
