"""The verdict: what the job committed against what its own graph gives in batch.

Outputs are compared key by key (sink topic, message key) as multisets of values: an
output of the reference with no equal output under its key is ``lost``, an output of the job
with no equal output in the reference is ``duplicated`` (an extra output: delivered
twice, or a value the reference does not have, which then also counts one ``lost``).
Values are compared in a canonical form (:func:`canonical`): mappings by sorted keys,
floats to 12 significant digits (a restored aggregate may add the same numbers in
another order).

A job whose outputs depend on processing time cannot be judged this way: a replay
cannot see the wall clock the job saw (:func:`wall_clock_steps`).
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.api.graph import FilterNode, FlatMapNode, KeyByNode, MapNode, ProcessNode
from runtime.api.job import Job

#: Names that show a step reads processing time (wall clock).
_WALL_CLOCK_NAMES = ("register_processing_time", "processing_time_ms", "time.time", "datetime.now")

Output = tuple[str, str, str]  # sink, canonical key, canonical value

EXIT_FAIL = 1
EXIT_CANNOT_JUDGE = 3


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing the job's outputs with the reference."""

    outputs: int
    expected: int
    lost: int
    duplicated: int
    examples: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Nothing lost and nothing duplicated."""
        return self.lost == 0 and self.duplicated == 0


def canonical(value: Any) -> str:
    """A value's comparable text: sorted mapping keys, floats to 12 significant digits."""
    return json.dumps(_normal(value), sort_keys=True, separators=(",", ":"))


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return repr(value)


def compare(reference: Iterable[Output], actual: Iterable[Output], examples: int = 5) -> Comparison:
    """Compare outputs as multisets per (sink, key).

    Args:
        reference: what the job's graph gives over the input range (the replay).
        actual: what the job committed to its sinks over the same range.
        examples: how many differences to describe.
    """
    want = Counter(reference)
    got = Counter(actual)
    missing = want - got
    extra = got - want
    shown = [f"lost {s} key={k} value={v[:160]}" for s, k, v in list(missing)[:examples]]
    shown += [f"extra {s} key={k} value={v[:160]}" for s, k, v in list(extra)[:examples]]
    return Comparison(
        outputs=sum(got.values()),
        expected=sum(want.values()),
        lost=sum(missing.values()),
        duplicated=sum(extra.values()),
        examples=tuple(shown),
    )


def wall_clock_steps(job: Job) -> list[str]:
    """Why the job's outputs may depend on the wall clock: one line per step, or none.

    A step says so itself with ``wall_clock = True`` on its function; otherwise a
    process function whose source reads processing time (timers or the clock) counts.
    The source is read as text, never run.
    """
    found = []
    for node in job.nodes:
        if not isinstance(node, (MapNode, FilterNode, FlatMapNode, KeyByNode, ProcessNode)):
            continue
        fn: object = node.fn
        # the flag is the user's own attribute on their function, not a capability of ours
        if getattr(fn, "wall_clock", False) is True:
            found.append(f"step {node.name!r} is flagged wall_clock")
            continue
        if not isinstance(node, ProcessNode):
            continue
        try:
            text = inspect.getsource(type(fn))
        except (OSError, TypeError):
            continue
        hits = [name for name in _WALL_CLOCK_NAMES if name in text]
        if hits:
            found.append(f"step {node.name!r} uses {hits[0]} (processing time)")
    return found


def summary_line(
    kills: int,
    broker_pauses: int,
    sink_stalls: int,
    events: int,
    comparison: Comparison,
) -> str:
    """The one line a chaos run ends with."""
    verdict = "pass" if comparison.passed else "fail"
    return (
        f"chaos: kills={kills} broker_pauses={broker_pauses} sink_stalls={sink_stalls} "
        f"events={events} outputs={comparison.outputs} lost={comparison.lost} "
        f"duplicated={comparison.duplicated} verdict={verdict}"
    )
