"""The savepoint folder: ``manifest.json`` and one Avro container file per step and task.

See the package docstring (:mod:`runtime.savepoint`) for the layout and every
manifest field. ``manifest.json`` is written last, through a temporary name, so a
folder with a manifest is a complete savepoint; a folder without one is the
remains of a savepoint that failed and is never read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors.avro import container as _avro
from runtime.api.errors import ConfigError, StateError

__all__ = ["FORMAT_VERSION", "Manifest", "Savepoint", "SavepointWriter", "shoal_version"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def shoal_version() -> str:
    """The installed Shoal version (``unknown`` when run from a source tree only)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shoal")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Manifest:
    """What a savepoint holds (``manifest.json``; see :mod:`runtime.savepoint`)."""

    job: str
    group: str
    created_ms: int
    partitions: int
    graph: dict[str, Any]
    sources: dict[str, Any] = field(default_factory=dict)
    repartition: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    shoal_version: str = field(default_factory=shoal_version)
    format: int = FORMAT_VERSION
    command: str = ""

    def to_json(self) -> str:
        """The manifest as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """Parse a manifest.

        Raises:
            ConfigError: not a manifest of a format this version reads.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: not a savepoint manifest")
        fmt = data.get("format")
        if fmt != FORMAT_VERSION:
            raise ConfigError(
                f"{where}: savepoint format {fmt!r}; this Shoal reads format {FORMAT_VERSION}"
            )
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise ConfigError(f"{where}: incomplete savepoint manifest ({exc})") from exc

    def steps(self) -> dict[str, dict[str, Any]]:
        """The graph's steps by name."""
        return {s["name"]: s for s in self.graph.get("steps", [])}


def _task_file(step: str, task: int) -> str:
    return f"state/{step}/task-{task}.avro"


class SavepointWriter:
    """Writes a savepoint folder: state files first, the manifest last.

    Args:
        path: the folder; it must not exist, or be empty.

    Raises:
        ConfigError: the folder holds something already.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ConfigError(f"savepoint folder {self.path} exists and is not empty")
        self.path.mkdir(parents=True, exist_ok=True)

    def write_rows(
        self, step: str, task: int, layout: str, schema: Any, rows: Iterable[dict[str, Any]]
    ) -> dict[str, Any]:
        """Write the rows of one step and task; returns the manifest's entry for them.

        Raises:
            StateError: a row does not fit the step's schema (e.g. an accumulator that
                does not match the declared value schema).
        """
        rel = _task_file(step, task)
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal count
            for row in rows:
                count += 1
                yield row

        meta = {"shoal.step": step, "shoal.task": str(task), "shoal.layout": layout}
        try:
            with open(target, "wb") as fo:
                _avro.write_container(fo, schema, counted(), meta)
        except ConfigError as exc:
            raise StateError(f"step {step!r}, task {task}: {exc}") from exc
        return {"file": rel, "rows": count}

    def finish(self, manifest: Manifest) -> Path:
        """Write ``manifest.json`` (atomically); returns the folder."""
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(manifest.to_json() + "\n")
        os.replace(tmp, self.path / MANIFEST)
        return self.path


class Savepoint:
    """A savepoint folder opened for reading.

    Args:
        path: the folder.

    Raises:
        ConfigError: no complete savepoint there, or one of another format.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise ConfigError(
                f"{self.path} is not a savepoint (no {MANIFEST}; an interrupted savepoint "
                "leaves none)"
            )
        self.manifest = Manifest.from_json(manifest.read_text(), str(manifest))

    def step_state(self, step: str) -> dict[str, Any]:
        """The manifest's entry of a stateful step.

        Raises:
            ConfigError: the savepoint holds no state of that step.
        """
        entry: dict[str, Any] | None = self.manifest.state.get(step)
        if entry is None:
            have = ", ".join(sorted(self.manifest.state)) or "none"
            raise ConfigError(f"savepoint {self.path} has no state of step {step!r} (has: {have})")
        return entry

    def writer_schema(self, step: str) -> Any:
        """The Avro schema the step's rows were written with."""
        return self.step_state(step)["schema"]

    def rows(
        self, step: str, task: int | None = None, reader_schema: Any | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(task, row)`` of a step's state, every task or one.

        Args:
            step: the step.
            task: one task only; ``None``: all of them in task order.
            reader_schema: resolve rows into this schema (Avro schema resolution).

        Raises:
            ConfigError: the step is unknown or a file is missing or unreadable.
        """
        entry = self.step_state(step)
        tasks = sorted(int(t) for t in entry["tasks"])
        for tid in tasks if task is None else [task]:
            info = entry["tasks"].get(str(tid))
            if info is None:
                continue
            target = self.path / info["file"]
            try:
                fo = open(target, "rb")  # noqa: SIM115 - closed below, after the iterator
            except OSError as exc:
                raise ConfigError(f"savepoint file {target} cannot be read: {exc}") from exc
            with fo:
                try:
                    _, records = _avro.read_container(fo, reader_schema)
                    for row in records:
                        yield tid, row
                except ConfigError as exc:
                    raise ConfigError(f"{target}: {exc}") from exc
                except Exception as exc:  # fastavro's own errors for damaged files
                    raise ConfigError(f"{target} is damaged or unreadable: {exc}") from exc
