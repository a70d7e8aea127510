"""A job graph as plain data: what a worker announces and what a savepoint records.

``describe_job`` gives every step's name, kind, parents and the facts that decide
how its state is laid out (window type and sizes, repartitioning, declared state
type). The same description is made from the running job (by each worker, on the
job's control topic) and from a new version of the job (by ``shoal run
--from-savepoint``), and the two are compared step by step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from runtime.api.graph import JoinNode, KeyByNode, Node, ProcessNode, WindowNode
from runtime.api.job import Job
from runtime.api.windows import Hopping, Session, Tumbling
from runtime.engine.windowing import assigner_for

__all__ = ["STATEFUL_LAYOUTS", "describe_job", "fingerprint", "layout_of"]

#: How each kind of stateful step keeps its state (see runtime.savepoint.layouts).
STATEFUL_LAYOUTS = ("session", "fixed", "process", "join")


def layout_of(node: Node) -> tuple[str, dict[str, Any]] | None:
    """The state layout of a step and its parameters; ``None`` for a stateless step."""
    if isinstance(node, WindowNode):
        spec = node.spec
        if isinstance(spec, Session):
            return "session", {"gap_ms": spec.gap_ms, "lateness_ms": spec.allowed_lateness_ms}
        if isinstance(spec, Tumbling):
            return "fixed", {
                "size_ms": spec.size_ms,
                "slide_ms": spec.size_ms,
                "lateness_ms": spec.allowed_lateness_ms,
            }
        if isinstance(spec, Hopping):
            return "fixed", {
                "size_ms": spec.size_ms,
                "slide_ms": spec.slide_ms,
                "lateness_ms": spec.allowed_lateness_ms,
            }
        if spec is None:
            return "window", {}
        # Any other kind: its spec's fields; merging kinds keep sessions' layout.
        params = {
            ("lateness_ms" if f == "allowed_lateness_ms" else f): getattr(spec, f)
            for f in getattr(spec, "__dataclass_fields__", {})
        }
        return ("session" if assigner_for(spec, node.name).merging else "fixed"), params
    if isinstance(node, ProcessNode):
        states = sorted(d.name for d in getattr(node.fn, "states", ()) or ())
        return "process", {"states": states}
    if isinstance(node, JoinNode):
        return "join", {
            "lower_ms": node.lower_ms,
            "upper_ms": node.upper_ms,
            "lateness_ms": node.allowed_lateness_ms,
            "how": str(node.how),
        }
    return None


def _step(job: Job, node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": node.name,
        "kind": node.kind,
        "parents": [p.name for p in node.parents],
    }
    if isinstance(node, KeyByNode):
        out["repartition"] = node.repartition
    layout = layout_of(node)
    if layout is not None:
        out["layout"], out["params"] = layout
        declared = job.state_schemas.get(node.name)
        out["state"] = {
            "value": declared.value if declared is not None else None,
            "key": declared.key if declared is not None else None,
            "version": declared.version if declared is not None else 1,
            "migrate": declared is not None and declared.migrate is not None,
        }
        out["keyed_by"] = _keyed_by(node)
    return out


def _keyed_by(node: Node) -> dict[str, Any] | None:
    """The ``key_by`` a stateful step's keys come from (decides the task of a key)."""
    seen: list[Node] = list(node.parents)
    while seen:
        parent = seen.pop(0)
        if isinstance(parent, KeyByNode):
            return {"step": parent.name, "repartition": parent.repartition}
        seen.extend(parent.parents)
    return None


def describe_job(
    job: Job,
    *,
    sources: Mapping[str, str] | None = None,
    sinks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The job as plain data (JSON-able).

    Args:
        job: the job.
        sources: source name -> topic it is bound to.
        sinks: sink name -> topic (or URL) it is bound to.
    """
    steps = [_step(job, n) for n in job.nodes]
    return {
        "job": job.name,
        "fingerprint": fingerprint(steps),
        "steps": steps,
        "sources": dict(sources or {}),
        "sinks": dict(sinks or {}),
        "dead_letters": job.dead_letter_topic,
    }


def fingerprint(steps: list[dict[str, Any]]) -> str:
    """A hash of the graph's shape: names, kinds, parents, layouts and declared states."""
    text = json.dumps(steps, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
