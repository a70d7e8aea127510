"""The typed job with mistakes a type checker must catch, one per marked line."""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from runtime import Job, Json, Window, windows
from runtime.aggregates import Mean, Sum
from tests.unit.typing_cases.ok_job import Play, Sample, UserMinute, per_minute, sample

job = Job("typed_example_wrong")
plays = job.source("playback", schema="PlaybackEvent", record=Play)
samples = plays.map(sample, name="samples")

# A field of the previous step's records, not of this one's.
samples.key_by("by_user", lambda s: s["user_id"])  # mypy: has no key "user_id"

# A field read as the wrong type: the user id is a string, not a number.
by_user = samples.key_by("by_user_2", lambda s: s["user"])
by_user.window("sum", windows.tumbling(timedelta(minutes=1))).aggregate(
    Sum(of=lambda s: s["user"])  # mypy: Incompatible return value type
)


# An output function for another key type: the key is a str.
def per_user_id(user: int, window: Window, mean: float | None) -> UserMinute:
    """Takes an int key."""
    return {"user": str(user), "start_ms": window.start_ms, "mean_mbps": mean}


by_user.window("mean", windows.tumbling(timedelta(minutes=1))).aggregate(
    Mean(of=lambda s: s["mbps"]),
    output=per_user_id,  # mypy: "Callable[[int, Window, float | None], UserMinute]"
)

# A step that expects the records of two steps back.
samples.map(sample, name="again")  # mypy: "Callable[[Play], Sample]"

# Session windows retract merged sessions: their output function also gets None.
by_user.window("sessions", windows.session(timedelta(minutes=5))).aggregate(
    Sum(of=lambda s: s["mbps"]),
    output=lambda user, window, total: {"user": user, "total": total + 1},  # mypy: "None"
)

# The sink's key reads a field the stream's records do not have.
samples.sink("out", Json(), key=lambda s: s["user_id"])  # mypy: has no key "user_id"


def untyped_state_use(s: Sample) -> None:
    """A sample is not a PlaybackEvent."""
    per_minute(s["user"], Window(0, 1), s["event_time_ms"])  # mypy: has no key "event_time_ms"


# Only keyed streams join: key the samples first.
WEEK = (timedelta(0), timedelta(days=7))
samples.join(by_user, "unkeyed", within=WEEK)  # mypy: "Never"


# A left join's output also gets None for the right side.
def strict_pair(user: str, left: Sample, right: Sample) -> float:
    """Ignores unmatched left records."""
    return left["mbps"] - right["mbps"]


by_user.join(by_user, "self", within=WEEK, how="left", output=strict_pair)  # mypy: No overload


# A left table join's output also gets None for the table value.
class Plan(TypedDict):
    """A table's values."""

    tier: str


def strict_plan(user: str, s: Sample, plan: Plan) -> str:
    """Ignores users without a plan."""
    return plan["tier"]


plans = job.table("plans", schema="Plan", record=Plan, kind="global")
by_user.join_table(plans, "planned", how="left", output=strict_plan)  # mypy: No overload
