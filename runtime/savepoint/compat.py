"""Compares a new version of a job with a savepoint, step by step, before anything starts.

For every stateful step of the savepoint the check decides one of:

============  ===============================================================
outcome       when
============  ===============================================================
kept          the new job has a stateful step of that name and layout
renamed       ``--rename OLD=NEW`` names the new step
dropped       the new job has no such step, and ``--allow-dropped-state`` is given
============  ===============================================================

and every stateful step of the new job that takes no savepoint state is *added*
(it starts empty). A kept or renamed step's values are then restored one of four
ways: *as they are* (same declared schema, or none); *resolved* by Avro schema
resolution into the new declared schema (fields added with a default, removed,
promoted); *migrated* by the step's migrate function (the savepoint holds an older
``version`` of the step); *checked* against a newly declared schema.

Anything else is a problem, one line per step: a removed stateful step, a changed
layout (a window became a process step, a tumbling window changed its size), a
value schema the new one cannot read and no migration, keys that do not fit the
declared key type, a ``--rename`` that names no step, state keyed by an input
partitioning that cannot be re-keyed to a new partition count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.avro.compatibility import check_backward_compatible
from runtime.api.job import Job
from runtime.savepoint.format import Manifest
from runtime.savepoint.take import KEY_KINDS

__all__ = ["RestorePlan", "StepPlan", "compare"]

#: Declared key types a savepoint's declared key type may become.
_KEY_PROMOTIONS = {("int", "long")}


@dataclass(frozen=True)
class StepPlan:
    """What happens to one step's state."""

    outcome: str  # kept | renamed | dropped | added
    old: str | None
    new: str | None
    layout: str
    values: str = "as-is"  # as-is | resolved | migrated | checked
    rows: int = 0
    note: str = ""

    def line(self) -> str:
        """One line for the report."""
        if self.outcome == "added":
            return f"{self.new}: added, starts with empty state"
        if self.outcome == "dropped":
            return f"{self.old}: dropped ({self.rows:,} keys of state left behind)"
        name = self.old if self.old == self.new else f"{self.old} -> {self.new}"
        how = {
            "as-is": "values as they are",
            "resolved": "values resolved into the new schema (Avro)",
            "migrated": "values migrated by the step's migrate function",
            "checked": "values checked against the new schema",
        }[self.values]
        text = f"{name}: {self.outcome}, {self.rows:,} keys, {how}"
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class RestorePlan:
    """The outcome of :func:`compare`: per-step plans and the problems found."""

    steps: list[StepPlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing refuses the restore."""
        return not self.problems

    def by_new(self) -> dict[str, StepPlan]:
        """Plans of steps that restore state, by their new name."""
        return {
            s.new: s for s in self.steps if s.new is not None and s.outcome in ("kept", "renamed")
        }


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def compare(
    manifest: Manifest,
    description: Mapping[str, Any],
    job: Job,
    *,
    renames: Mapping[str, str] | None = None,
    allow_dropped: bool = False,
    partitions: int | None = None,
) -> RestorePlan:
    """Compare the new job (``description`` of ``job``) with a savepoint's manifest.

    Args:
        manifest: the savepoint's manifest.
        description: ``runtime.engine.describe.describe_job`` of the new job.
        job: the new job (its steps' migrate functions).
        renames: old step name -> new step name.
        allow_dropped: state of steps the new job lacks may be left behind.
        partitions: the new input partition count (``None``: unchanged).
    """
    renames = dict(renames or {})
    new_steps = {s["name"]: s for s in description.get("steps", [])}
    problems: list[str] = []
    notes: list[str] = []
    plans: list[StepPlan] = []
    for old, new in renames.items():
        if old not in manifest.state:
            problems.append(
                f"--rename {old}={new}: the savepoint has no state of step {old!r} "
                f"(it has: {', '.join(sorted(manifest.state)) or 'none'})"
            )
        if new not in new_steps:
            problems.append(f"--rename {old}={new}: the job has no step {new!r}")
    taken: set[str] = set()
    rekey = partitions is not None and partitions != manifest.partitions
    for old, entry in sorted(manifest.state.items()):
        target = renames.get(old, old)
        step = new_steps.get(target)
        keys = int(entry.get("keys", 0))
        layout = str(entry.get("layout"))
        if step is None or "layout" not in step:
            if old in renames and step is None:
                continue  # reported above
            if step is not None:
                problems.append(
                    f"{old}: the step is now a {step['kind']} step without state (it was a "
                    f"{layout} step with {keys:,} keys)"
                )
            elif allow_dropped:
                plans.append(StepPlan("dropped", old, None, layout, rows=keys))
            else:
                problems.append(
                    f"{old}: stateful step removed ({keys:,} keys of state would be lost): keep "
                    f"it, rename it with --rename {old}=NEW, or pass --allow-dropped-state"
                )
            continue
        taken.add(target)
        outcome = "renamed" if target != old else "kept"
        step_problems, values, note = _check_step(old, entry, step, job, rekey)
        problems.extend(step_problems)
        plans.append(StepPlan(outcome, old, target, layout, values, keys, note))
    for name, step in new_steps.items():
        if "layout" in step and name not in taken:
            plans.append(StepPlan("added", None, name, step["layout"]))
    for name in description.get("sources", {}):
        if name not in manifest.sources:
            notes.append(f"source {name}: not in the savepoint, read from its beginning")
    for name in manifest.sources:
        if name not in description.get("sources", {}):
            notes.append(f"source {name}: no longer read (its offsets are left behind)")
    if rekey:
        notes.append(
            f"input partitions: {manifest.partitions} in the savepoint, {partitions} now: "
            "state is re-keyed to the new tasks"
        )
    return RestorePlan(plans, problems, notes)


def _check_step(
    old: str,
    entry: Mapping[str, Any],
    step: Mapping[str, Any],
    job: Job,
    rekey: bool,
) -> tuple[list[str], str, str]:
    """Problems, the way values are restored, and a note for one kept or renamed step."""
    problems: list[str] = []
    name = step["name"]
    label = old if old == name else f"{old} -> {name}"
    layout, new_layout = entry.get("layout"), step.get("layout")
    if layout != new_layout:
        problems.append(f"{label}: state layout changed from {layout} to {new_layout}")
        return problems, "as-is", ""
    params, new_params = entry.get("params", {}), step.get("params", {})
    note = ""
    if layout == "fixed" and (
        params.get("size_ms") != new_params.get("size_ms")
        or params.get("slide_ms") != new_params.get("slide_ms")
    ):
        problems.append(
            f"{label}: window size/slide changed from {params.get('size_ms')}/"
            f"{params.get('slide_ms')} ms to {new_params.get('size_ms')}/"
            f"{new_params.get('slide_ms')} ms: windows cannot be re-cut"
        )
    if layout == "session" and params.get("gap_ms") != new_params.get("gap_ms"):
        note = (
            f"session gap {params.get('gap_ms')} -> {new_params.get('gap_ms')} ms applies to "
            "sessions from now on"
        )
    declared = step.get("state") or {}
    # keys
    new_key = declared.get("key")
    old_key = entry.get("key_type")
    if new_key is not None:
        if old_key is not None and old_key != new_key and (old_key, new_key) not in _KEY_PROMOTIONS:
            problems.append(f"{label}: key type changed from {old_key} to {new_key}")
        elif old_key is None:
            fits = {"long": {"long", "int"}, "int": {"long", "int"}}.get(new_key, {new_key})
            kinds = [k for k in entry.get("key_kinds", []) if KEY_KINDS.get(k) not in fits]
            if kinds:
                problems.append(
                    f"{label}: the savepoint's keys are {', '.join(kinds)}, the step now "
                    f"declares {new_key} keys"
                )
    if rekey:
        keyed = entry.get("keyed_by") or {}
        if not keyed.get("repartition", False):
            problems.append(
                f"{label}: keyed by the input's own partitioning (key_by "
                f"{keyed.get('step')!r} without repartitioning), so its state cannot be re-keyed "
                "to a new partition count"
            )
    # values
    old_schema, new_schema = entry.get("value_schema"), declared.get("value")
    old_version, new_version = int(entry.get("version", 1)), int(declared.get("version", 1))
    schemas = job.state_schemas
    migrate = schemas[name].migrate if name in schemas else None
    if layout == "process" and new_schema is not None:
        problems.append(
            f"{label}: a process step's state is stored generically; declare no value schema "
            "(use a migrate function for its values)"
        )
        return problems, "as-is", note
    if migrate is not None and old_version < new_version:
        return problems, "migrated", note
    if old_version > new_version:
        problems.append(
            f"{label}: the savepoint holds state version {old_version}, the step declares "
            f"version {new_version} (a rollback needs a savepoint of that version)"
        )
    if new_schema is None or (
        old_schema is not None and _canonical(old_schema) == _canonical(new_schema)
    ):
        return problems, "as-is", note
    if old_schema is None:
        return problems, "checked", note
    found = check_backward_compatible(old_schema, new_schema)
    if found:
        hint = (
            f"register a migrate function with version > {old_version}"
            if migrate is None or old_version >= new_version
            else ""
        )
        problems.append(
            f"{label}: the new value schema cannot read the savepoint's values: "
            + "; ".join(found[:3])
            + (f" ({hint})" if hint else "")
        )
        return problems, "as-is", note
    return problems, "resolved", note
