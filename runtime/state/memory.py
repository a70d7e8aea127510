"""In-memory state: plain dicts, for tests, local runs and small state.

Nothing survives the process or a ``close``: reopening a store gives an empty
store whose metadata is unset, so the engine restores it from the changelog.
Checkpoints still return the changes since the previous checkpoint, so the
changelog works exactly as with the RocksDB backend.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any, NoReturn

from runtime.api.errors import StateError, StateFormatError
from runtime.state.base import Change, StoreId
from runtime.state.serde import decode_key, decode_value, encode_key, encode_value

__all__ = ["MemoryBackend", "MemoryStore"]

_MISSING: Any = object()


class MemoryStore:
    """A state store held in a dict.

    Args:
        store_id: the job, step and partition the store belongs to.
    """

    def __init__(self, store_id: StoreId) -> None:
        self.name = store_id.step
        self.store_id = store_id
        self._data: dict[Hashable, Any] = {}
        # Keys put or deleted since the last checkpoint, in first-change order, with
        # whether each existed at that checkpoint: a key created and deleted in between
        # needs no changelog entry (window state mostly lives and dies that way).
        self._dirty: dict[Hashable, bool] = {}
        self._meta: dict[str, bytes] = {}
        self._pending_meta: dict[str, bytes] = {}
        # Tuple keys by their first element, so a prefix read touches only the keys
        # it returns (queryable state asks for ``(key, ...)`` of one key at a time).
        # Built by the first prefix read and kept up to date from then on: a job whose
        # state nobody reads by prefix never pays for it.
        self._heads: dict[Hashable, dict[tuple[Any, ...], None]] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""
        if self._closed:
            self._raise_closed()
        return self._data.get(key, default)

    def get_many(self, keys: list[Hashable], default: Any = None) -> list[Any]:
        """:meth:`get` of every key in ``keys``."""
        if self._closed:
            self._raise_closed()
        get = self._data.get
        return [get(key, default) for key in keys]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``."""
        if self._closed:
            self._raise_closed()
        data = self._data
        dirty = self._dirty
        if key not in dirty:
            existed = key in data
            dirty[key] = existed
            if not existed and self._heads is not None and type(key) is tuple and key:
                self._index(key)
        elif self._heads is not None and type(key) is tuple and key and key not in data:
            self._index(key)  # deleted, now put again
        data[key] = value

    def put_new(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under a key the caller knows has none (here: :meth:`put`)."""
        self.put(key, value)

    def delete(self, key: Hashable) -> None:
        """Remove ``key`` if present."""
        if self._closed:
            self._raise_closed()
        if key not in self._dirty:
            self._dirty[key] = key in self._data
        if (
            self._data.pop(key, _MISSING) is not _MISSING
            and self._heads is not None
            and type(key) is tuple
            and key
        ):
            self._unindex(key)

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove ``key`` and return its value, or ``default`` when it had none."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        self.delete(key)
        return value

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` has a value."""
        if self._closed:
            self._raise_closed()
        return key in self._data

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Iterate over a snapshot of all entries; the store may change meanwhile."""
        if self._closed:
            self._raise_closed()
        return iter(list(self._data.items()))

    def items_with_prefix(self, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, Any]]:
        """A snapshot of the entries whose key is a tuple starting with ``prefix``."""
        if self._closed:
            self._raise_closed()
        n = len(prefix)
        data = self._data
        if n == 0:
            return iter([(k, v) for k, v in data.items() if type(k) is tuple])
        heads = self._heads
        if heads is None:
            heads = self._heads = {}
            for key in data:
                if type(key) is tuple and key:
                    self._index(key)
        keys = heads.get(prefix[0], {})
        return iter([(k, data[k]) for k in list(keys) if len(k) >= n and k[:n] == prefix])

    def _index(self, key: tuple[Any, ...]) -> None:
        if self._heads is not None:
            self._heads.setdefault(key[0], {})[key] = None

    def _unindex(self, key: tuple[Any, ...]) -> None:
        heads = self._heads
        keys = heads.get(key[0]) if heads is not None else None
        if heads is not None and keys is not None:
            keys.pop(key, None)
            if not keys:
                del heads[key[0]]

    def __len__(self) -> int:
        """The exact number of entries."""
        if self._closed:
            self._raise_closed()
        return len(self._data)

    def checkpoint(self) -> list[Change]:
        """Return the changes since the last checkpoint and start tracking anew.

        Raises:
            StateError: a changed key or value cannot be encoded.
        """
        changes = self.prepare_checkpoint()
        self.commit_checkpoint()
        return changes

    def prepare_checkpoint(self) -> list[Change]:
        """Encode the changes since the last checkpoint (see the RocksDB store).

        Raises:
            StateError: a changed key or value cannot be encoded.
        """
        if self._closed:
            self._raise_closed()
        data = self._data
        changes: list[Change] = []
        try:
            for key, existed in self._dirty.items():
                value = data.get(key, _MISSING)
                if value is _MISSING:
                    if existed:
                        changes.append((encode_key(key), None))
                else:
                    changes.append((encode_key(key), encode_value(value)))
        except StateError as exc:
            raise StateError(f"checkpoint of {self.store_id} failed: {exc}") from exc
        return changes

    def commit_checkpoint(self) -> None:
        """Start tracking changes anew and apply pending metadata."""
        self._dirty = {}
        self._meta.update(self._pending_meta)
        self._pending_meta = {}

    def restore(self, changes: Iterable[Change]) -> None:
        """Apply a changelog to the store as already-checkpointed state.

        Raises:
            StateError: the store has uncheckpointed changes.
            StateFormatError: a key or value of the changelog does not decode.
        """
        if self._closed:
            self._raise_closed()
        if self._dirty:
            raise StateError(f"cannot restore {self.store_id}: it has uncheckpointed changes")
        data = self._data
        try:
            for raw_key, raw_value in changes:
                key = decode_key(raw_key)
                if raw_value is None:
                    if data.pop(key, _MISSING) is not _MISSING and type(key) is tuple and key:
                        self._unindex(key)
                else:
                    if type(key) is tuple and key and key not in data:
                        self._index(key)
                    data[key] = decode_value(raw_value)
        except StateError as exc:  # malformed keys and values alike
            raise StateFormatError(f"restore of {self.store_id} failed: {exc}") from exc

    def clear(self) -> None:
        """Drop all entries, pending changes and metadata."""
        if self._closed:
            self._raise_closed()
        self._data = {}
        self._dirty = {}
        self._heads = None
        self._meta = {}
        self._pending_meta = {}

    def close(self) -> None:
        """Release the store, discarding everything in it."""
        if self._closed:
            return
        self._closed = True
        self._data = {}
        self._dirty = {}
        self._heads = None
        self._meta = {}
        self._pending_meta = {}

    def get_meta(self, name: str) -> bytes | None:
        """Return a bookkeeping value, including one not yet checkpointed."""
        if self._closed:
            self._raise_closed()
        value = self._pending_meta.get(name)
        return value if value is not None else self._meta.get(name)

    def put_meta(self, name: str, value: bytes) -> None:
        """Set a bookkeeping value; it takes effect with the next checkpoint."""
        if self._closed:
            self._raise_closed()
        self._pending_meta[name] = bytes(value)

    def _raise_closed(self) -> NoReturn:
        raise StateError(f"state store of {self.store_id} is closed")


class MemoryBackend:
    """Opens :class:`MemoryStore` instances; one store per (job, step, partition) at a time."""

    def __init__(self) -> None:
        self._stores: dict[StoreId, MemoryStore] = {}
        self._closed = False

    def open_store(self, job: str, step: str, partition: int) -> MemoryStore:
        """Open an empty store.

        Raises:
            ConfigError: a name cannot identify a store.
            StateError: the backend is closed, or the store is already open.
        """
        if self._closed:
            raise StateError("memory state backend is closed")
        store_id = StoreId(job, step, partition)
        current = self._stores.get(store_id)
        if current is not None and not current.closed:
            raise StateError(f"state store of {store_id} is already open")
        store = MemoryStore(store_id)
        self._stores[store_id] = store
        return store

    def close(self) -> None:
        """Close every store this backend opened, and the backend."""
        self._closed = True
        for store in self._stores.values():
            store.close()
        self._stores.clear()
