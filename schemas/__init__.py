"""The Avro schemas of Shoal's topics, one record per ``.avsc`` file.

The file name is the record's name: ``schemas/PlaybackEvent.avsc`` holds the
``PlaybackEvent`` record. This package only finds and reads the files; parsing,
fingerprints and encoding live in ``connectors.avro``.

Example:
    >>> schema_dir().name
    'schemas'
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["SchemaNotFoundError", "load_schema", "schema_dir", "schema_names"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SchemaNotFoundError(LookupError):
    """No ``.avsc`` file in ``schemas/`` has the requested name."""


def schema_dir() -> Path:
    """The folder that holds the ``.avsc`` files.

    Returns:
        The absolute path of the ``schemas`` package folder.
    """
    return Path(__file__).resolve().parent


def schema_names() -> list[str]:
    """The names of the schemas in ``schemas/``, sorted.

    Returns:
        Each ``.avsc`` file's name without its suffix.
    """
    return sorted(path.stem for path in schema_dir().glob("*.avsc"))


def load_schema(name: str) -> dict[str, Any]:
    """Read one schema file as JSON.

    Args:
        name: the record name, which is also the file name without ``.avsc``
            (``"PlaybackEvent"``).

    Returns:
        The schema as a JSON object.

    Raises:
        SchemaNotFoundError: no such file; the message lists the known names.
        ValueError: the file is not a JSON object.
    """
    path = schema_dir() / f"{name}.avsc"
    if not _NAME.fullmatch(name) or not path.is_file():
        known = ", ".join(schema_names()) or "none"
        raise SchemaNotFoundError(f"no schema named {name!r} in schemas/ (known: {known})")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"schemas/{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise ValueError(f"schemas/{path.name} must hold one JSON object (a record schema)")
    return schema
