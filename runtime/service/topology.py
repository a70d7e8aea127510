"""``/topology``: the job graph with live counters, and which page panels the job feeds.

The page is one for every job. It finds its panels by the Avro schema of the job's
sinks, not by step names, so a job of its own that writes ``QoeMetric`` records gets
the QoE charts too:

===========  ========================  ===========================================
panel        sink schema               what the page taps
===========  ========================  ===========================================
qoe          ``QoeMetric``             the sink step (1-minute tumbling windows)
alerts       ``QoeAlert``              the sink step
sessions     ``SessionSummary``        the sink step
scores       ``PersonalizationScore``  the sink step; ``/state`` of the process step
                                       that feeds it (a user's current top titles)
attribution  ``AttributionMetric``     the sink step (click-through rates per
                                       impression window: row and rank, genre)
===========  ========================  ===========================================
"""

from __future__ import annotations

from typing import Any

from runtime.service.handle import NO_WATERMARK, Snapshot, StepInfo, WorkerHandle

__all__ = ["PANEL_SCHEMAS", "find_panels", "topology"]

PANEL_SCHEMAS: dict[str, str] = {
    "qoe": "QoeMetric",
    "alerts": "QoeAlert",
    "sessions": "SessionSummary",
    "scores": "PersonalizationScore",
    "attribution": "AttributionMetric",
}


def _stateful_ancestor(step: StepInfo, by_name: dict[str, StepInfo]) -> str | None:
    todo = list(step.parents)
    seen: set[str] = set()
    while todo:
        name = todo.pop(0)
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        parent = by_name[name]
        if parent.stateful:
            return parent.name
        todo.extend(parent.parents)
    return None


def find_panels(steps: list[StepInfo]) -> dict[str, dict[str, str | None] | None]:
    """Panel name -> the steps that feed it, or ``None`` when the job has none."""
    by_name = {s.name: s for s in steps}
    panels: dict[str, dict[str, str | None] | None] = {}
    for panel, schema in PANEL_SCHEMAS.items():
        sink = next((s for s in steps if s.kind == "sink" and s.schema == schema), None)
        if sink is None:
            panels[panel] = None
            continue
        feed: dict[str, str | None] = {"step": sink.name}
        if panel == "scores":
            feed["state_step"] = _stateful_ancestor(sink, by_name)
        panels[panel] = feed
    return panels


def topology(handle: WorkerHandle, snap: Snapshot) -> dict[str, Any]:
    """The body of ``/topology``."""
    taps = handle.taps.stats()
    steps = []
    for s in handle.steps:
        c = snap.stats.counters.get(s.name, {})
        steps.append(
            {
                "name": s.name,
                "kind": s.kind,
                "parents": list(s.parents),
                "schema": s.schema,
                "stateful": s.stateful,
                "in": c.get("in", 0),
                "out": c.get("out", 0),
                "processed": c.get("processed", 0),
                "late": c.get("late", 0),
                "dead_lettered": c.get("dead_lettered", 0),
                "state_entries": snap.stats.state_entries.get(s.name) if s.stateful else None,
                "tap_subscribers": taps.get(s.name, (0, 0, 0))[0],
            }
        )
    marks = [wm for wm in snap.stats.watermarks.values() if wm != NO_WATERMARK]
    return {
        "job": handle.job_name,
        "time_ms": snap.time_ms,
        "responsive": snap.responsive,
        "records_read": snap.stats.records_read,
        "checkpoints": snap.stats.checkpoints,
        "lag_records": sum(snap.stats.lag.values()),
        "watermark_ms": min(marks) if marks else None,
        "tasks": len(snap.stats.watermarks),
        "steps": steps,
        "panels": find_panels(handle.steps),
    }
