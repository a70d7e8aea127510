"""Known Avro schemas, by record name and by fingerprint.

A :class:`SchemaRepository` holds, for each record name, the *current* schema
(what we write and read into) and any number of older versions (what old data
may have been written with). Single-object encoding names the writer schema by
its CRC-64-AVRO fingerprint, so every version is indexed by fingerprint.

Example:
    >>> v1 = {"type": "record", "name": "shoal.Ping", "fields": [{"name": "n", "type": "int"}]}
    >>> repo = SchemaRepository([v1])
    >>> repo.current("Ping").name
    'shoal.Ping'
    >>> repo.by_fingerprint(repo.current("shoal.Ping").fingerprint).name
    'shoal.Ping'
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.avro import _fastavro
from connectors.avro.schema_tree import SchemaTree, normalize, short_name
from runtime.api.errors import ConfigError

#: Shoal's own ``schemas/`` package folder, found by path beside ``connectors/``: a job
#: author's project often has a ``schemas/`` folder of its own, which would shadow the
#: package of that name when the project's folder is on ``sys.path``.
BUILT_IN = Path(__file__).resolve().parents[2] / "schemas"

__all__ = ["SchemaEntry", "SchemaRepository"]


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One version of one schema, parsed once.

    Attributes:
        name: the record's full name (``"shoal.PlaybackEvent"``).
        schema: the schema as JSON, as it was given.
        parsed: fastavro's parsed form.
        canonical: the Parsing Canonical Form.
        fingerprint: CRC-64-AVRO of the canonical form, 8 bytes little-endian.
        tree: the schema with full names, for walkers.
    """

    name: str
    schema: Mapping[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes
    tree: SchemaTree = field(repr=False)

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> SchemaEntry:
        """Parse a record schema.

        Args:
            schema: a record schema as JSON.

        Returns:
            The entry.

        Raises:
            ConfigError: the schema is not a valid Avro record.
        """
        if not isinstance(schema, Mapping) or schema.get("type") not in ("record", "error"):
            raise ConfigError(f"expected an Avro record schema, got {schema!r:.80}")
        tree = normalize(schema)
        return cls(
            name=str(tree.root["name"]),
            schema=copy.deepcopy(dict(schema)),  # ours: later edits by the caller stay theirs
            parsed=_fastavro.parse(schema),
            canonical=_fastavro.canonical_form(schema),
            fingerprint=_fastavro.fingerprint(schema),
            tree=tree,
        )

    def to_json(self) -> str:
        """The schema as compact JSON text (what a schema registry stores).

        Returns:
            The JSON text.
        """
        return json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)


class SchemaRepository:
    """Current schemas by record name, and every known version by fingerprint.

    Args:
        current: record schemas to use as the current version of their name.

    Raises:
        ConfigError: a schema is invalid, or two current schemas share a name.
    """

    def __init__(self, current: Iterable[Mapping[str, Any]] = ()) -> None:
        self._current: dict[str, SchemaEntry] = {}
        self._by_fingerprint: dict[bytes, SchemaEntry] = {}
        for schema in current:
            self._add_current(schema)

    def _add_current(self, schema: Mapping[str, Any]) -> SchemaEntry:
        entry = SchemaEntry.of(schema)
        if entry.name in self._current:
            raise ConfigError(f"two current schemas are named {entry.name}")
        self._current[entry.name] = entry
        self._by_fingerprint.setdefault(entry.fingerprint, entry)
        return entry

    @classmethod
    def from_directory(cls, directory: Path | None = None) -> SchemaRepository:
        """Load every ``*.avsc`` file of a folder as a current schema.

        Args:
            directory: the folder; by default the ``schemas/`` package.

        Returns:
            The repository.

        Raises:
            ConfigError: a file is not valid JSON or not a valid record schema.
        """
        return cls.from_directories((), built_in=directory)

    @classmethod
    def from_directories(
        cls, directories: Iterable[Path], *, built_in: Path | None = None
    ) -> SchemaRepository:
        """The built-in ``schemas/`` folder plus a job author's own folders.

        A record in a user folder that is also built in must be the same schema; records
        of the same name in two user folders must agree too.

        Raises:
            ConfigError: a folder does not exist, a file is invalid, or a record name is
                given two different schemas.
        """
        repository = cls()
        repository._load_folder(built_in or BUILT_IN)
        for folder in directories:
            if not folder.is_dir():
                raise ConfigError(f"schema folder {folder} does not exist")
            repository._load_folder(folder)
        return repository

    def _load_folder(self, folder: Path) -> None:
        for path in sorted(folder.glob("*.avsc")):
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
                same = self._current.get(SchemaEntry.of(schema).name)
                if same is not None and same.fingerprint == SchemaEntry.of(schema).fingerprint:
                    continue  # the same record again (a user folder repeating a built-in)
                entry = self._add_current(schema)
            except (OSError, json.JSONDecodeError, ConfigError) as exc:
                raise ConfigError(f"schema file {path}: {exc}") from exc
            if short_name(entry.name) != path.stem:
                raise ConfigError(
                    f"schema file {path.name} holds record {entry.name}; "
                    f"the file must be named after its record ({short_name(entry.name)}.avsc)"
                )

    @property
    def names(self) -> list[str]:
        """The full names of the current schemas, sorted."""
        return sorted(self._current)

    def current(self, name: str) -> SchemaEntry:
        """The current schema of a record, by full or unqualified name.

        Args:
            name: ``"shoal.PlaybackEvent"`` or ``"PlaybackEvent"``.

        Returns:
            The entry.

        Raises:
            ConfigError: no such schema, or the unqualified name is ambiguous;
                the message lists the known names.
        """
        entry = self._current.get(name)
        if entry is not None:
            return entry
        matches = [e for e in self._current.values() if short_name(e.name) == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(self.names) or "none"
        why = "is ambiguous" if matches else "is unknown"
        raise ConfigError(f"schema {name!r} {why} (known: {known})")

    def add_version(self, schema: Mapping[str, Any]) -> SchemaEntry:
        """Make an older (or other) writer version known, without making it current.

        Args:
            schema: a record schema as JSON.

        Returns:
            Its entry; the existing one when a schema with the same canonical
            form is already known (defaults and docs do not change the bytes).

        Raises:
            ConfigError: the schema is invalid.
        """
        entry = SchemaEntry.of(schema)
        return self._by_fingerprint.setdefault(entry.fingerprint, entry)

    def by_fingerprint(self, fingerprint: bytes) -> SchemaEntry | None:
        """The schema with this single-object fingerprint, if known.

        Args:
            fingerprint: 8 bytes, little-endian CRC-64-AVRO.

        Returns:
            The entry, or ``None``.
        """
        return self._by_fingerprint.get(fingerprint)

    def versions(self, name: str) -> list[SchemaEntry]:
        """Every known version of the record with this full name (current and older).

        Args:
            name: the record's full name.

        Returns:
            The entries, in the order they became known.
        """
        return [e for e in self._by_fingerprint.values() if e.name == name]
