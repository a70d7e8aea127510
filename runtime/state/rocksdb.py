"""RocksDB state (through rocksdict): hot entries in a dict, all committed state on disk.

Layout: one database per store, in ``<root>/<job>/<step>/<partition>``, in raw
(bytes) mode with one column family. Data keys are :func:`~runtime.state.serde.encode_key`
bytes, which never start with ``0x00``; that prefix holds the store's own
bookkeeping: ``00 'm' <name>`` for metadata set with ``put_meta`` and ``00 'c'``
for the exact number of data entries. ``items()`` starts at ``0x01`` and never
sees them. Keeping everything in one column family makes a checkpoint one atomic
write batch that needs no cross-family flush coordination.

How the cache stays correct:

- The disk holds committed state only: exactly what the last checkpoint wrote,
  together with the metadata written in the same batch. Nothing else is written
  between checkpoints, so a store that is closed or crashes without a checkpoint
  reopens at its last checkpoint and its metadata describes that state.
- Changes since the last checkpoint live in ``_dirty`` (a deleted key maps to a
  tombstone) and are never evicted or spilled. Writing them early would put
  uncommitted data on disk next to the metadata of an older checkpoint, and the
  engine could then take that local state for current. Memory therefore grows
  with the keys changed in one checkpoint interval; the engine bounds that by
  checkpointing every micro-batch or interval.
- ``_clean`` caches committed values (and committed absence, so a get of a new
  key reads the disk once) and is bounded: when clean plus dirty entries exceed
  ``cache_entries``, the oldest clean entries are dropped, down to 90% of the
  limit so eviction runs in chunks. A checkpoint appends the entries it wrote to
  ``_clean``, which keeps keys that are written often in the cache.
- ``len`` is exact: the committed count is stored in the checkpoint batch, and
  each dirty key remembers whether it existed on disk when first changed (known
  from the cache, or looked up with one multi-get when ``len`` or a checkpoint
  needs it).

Durability: checkpoint batches go through the write-ahead log without fsync, so
they survive a crash of the process; an OS crash may lose the last checkpoints
but recovery (point-in-time mode) never tears a batch, and the metadata then
names the older checkpoint, so the engine replays the changelog (the durable
copy, in Kafka) instead. ``restore`` writes without the log, because it ends with
a flush of the memtable to disk before it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn, cast

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    DBRecoveryMode,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from runtime.api.errors import ConfigError, StateError, StateFormatError
from runtime.api.files import private_dir
from runtime.state.base import Change, StoreId
from runtime.state.serde import (
    FORMAT,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    unvouched,
)

__all__ = ["RocksDBBackend", "RocksDBStore"]

_USER_META = b"\x00m"
_COUNT_KEY = b"\x00c"
_KEYSPACE_START = b"\x00"
_DATA_START = b"\x01"
_KEYSPACE_END = b"\xff"  # no encoded key or reserved key starts with 0xFF

_RESTORE_CHUNK = 10_000
# Shared by all stores of a backend; filters and indexes stay outside it, pinned.
_BLOCK_CACHE_BYTES = 64 * 1024 * 1024
# A worker holds a store per step and partition: keep memtables modest, and bound
# them all together (a worker with many partitions would otherwise hold one set each).
_WRITE_BUFFER_BYTES = 16 * 1024 * 1024
_MEMTABLE_BUDGET_BYTES = 96 * 1024 * 1024
# The dict caches of all stores of a backend share this many entries.
_TOTAL_CACHE_ENTRIES = 400_000
_MIN_CACHE_ENTRIES = 1_000
_BLOOM_BITS_PER_KEY = 10

_MISSING: Any = object()


def _while_prefixed(
    items: Iterator[tuple[Any, Any]], raw_prefix: bytes
) -> Iterator[tuple[Any, Any]]:
    """The leading run of ``items`` whose raw key starts with ``raw_prefix``."""
    for raw_key, raw_value in items:
        if not raw_key.startswith(raw_prefix):
            return
        yield raw_key, raw_value


class _Absent:
    """Marks a key known to have no value: a pending delete, or cached absence."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _db_options(block_cache: Cache, write_buffers: WriteBufferManager) -> Options:
    """Options for one store's database."""
    options = Options(raw_mode=True)
    options.set_write_buffer_manager(write_buffers)
    options.create_if_missing(True)
    options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    options.set_compression_type(DBCompressionType.lz4())
    options.set_write_buffer_size(_WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(3)
    options.set_level_compaction_dynamic_level_bytes(True)
    options.set_max_background_jobs(2)
    options.set_keep_log_file_num(2)
    table = BlockBasedOptions()
    table.set_block_cache(block_cache)
    # Gets of keys that do not exist yet (new windows) are common: filters answer them.
    table.set_bloom_filter(_BLOOM_BITS_PER_KEY, False)
    options.set_block_based_table_factory(table)
    return options


class RocksDBStore:
    """A state store on one RocksDB database, with a dict cache in front.

    Use :meth:`RocksDBBackend.open_store` rather than this constructor.

    Args:
        store_id: the job, step and partition the store belongs to.
        path: the database folder (created if missing, reopened if present).
        options: database options.
        cache_entries: the cache limit, in entries.
        on_close: called with ``store_id`` when the store closes.

    Raises:
        StateError: the database cannot be opened (locked, corrupt, not a folder).
    """

    def __init__(
        self,
        store_id: StoreId,
        path: Path,
        options: Options,
        cache_entries: int,
        on_close: Callable[[StoreId], None] | None = None,
    ) -> None:
        self.name = store_id.step
        self.store_id = store_id
        self.path = path
        self._limit = cache_entries
        self._low_water = cache_entries - cache_entries // 10
        self._on_close = on_close
        self._clean: dict[Hashable, Any] = {}
        self._dirty: dict[Hashable, Any] = {}
        # For each dirty key: did it exist on disk before? None until looked up.
        self._base: dict[Hashable, bool | None] = {}
        self._pending_meta: dict[str, bytes] = {}
        self._prepared: tuple[WriteBatch, bool, int, int] | None = None
        self._closed = False
        try:
            self._db = Rdict(str(path), options)
        except Exception as exc:
            raise StateError(f"cannot open RocksDB state of {store_id} at {path}: {exc}") from exc
        self._no_wal = WriteOptions()
        # A property at runtime; the shipped stubs declare it as a method.
        self._no_wal.disable_wal = True  # type: ignore[method-assign, assignment]
        try:
            self._disk_count = self._load_count()
            self._count_stale = False
        except Exception as exc:
            self._db.close()
            self._fail("reading the entry count", exc)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def set_cache_limit(self, entries: int) -> None:
        """Change how many entries the dict cache holds (evicting clean ones if over)."""
        self._limit = entries
        self._low_water = entries - entries // 10
        if len(self._clean) + len(self._dirty) > entries:
            self._evict()

    @property
    def cached_entries(self) -> int:
        """Entries held in memory: committed ones cached plus uncheckpointed changes."""
        return len(self._clean) + len(self._dirty)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``.

        Raises:
            StateError: the key cannot be encoded, or the disk read failed.
        """
        value = self._dirty.get(key, _MISSING)
        if value is _MISSING:
            value = self._clean.get(key, _MISSING)
            if value is _MISSING:
                value = self._load(key)
        return default if value is _ABSENT else value

    def get_many(self, keys: list[Hashable], default: Any = None) -> list[Any]:
        """:meth:`get` of every key in ``keys`` (a window step's batch of windows): one
        call instead of one per key; what is not in memory is read key by key
        (rocksdict's multi-get measured slower here than single reads).

        Raises:
            StateError: a key cannot be encoded, or the disk read failed.
        """
        dirty, clean, load = self._dirty, self._clean, self._load
        out: list[Any] = []
        append = out.append
        for key in keys:
            value = dirty.get(key, _MISSING)
            if value is _MISSING:
                value = clean.get(key, _MISSING)
                if value is _MISSING:
                    value = load(key)
            append(default if value is _ABSENT else value)
        return out

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``; it reaches the disk at the next checkpoint."""
        if self._closed:
            self._raise_closed()
        dirty = self._dirty
        if key not in dirty:
            cached = self._clean.pop(key, _MISSING)
            if cached is _MISSING:
                self._base[key] = None
                if self._clean and len(dirty) + len(self._clean) >= self._limit:
                    self._evict()
            else:
                self._base[key] = cached is not _ABSENT
        dirty[key] = value

    def put_new(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under a key the caller knows has no value, in memory or on
        disk (a window its step never scheduled): the checkpoint then needs no lookup
        of whether the key was on disk. A key found in memory takes :meth:`put`."""
        if key in self._dirty or key in self._clean:
            self.put(key, value)
            return
        if self._closed:
            self._raise_closed()
        self._base[key] = False
        dirty = self._dirty
        dirty[key] = value
        if self._clean and len(dirty) + len(self._clean) >= self._limit:
            self._evict()

    def delete(self, key: Hashable) -> None:
        """Remove ``key``; the delete reaches the disk at the next checkpoint."""
        self.put(key, _ABSENT)

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove ``key`` and return its value, or ``default`` when it had none (a
        window step's firing: one call where a get and a delete would be two)."""
        dirty = self._dirty
        value = dirty.get(key, _MISSING)
        if value is _MISSING:
            value = self.get(key, _MISSING)
            if value is _MISSING:
                return default
            self.put(key, _ABSENT)
            return value
        if value is _ABSENT:
            return default
        if self._closed:
            self._raise_closed()
        dirty[key] = _ABSENT  # its origin on disk is known already
        return value

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` has a value."""
        return self.get(key, _MISSING) is not _MISSING

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Iterate over all entries as of this call; the store may change meanwhile.

        Raises:
            StateError: the disk could not be read or an entry could not be decoded.
        """
        if self._closed:
            self._raise_closed()
        dirty = dict(self._dirty)
        try:
            # The iterator reads an implicit snapshot: later checkpoints do not show.
            disk = self._db.items(from_key=_DATA_START)
        except Exception as exc:
            self._fail("iterating", exc)
        return self._merge(disk, dirty)

    def items_with_prefix(self, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, Any]]:
        """Entries whose key is a tuple starting with ``prefix``: one range read on disk.

        Encoded tuple keys keep their elements' encodings in order, each
        self-delimiting, so these keys share the prefix's encoding (its closing
        terminator left off) and sit together in key order.

        Raises:
            StateError: the prefix cannot be encoded, or the disk could not be read.
        """
        if self._closed:
            self._raise_closed()
        raw_prefix = encode_key(tuple(prefix))[:-1]
        n = len(prefix)
        dirty: dict[Hashable, Any] = {
            k: v
            for k, v in self._dirty.items()
            if type(k) is tuple and len(k) >= n and k[:n] == prefix
        }
        try:
            disk = self._db.items(from_key=raw_prefix)
        except Exception as exc:
            self._fail("iterating", exc)
        return self._merge(_while_prefixed(disk, raw_prefix), dirty)

    def __len__(self) -> int:
        """The exact number of entries.

        Raises:
            StateError: the disk could not be read.
        """
        if self._closed:
            self._raise_closed()
        self._resolve_bases()
        count = self._count()
        base = self._base
        for key, value in self._dirty.items():
            count += (value is not _ABSENT) - bool(base[key])
        return count

    def checkpoint(self) -> list[Change]:
        """Write all changes and pending metadata in one batch and return the changes.

        Raises:
            StateError: a key or value cannot be encoded, or the write failed; the
                changes then stay pending.
        """
        changes = self.prepare_checkpoint()
        self.commit_checkpoint()
        return changes

    def prepare_checkpoint(self) -> list[Change]:
        """Encode the changes since the last checkpoint without writing them yet.

        The engine sends them to the changelog inside a Kafka transaction and calls
        :meth:`commit_checkpoint` only once that transaction committed, so the local
        database never holds state that Kafka does not. No writes may happen between
        the two calls.

        Raises:
            StateError: a key or value cannot be encoded.
        """
        if self._closed:
            self._raise_closed()
        encoded = self._resolve_bases()
        base = self._base
        count = self._count()
        batch = WriteBatch(raw_mode=True)
        changes: list[Change] = []
        add_change = changes.append
        try:
            for key, value in self._dirty.items():
                existed = base[key]
                raw_key = encoded.get(key)
                if value is _ABSENT:
                    if not existed:
                        continue  # created and deleted since the last checkpoint
                    if raw_key is None:
                        raw_key = encode_key(key)
                    batch.delete(raw_key)
                    add_change((raw_key, None))
                    count -= 1
                else:
                    if raw_key is None:
                        raw_key = encode_key(key)
                    raw_value = encode_value(value)
                    batch.put(raw_key, raw_value)
                    add_change((raw_key, raw_value))
                    count += not existed
        except StateError as exc:
            raise StateError(f"checkpoint of {self.store_id} failed: {exc}") from exc
        self._prepared = (batch, bool(changes), count, len(self._dirty))
        return changes

    def commit_checkpoint(self) -> None:
        """Write what :meth:`prepare_checkpoint` encoded, plus pending metadata.

        Raises:
            StateError: nothing was prepared, the store changed since, or the write failed.
        """
        if self._prepared is None:
            raise StateError(f"{self.store_id}: commit_checkpoint without prepare_checkpoint")
        batch, changed, count, dirty = self._prepared
        self._prepared = None
        if dirty != len(self._dirty):
            raise StateError(f"{self.store_id}: state changed between prepare and commit")
        if changed or self._pending_meta:
            for name, meta in self._pending_meta.items():
                batch.put(_USER_META + name.encode(), meta)
            batch.put(_COUNT_KEY, count.to_bytes(8, "big"))
            try:
                self._db.write(batch)
            except Exception as exc:
                self._fail("writing the checkpoint batch", exc)
        self._disk_count = count
        self._pending_meta = {}
        self._commit_cache()

    def restore(self, changes: Iterable[Change]) -> None:
        """Apply a changelog directly to the committed state on disk.

        The writes skip the write-ahead log and are flushed to disk before this
        returns. Metadata is not touched: set it and checkpoint afterwards.

        Raises:
            StateError: the store has uncheckpointed changes, an entry is not a
                valid change, or the write failed.
            StateFormatError: a value does not decode (corrupt, or an old format).
        """
        if self._closed:
            self._raise_closed()
        if self._dirty:
            raise StateError(f"cannot restore {self.store_id}: it has uncheckpointed changes")
        self._clean = {}
        listed = changes if isinstance(changes, list) else list(changes)
        for start in range(0, len(listed), _RESTORE_CHUNK):
            part = listed[start : start + _RESTORE_CHUNK]
            try:
                chunk: dict[bytes, bytes | None] = dict(part)  # the last change of a key wins
            except (TypeError, ValueError) as exc:
                raise StateError(f"restore of {self.store_id}: invalid changelog entry") from exc
            self._check_changes(chunk)
            self._restore_chunk(chunk)
        try:
            self._db.flush(wait=True)
        except Exception as exc:
            self._fail("flushing restored state", exc)

    def clear(self) -> None:
        """Delete all entries and metadata on disk and in memory, at once."""
        if self._closed:
            self._raise_closed()
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(_KEYSPACE_START, _KEYSPACE_END)
        batch.put(_COUNT_KEY, (0).to_bytes(8, "big"))
        try:
            self._db.write(batch)
        except Exception as exc:
            self._fail("clearing", exc)
        self._clean = {}
        self._dirty = {}
        self._base = {}
        self._pending_meta = {}
        self._disk_count = 0
        self._count_stale = False

    def close(self) -> None:
        """Close the database; changes since the last checkpoint are discarded."""
        if self._closed:
            return
        self._closed = True
        self._clean = {}
        self._dirty = {}
        self._base = {}
        self._pending_meta = {}
        if self._on_close is not None:
            self._on_close(self.store_id)
        try:
            self._db.close()
        except Exception as exc:
            self._fail("closing", exc)

    def get_meta(self, name: str) -> bytes | None:
        """Return a bookkeeping value, including one not yet checkpointed.

        Raises:
            StateError: the disk read failed.
        """
        if self._closed:
            self._raise_closed()
        pending = self._pending_meta.get(name)
        if pending is not None:
            return pending
        try:
            stored = self._db.get(_USER_META + name.encode())
        except Exception as exc:
            self._fail(f"reading metadata {name!r}", exc)
        return None if stored is None else bytes(stored)

    def put_meta(self, name: str, value: bytes) -> None:
        """Set a bookkeeping value; it is written with the next checkpoint batch."""
        if self._closed:
            self._raise_closed()
        self._pending_meta[name] = bytes(value)

    def _load(self, key: Hashable) -> Any:
        """Read ``key`` from disk into the clean cache; return its value or the tombstone."""
        if self._closed:
            self._raise_closed()
        try:
            raw_value = self._db.get(encode_key(key))
            value = _ABSENT if raw_value is None else decode_value(raw_value)
        except StateFormatError as exc:
            raise StateFormatError(f"{self.store_id} at {self.path}: {exc}") from exc
        except StateError as exc:
            raise StateError(f"reading key {key!r} of {self.store_id} failed: {exc}") from exc
        except Exception as exc:
            self._fail(f"reading key {key!r}", exc)
        clean = self._clean
        clean[key] = value
        if len(clean) + len(self._dirty) > self._limit:
            self._evict()
        return value

    def _evict(self) -> None:
        """Drop the oldest clean entries until the cache is under its low-water mark."""
        clean = self._clean
        excess = len(clean) - max(0, self._low_water - len(self._dirty))
        if excess > 0:
            for key in list(islice(clean, excess)):
                del clean[key]

    def _commit_cache(self) -> None:
        """After a checkpoint: the written entries become the newest clean entries."""
        written = self._dirty
        self._dirty = {}
        self._base = {}
        keep = self._low_water
        if len(written) >= keep:
            newest = list(islice(reversed(written.items()), keep))
            newest.reverse()
            self._clean = dict(newest)
        else:
            self._clean.update(written)
            self._evict()

    def _resolve_bases(self) -> dict[Hashable, bytes]:
        """Look up, in one multi-get, whether dirty keys of unknown origin exist on disk.

        Returns:
            The encoded keys it computed, for the caller to reuse.
        """
        base = self._base
        unknown = [key for key, existed in base.items() if existed is None]
        if not unknown:
            return {}
        try:
            raw_keys = [encode_key(key) for key in unknown]
            found = self._multi_get(raw_keys)
        except StateError as exc:
            raise StateError(f"{self.store_id}: {exc}") from exc
        except Exception as exc:
            self._fail("looking up changed keys", exc)
        for key, raw_value in zip(unknown, found, strict=True):
            base[key] = raw_value is not None
        return dict(zip(unknown, raw_keys, strict=True))

    def _check_changes(self, chunk: dict[bytes, bytes | None]) -> None:
        """Entries are decoded lazily later: check a chunk's now, so that bytes this
        version cannot read fail the restore, not some later read (a change that a
        later one of the same key replaces is never read, and not checked). The native
        walk vouches for plain entries; the rest are decoded here, in the chunk's order."""
        reserved = _KEYSPACE_START[0]
        for raw_key in unvouched(chunk, reserved, FORMAT):
            raw_value = chunk[raw_key]
            if type(raw_key) is not bytes or not raw_key or raw_key[0] == reserved:
                raise StateError(f"restore of {self.store_id}: invalid changelog key {raw_key!r}")
            if raw_value is not None and type(raw_value) is not bytes:
                raise StateError(
                    f"restore of {self.store_id}: changelog value of {raw_key!r} is not bytes"
                )
            try:
                decode_key(raw_key)
                if raw_value is not None:
                    decode_value(raw_value)
            except StateError as exc:
                raise StateFormatError(f"restore of {self.store_id}: {exc}") from exc

    def _restore_chunk(self, chunk: dict[bytes, bytes | None]) -> None:
        """Write one chunk of a changelog as it is, without reading what is there: the
        entry count is counted again when next needed (:meth:`_count`), and is not on
        disk meanwhile (a store opened after a crash mid-restore counts its entries)."""
        batch = WriteBatch(raw_mode=True)
        for raw_key, raw_value in chunk.items():
            if raw_value is None:
                batch.delete(raw_key)
            else:
                batch.put(raw_key, raw_value)
        if not self._count_stale:
            batch.delete(_COUNT_KEY)
        try:
            self._db.write(batch, self._no_wal)
        except Exception as exc:
            self._fail("writing restored state", exc)
        self._count_stale = True

    def _count(self) -> int:
        """The entry count on disk (counted once after a restore, kept up to date else)."""
        if self._count_stale:
            try:
                self._disk_count = sum(1 for _ in self._db.keys(from_key=_DATA_START))
            except Exception as exc:
                self._fail("counting restored entries", exc)
            self._count_stale = False
        return self._disk_count

    def _multi_get(self, raw_keys: list[bytes]) -> list[bytes | None]:
        """Read many keys in one call; ``None`` for the missing ones."""
        keys: list[str | int | float | bytes | bool] = list(raw_keys)
        return cast(list[bytes | None], self._db.get(keys))

    def _load_count(self) -> int:
        """The committed entry count: stored, or counted for a database without one."""
        stored = self._db.get(_COUNT_KEY)
        if stored is not None:
            return int.from_bytes(stored, "big")
        return sum(1 for _ in self._db.keys(from_key=_DATA_START))

    def _merge(
        self, disk: Iterator[tuple[Any, Any]], dirty: dict[Hashable, Any]
    ) -> Iterator[tuple[Any, Any]]:
        """Yield committed entries not changed since, then the live changed ones."""
        try:
            for raw_key, raw_value in disk:
                key = decode_key(raw_key)
                if key not in dirty:
                    yield key, decode_value(raw_value)
        except StateFormatError as exc:
            raise StateFormatError(f"{self.store_id} at {self.path}: {exc}") from exc
        except StateError as exc:
            raise StateError(f"iterating {self.store_id} failed: {exc}") from exc
        except Exception as exc:
            self._fail("iterating", exc)
        for key, value in dirty.items():
            if value is not _ABSENT:
                yield key, value

    def _fail(self, action: str, exc: BaseException) -> NoReturn:
        raise StateError(f"RocksDB state of {self.store_id}: {action} failed: {exc}") from exc

    def _raise_closed(self) -> NoReturn:
        raise StateError(f"state store of {self.store_id} is closed")


class RocksDBBackend:
    """Opens :class:`RocksDBStore` instances under one root folder.

    Args:
        root_dir: the state folder; stores live in ``<root>/<job>/<step>/<partition>``.
        cache_entries: per store, how many entries the dict cache holds at most
            (changes not yet checkpointed are always kept on top of committed
            entries that fit).
        total_cache_entries: how many entries the caches of all open stores hold
            together: each open store gets an equal share (at least 1,000), up to
            ``cache_entries``. Memtables of all stores share one budget too.

    Raises:
        ConfigError: ``cache_entries`` is negative.
    """

    def __init__(
        self,
        root_dir: Path,
        cache_entries: int = 100_000,
        total_cache_entries: int = _TOTAL_CACHE_ENTRIES,
    ) -> None:
        if isinstance(cache_entries, bool) or not isinstance(cache_entries, int):
            raise ConfigError(f"cache_entries must be an int, not {type(cache_entries).__name__}")
        if cache_entries < 0:
            raise ConfigError(f"cache_entries must be >= 0, not {cache_entries}")
        self.root_dir = Path(root_dir)
        self.cache_entries = cache_entries
        self.total_cache_entries = total_cache_entries
        self._block_cache = Cache(_BLOCK_CACHE_BYTES)
        self._write_buffers = WriteBufferManager(_MEMTABLE_BUDGET_BYTES, False)
        self._stores: dict[StoreId, RocksDBStore] = {}
        self._closed = False

    def open_store(self, job: str, step: str, partition: int) -> RocksDBStore:
        """Open the store of one step for one partition, reopening existing data.

        Raises:
            ConfigError: a name cannot be used as a folder name.
            StateError: the backend is closed, the store is already open, or the
                database cannot be opened.
        """
        if self._closed:
            raise StateError(f"RocksDB state backend at {self.root_dir} is closed")
        store_id = StoreId(job, step, partition)
        if store_id in self._stores:
            raise StateError(f"state store of {store_id} is already open")
        path = self.root_dir / job / step / str(partition)
        try:
            # owner-only (0700) whatever the umask: state holds the job's data
            private_dir(path)
        except OSError as exc:
            raise StateError(f"cannot create the state folder of {store_id}: {exc}") from exc
        store = RocksDBStore(
            store_id,
            path,
            _db_options(self._block_cache, self._write_buffers),
            self._share(len(self._stores) + 1),
            on_close=self._forget,
        )
        self._stores[store_id] = store
        self._rebalance()
        return store

    def _share(self, stores: int) -> int:
        """The cache limit of each store when ``stores`` are open."""
        share = max(_MIN_CACHE_ENTRIES, self.total_cache_entries // max(1, stores))
        return min(self.cache_entries, share)

    def _rebalance(self) -> None:
        limit = self._share(len(self._stores))
        for store in self._stores.values():
            store.set_cache_limit(limit)

    def close(self) -> None:
        """Close every open store (without checkpointing) and the backend."""
        self._closed = True
        for store in list(self._stores.values()):
            store.close()
        self._stores.clear()

    def _forget(self, store_id: StoreId) -> None:
        self._stores.pop(store_id, None)
        if not self._closed:
            self._rebalance()
