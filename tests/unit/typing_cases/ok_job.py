"""A typed job: average bitrate per user and minute, from a stream typed by a TypedDict."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TypedDict

from runtime import Job, Json, ProcessContext, StateDescriptor, ValueState, Window, windows
from runtime.aggregates import Mean


class Play(TypedDict):
    """The input: the fields of a PlaybackEvent this job reads."""

    user_id: str
    event_type: str
    event_time_ms: int
    bitrate_kbps: int


class Sample(TypedDict):
    """After the first step: who, and the bitrate in Mbit/s."""

    user: str
    mbps: float


class UserMinute(TypedDict):
    """The output of the window step."""

    user: str
    start_ms: int
    mean_mbps: float | None


LAST = ValueState[float | None]("last")


class Changes:
    """Keyed by user: emits a sample's bitrate when it differs from the user's last one."""

    states: tuple[StateDescriptor, ...] = (LAST,)

    def process(self, value: Sample, ctx: ProcessContext[str]) -> Iterable[float]:
        """Compare with the last bitrate of the user."""
        handle = ctx.state(LAST)
        if handle.get() == value["mbps"]:
            return []
        handle.set(value["mbps"])
        return [value["mbps"]]

    def on_timer(self, ts_ms: int, ctx: ProcessContext[str]) -> Iterable[float]:
        """No timers."""
        return []


def sample(e: Play) -> Sample:
    """The first step."""
    return {"user": e["user_id"], "mbps": e["bitrate_kbps"] / 1000}


def per_minute(user: str, window: Window, mean: float | None) -> UserMinute:
    """The window step's output."""
    return {"user": user, "start_ms": window.start_ms, "mean_mbps": mean}


job = Job("typed_example")
plays = job.source(
    "playback", schema="PlaybackEvent", record=Play, timestamp=lambda e: e["event_time_ms"]
)
samples = plays.filter(lambda e: e["event_type"] == "heartbeat", name="heartbeats").map(
    sample, name="samples"
)
by_user = samples.key_by("by_user", lambda s: s["user"])
minutes = by_user.window("per_minute", windows.tumbling(timedelta(minutes=1))).aggregate(
    Mean(of=lambda s: s["mbps"]), output=per_minute
)
minutes.filter(lambda m: m["mean_mbps"] is not None, name="with_samples").sink(
    "user-minutes", Json(), key=lambda m: m["user"]
)
changes = by_user.process("bitrate_changes", Changes())
changes.map(lambda mbps: {"mbps": mbps}, name="as_record").sink("changes", Json())
minutes.late("late_samples").map(lambda s: s["user"], name="late_users").sink("late", Json())
plays.sink("copies", Json())


class Pairing(TypedDict):
    """The output of the join step: a sample and the bitrate change after it, if any."""

    user: str
    sample_mbps: float
    next_change_mbps: float | None


def pairing(user: str, s: Sample, change: float | None) -> Pairing:
    """The join step's output (a left join: the change may be missing)."""
    return {"user": user, "sample_mbps": s["mbps"], "next_change_mbps": change}


joined = by_user.join(
    changes, "sample_then_change", within=(timedelta(0), timedelta(minutes=1)), how="left",
    output=pairing,
)  # fmt: skip
joined.filter(lambda p: p["next_change_mbps"] is not None, name="changed").sink(
    "paired", Json(), key=lambda p: p["user"]
)
joined.late_right("late_changes").map(lambda mbps: {"mbps": mbps + 0.0}, name="late_mbps").sink(
    "late-changes", Json()
)


class Plan(TypedDict):
    """A user's plan, from a global table on a compacted topic."""

    tier: str


def with_plan(user: str, s: Sample, plan: Plan | None) -> dict[str, str | float]:
    """The table join's output (a left join: the plan may be missing)."""
    return {"user": user, "mbps": s["mbps"], "tier": "none" if plan is None else plan["tier"]}


plans = job.table("plans", schema="Plan", record=Plan, kind="global")
by_user.join_table(plans, "with_plan", how="left", output=with_plan).sink("planned", Json())
samples.join_table(plans, "sample_plan", key=lambda s: s["user"]).sink("raw_planned", Json())
