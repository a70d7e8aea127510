"""The state interface the engine uses: one store per (job, step, partition).

A :class:`StateStore` holds the keyed state of one named step for one task
(partition). Every change is tracked until the next :meth:`StateStore.checkpoint`,
which makes the changes durable locally (where the backend has a disk) and
returns them as a changelog: encoded ``(key, value)`` pairs, ``None`` for a
delete, ready for a compacted Kafka topic. :meth:`StateStore.restore` applies such
a changelog to a store.

Contract for callers:

- Keys are ``str``, ``int``, ``bytes``, ``None`` or tuples of them (see
  :mod:`runtime.state.serde`); values are plain data
  (see :mod:`runtime.state.codec` for what is supported).
- A value read with ``get`` and then mutated in place must be written back with
  ``put``: only ``put`` and ``delete`` mark a key as changed.
- ``close`` discards changes made since the last checkpoint; checkpoint first.
- A store belongs to one task thread; stores are not thread-safe.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runtime.api.errors import ConfigError

__all__ = ["Change", "StateBackend", "StateStore", "StoreId"]

Change = tuple[bytes, bytes | None]
"""One changelog entry: encoded key, and encoded value or ``None`` for a delete."""


@runtime_checkable
class StateStore(Protocol):
    """Keyed state of one named step for one task (partition)."""

    name: str

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""
        ...

    def get_many(self, keys: list[Hashable], default: Any = None) -> list[Any]:
        """``[get(key, default) for key in keys]``, in fewer reads where the store can."""
        ...

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key`` (durable at the next checkpoint)."""
        ...

    def put_new(self, key: Hashable, value: Any) -> None:
        """:meth:`put` of a key the caller knows has no value, in memory or durable
        (the store may skip finding out)."""
        ...

    def delete(self, key: Hashable) -> None:
        """Remove ``key``; deleting a missing key is not an error."""
        ...

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove ``key`` and return its value, or ``default`` when it had none."""
        ...

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` has a value."""
        ...

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Iterate over all live entries, in no particular order."""
        ...

    def items_with_prefix(self, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, Any]]:
        """Entries whose key is a tuple starting with ``prefix``'s elements.

        On disk this reads only that range of keys (timers after a restore).
        """
        ...

    def __len__(self) -> int:
        """The exact number of live entries."""
        ...

    def checkpoint(self) -> list[Change]:
        """Make the changes since the last checkpoint durable and return them."""
        ...

    def prepare_checkpoint(self) -> list[Change]:
        """Encode the changes since the last checkpoint without making them durable."""
        ...

    def commit_checkpoint(self) -> None:
        """Make what ``prepare_checkpoint`` encoded durable (after the changelog committed)."""
        ...

    def restore(self, changes: Iterable[Change]) -> None:
        """Apply a changelog (the concatenated output of checkpoints)."""
        ...

    def clear(self) -> None:
        """Drop all entries and metadata, at once and without a changelog entry."""
        ...

    def close(self) -> None:
        """Release the store; changes since the last checkpoint are discarded."""
        ...

    def get_meta(self, name: str) -> bytes | None:
        """Return a bookkeeping value, or ``None`` if it was never set."""
        ...

    def put_meta(self, name: str, value: bytes) -> None:
        """Set a bookkeeping value; it is written with the next checkpoint."""
        ...


@runtime_checkable
class StateBackend(Protocol):
    """Opens the state stores of a worker."""

    def open_store(self, job: str, step: str, partition: int) -> StateStore:
        """Open (or reopen) the store of one step of one job for one partition."""
        ...

    def close(self) -> None:
        """Close every store this backend opened."""
        ...


@dataclass(frozen=True, slots=True)
class StoreId:
    """Identifies a store; its fields are safe to use as folder names.

    Raises:
        ConfigError: a name is empty, ``.``/``..``, or contains a path separator
            or NUL; or the partition is negative.
    """

    job: str
    step: str
    partition: int

    def __post_init__(self) -> None:
        for label, value in (("job", self.job), ("step", self.step)):
            if value in ("", ".", "..") or any(ch in value for ch in "/\\\x00"):
                raise ConfigError(
                    f"{label} name {value!r} cannot name a state folder: "
                    "it must be non-empty, not '.' or '..', without '/', '\\' or NUL"
                )
        if isinstance(self.partition, bool) or not isinstance(self.partition, int):
            raise ConfigError(f"partition must be an int, not {type(self.partition).__name__}")
        if self.partition < 0:
            raise ConfigError(f"partition must be >= 0, not {self.partition}")

    def __str__(self) -> str:
        return f"job {self.job!r} step {self.step!r} partition {self.partition}"
