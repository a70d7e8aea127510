"""Declared state types of stateful steps, so that savepoints can evolve with the job.

A savepoint (``shoal savepoint``) writes every stateful step's state in a portable
form. When the job changes, ``shoal run --from-savepoint`` compares the new job with
the savepoint step by step; what a step declares here decides what may change:

* ``value``: the Avro schema of the step's state value. For a window step that is
  its accumulator, which must then be a ``dict`` matching a record schema. The
  savepoint stores the accumulator with this schema; a later version may change it
  the way Avro schema resolution allows (fields added with a default, fields
  removed, types promoted such as ``int`` to ``long``), and old values are read
  into the new schema. Without a declared schema, state is stored as generic data
  and restored as it was.
* ``key``: the Avro type of the step's keys (``"string"``, ``"long"``, ``"bytes"``);
  a savepoint whose keys do not fit it is refused.
* ``migrate`` with ``version``: a function from an old state value to a new one,
  for changes resolution cannot express. It runs on every value of a savepoint
  written by an older ``version`` of the step, after the value is read as it was
  written; its results must fit the new ``value`` schema when one is declared.
  For a process step it runs on each named state's value.

Example:
    >>> from runtime.api.job import Job
    >>> job = Job("sessions_v2")
    >>> job.state_schema(
    ...     "user_sessions",
    ...     value={"type": "record", "name": "Acc", "fields": [
    ...         {"name": "events", "type": "long"},
    ...         {"name": "seeks", "type": "long", "default": 0}]},
    ...     key="string",
    ... ).key
    'string'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import JobDefinitionError

__all__ = ["KEY_TYPES", "StateSchema"]

#: Key types a step may declare (Avro primitive names).
KEY_TYPES = ("string", "long", "int", "bytes")


@dataclass(frozen=True)
class StateSchema:
    """What a stateful step declares about its state (see the module docstring).

    Args:
        value: Avro schema (JSON form) of the state value, or ``None`` (generic).
        key: Avro type name of the keys, or ``None`` (not checked).
        version: the version of this declaration; ``migrate`` runs on state of lower
            versions.
        migrate: turns a value of an older version into one of this version.

    Raises:
        JobDefinitionError: an unknown key type, a negative version, or a value
            schema that is not a JSON object, list or type name.
    """

    value: Mapping[str, Any] | list[Any] | str | None = None
    key: str | None = None
    version: int = 1
    migrate: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.key not in KEY_TYPES:
            raise JobDefinitionError(
                f"state key type {self.key!r} is not supported: use one of {', '.join(KEY_TYPES)}"
            )
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise JobDefinitionError(f"state version must be an int >= 1, not {self.version!r}")
        if self.value is not None and not isinstance(self.value, Mapping | list | str):
            raise JobDefinitionError(
                f"state value schema must be an Avro schema (dict, list or type name), "
                f"not {type(self.value).__name__}"
            )
