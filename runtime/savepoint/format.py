"""The savepoint folder: ``manifest.json`` and one Avro container file per step and task.

See the package docstring (:mod:`runtime.savepoint`) for the layout and every
manifest field. ``manifest.json`` is written last, in one piece (a rename on a local
folder, one request on an object store), so a location with a manifest is a complete
savepoint; one without is the remains of a savepoint that failed and is never read.
Every file goes through a :class:`~runtime.savepoint.storage.Storage`: a local
folder or an object-store URL alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.avro import container as _avro
from runtime.api.errors import ConfigError, StateError
from runtime.savepoint.storage import Location, Storage, open_storage

__all__ = [
    "FORMAT_VERSION",
    "Manifest",
    "Savepoint",
    "SavepointWriter",
    "ensure_empty",
    "shoal_version",
]

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


def ensure_empty(storage: Storage) -> None:
    """Refuse a location that holds anything already (a savepoint is never mixed
    with other files, nor written over another).

    Raises:
        ConfigError: the location holds files, is a file, or cannot be listed.
    """
    if storage.list():
        raise ConfigError(f"savepoint folder {storage.location} exists and is not empty")


class SavepointWriter:
    """Writes a savepoint: state files first, the manifest last.

    Args:
        location: a folder, a URL (``s3://bucket/prefix``) or a storage; it must not
            exist, or be empty.

    Raises:
        ConfigError: the location holds something already, or cannot be reached.
    """

    def __init__(self, location: Location) -> None:
        self.storage = open_storage(location)
        ensure_empty(self.storage)
        self.storage.mkdirs()

    @property
    def location(self) -> str:
        """Where it writes, as shown to people."""
        return self.storage.location

    def write_rows(
        self, step: str, task: int, layout: str, schema: Any, rows: Iterable[dict[str, Any]]
    ) -> dict[str, Any]:
        """Write the rows of one step and task; returns the manifest's entry for them.

        Raises:
            StateError: a row does not fit the step's schema (e.g. an accumulator that
                does not match the declared value schema).
        """
        rel = _task_file(step, task)
        self.storage.mkdirs(rel.rpartition("/")[0])
        count = 0

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal count
            for row in rows:
                count += 1
                yield row

        meta = {"shoal.step": step, "shoal.task": str(task), "shoal.layout": layout}
        with self.storage.open_write(rel) as fo:
            try:
                _avro.write_container(fo, schema, counted(), meta)
            except ConfigError as exc:
                raise StateError(f"step {step!r}, task {task}: {exc}") from exc
        return {"file": rel, "rows": count}

    def finish(self, manifest: Manifest) -> str:
        """Write ``manifest.json`` in one piece, last; returns the location."""
        self.storage.write_atomic(MANIFEST, (manifest.to_json() + "\n").encode())
        return self.storage.location


class Savepoint:
    """A savepoint opened for reading.

    Args:
        location: a folder, a URL (``s3://bucket/prefix``) or a storage.

    Raises:
        ConfigError: no complete savepoint there, or one of another format, or the
            location cannot be reached.
    """

    def __init__(self, location: Location) -> None:
        self.storage = open_storage(location)
        if not self.storage.exists(MANIFEST):
            if not self.storage.exists(""):
                raise ConfigError(f"savepoint {self.storage.location} does not exist")
            raise ConfigError(
                f"{self.storage.location} is not a savepoint (no {MANIFEST}; an interrupted "
                "savepoint leaves none)"
            )
        where = self.storage.where(MANIFEST)
        with self.storage.open_read(MANIFEST) as fo:
            try:
                text = fo.read().decode("utf-8")
            except Exception as exc:  # network or decoding failures while reading
                raise ConfigError(f"{where} cannot be read: {exc}") from exc
        self.manifest = Manifest.from_json(text, where)

    @property
    def location(self) -> str:
        """Where it is, as shown to people."""
        return self.storage.location

    def step_state(self, step: str) -> dict[str, Any]:
        """The manifest's entry of a stateful step.

        Raises:
            ConfigError: the savepoint holds no state of that step.
        """
        entry: dict[str, Any] | None = self.manifest.state.get(step)
        if entry is None:
            have = ", ".join(sorted(self.manifest.state)) or "none"
            raise ConfigError(
                f"savepoint {self.location} has no state of step {step!r} (has: {have})"
            )
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
            target = self.storage.where(info["file"])
            with self.storage.open_read(info["file"]) as fo:
                try:
                    _, records = _avro.read_container(fo, reader_schema)
                    for row in records:
                        yield tid, row
                except ConfigError as exc:
                    raise ConfigError(f"{target}: {exc}") from exc
                except Exception as exc:  # fastavro's own errors for damaged files
                    raise ConfigError(f"{target} is damaged or unreadable: {exc}") from exc
