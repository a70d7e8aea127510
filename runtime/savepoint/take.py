"""Writes a savepoint from a consistent cut: committed offsets and changelog contents.

At the cut (every worker holding, see :mod:`runtime.engine.control`) the group's
committed offsets name, per input and repartition partition, how far the job read
and its checkpoint metadata (sequence, event-time progress); each stateful step's
changelog partition ``t`` holds exactly task ``t``'s committed state. A task whose
partitions carry no committed checkpoint has no state (the worker would not
restore one either).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from runtime.api.errors import StateError
from runtime.engine.topics import changelog_topic, repartition_topic
from runtime.savepoint.format import Manifest, SavepointWriter
from runtime.savepoint.layouts import row_schema, rows_from_entries
from runtime.savepoint.storage import Location
from runtime.state.serde import decode_key, decode_value

__all__ = ["KEY_KINDS", "changelog_name", "key_kind", "repartition_name", "write_savepoint"]

#: Python key types and the Avro key type they fit (see ``runtime.api.evolution``).
KEY_KINDS = {"str": "string", "int": "long", "bytes": "bytes", "tuple": None, "NoneType": None}


def changelog_name(group: str, step: str) -> str:
    """The changelog topic of a step (``runtime.engine.topics.changelog_topic``)."""
    return changelog_topic(group, step)


def repartition_name(group: str, step: str) -> str:
    """The repartition topic of a ``key_by`` step."""
    return repartition_topic(group, step)


def key_kind(key: Any) -> str:
    """The kind of a user key recorded in the manifest (``str``, ``int`` ...)."""
    return type(key).__name__


def _meta(text: str) -> dict[str, Any] | None:
    if not text or not text.startswith("{"):
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and "seq" in meta else None


def _latest(changes: Iterable[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for key, value in changes:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def _user_key(layout: str, key: Any) -> Any:
    if layout == "fixed" or (layout in ("process", "join") and not _is_timer(key)):
        return key[0]
    if layout in ("process", "join"):
        return key[2]
    return key


def _is_timer(key: Any) -> bool:
    return type(key) is tuple and len(key) == 3 and str(key[0]).startswith("\x00timer:")


def write_savepoint(
    dest: Location,
    description: Mapping[str, Any],
    committed: Mapping[tuple[str, int], tuple[int, str]],
    read_changelog: Callable[[str, int], Iterable[tuple[bytes, bytes | None]]],
    *,
    outputs: Mapping[str, Any] | None = None,
    command: str = "",
    progress: Callable[[str], None] = lambda _line: None,
) -> Manifest:
    """Write the savepoint of a cut to ``dest``.

    Args:
        dest: an empty or new folder, a URL (``s3://bucket/prefix``) or a storage.
        description: the job as its workers announced it (``runtime.engine.describe``
            plus ``group`` and ``partitions``).
        committed: the group's committed ``(offset, metadata)`` per partition.
        read_changelog: ``(topic, partition)`` -> its committed records up to the cut.
        outputs: sink name -> ``{"topic", "partitions": {p: end offset}}`` at the cut.
        command: the id of the command that took it.
        progress: receives one line per step written.

    Raises:
        ConfigError: ``dest`` is not empty or cannot be written.
        StateError: a state entry does not decode or does not fit its declared schema.
    """
    group = str(description["group"])
    partitions = int(description["partitions"])
    writer = SavepointWriter(dest)
    steps = list(description.get("steps", []))
    sources: dict[str, Any] = {}
    live_tasks: set[int] = set()
    for name, topic in dict(description.get("sources", {})).items():
        parts: dict[str, Any] = {}
        for (t, p), (offset, text) in sorted(committed.items()):
            if t != topic:
                continue
            meta = _meta(text) or {}
            parts[str(p)] = {"offset": offset, "max_ts": meta.get("max_ts"), "wm": meta.get("wm")}
            if meta.get("seq"):
                live_tasks.add(p)
        sources[name] = {"topic": topic, "partitions": parts}
    repartition: dict[str, Any] = {}
    for step in steps:
        if step.get("kind") != "keyby" or not step.get("repartition"):
            continue
        topic = repartition_name(group, step["name"])
        parts = {}
        for (t, p), (offset, text) in sorted(committed.items()):
            if t == topic:
                meta = _meta(text) or {}
                parts[str(p)] = {"offset": offset, "wm": meta.get("wm")}
                if meta.get("seq"):
                    live_tasks.add(p)
        repartition[step["name"]] = {"topic": topic, "partitions": parts}
    state: dict[str, Any] = {}
    for step in steps:
        layout = step.get("layout")
        if layout is None:
            continue
        declared = step.get("state") or {}
        value_schema = declared.get("value")
        schema = row_schema(layout, step["name"], value_schema)
        tasks: dict[str, Any] = {}
        kinds: set[str] = set()
        keys = 0
        topic = changelog_name(group, step["name"])
        for tid in sorted(live_tasks):
            if tid >= partitions:
                continue
            raw = _latest(read_changelog(topic, tid))
            entries = []
            for raw_key, raw_value in raw.items():
                key = decode_key(raw_key)
                entries.append((key, decode_value(raw_value)))
                kinds.add(key_kind(_user_key(layout, key)))
            keys += len(entries)
            entries.sort(key=lambda e: raw_key_order(e[0]))
            try:
                info = writer.write_rows(
                    step["name"],
                    tid,
                    layout,
                    schema,
                    rows_from_entries(layout, entries, value_schema is not None),
                )
            except StateError as exc:
                raise StateError(f"savepoint of step {step['name']!r}: {exc}") from exc
            info["keys"] = len(entries)
            tasks[str(tid)] = info
        state[step["name"]] = {
            "layout": layout,
            "params": step.get("params", {}),
            "schema": schema,
            "value_schema": value_schema,
            "key_type": declared.get("key"),
            "key_kinds": sorted(kinds),
            "version": int(declared.get("version", 1)),
            "keyed_by": step.get("keyed_by"),
            "tasks": tasks,
            "keys": keys,
        }
        progress(f"  {step['name']}: {keys:,} keys in {len(tasks)} tasks")
    manifest = Manifest(
        job=str(description.get("job", group)),
        group=group,
        created_ms=time.time_ns() // 1_000_000,
        partitions=partitions,
        graph={"fingerprint": description.get("fingerprint", ""), "steps": steps},
        sources=sources,
        repartition=repartition,
        state=state,
        outputs=dict(outputs or {}),
        command=command,
    )
    writer.finish(manifest)
    return manifest


def raw_key_order(key: Any) -> str:
    """A stable order of keys of mixed types (files come out the same for the same state)."""
    return repr(key)
