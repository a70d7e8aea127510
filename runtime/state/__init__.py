"""State backends for the keyed state of named steps: in memory, or RocksDB on disk.

The engine opens one :class:`StateStore` per (job, step, partition) through a
:class:`StateBackend` and uses nothing else: ``get``/``put``/``delete`` in the hot
path, ``checkpoint`` to make changes durable and obtain them as a changelog,
``restore`` to replay a changelog, and ``get_meta``/``put_meta`` for bookkeeping
written atomically with a checkpoint.
"""

from runtime.state.base import Change, StateBackend, StateStore, StoreId
from runtime.state.memory import MemoryBackend, MemoryStore
from runtime.state.rocksdb import RocksDBBackend, RocksDBStore
from runtime.state.serde import decode_key, decode_value, encode_key, encode_value

__all__ = [
    "Change",
    "MemoryBackend",
    "MemoryStore",
    "RocksDBBackend",
    "RocksDBStore",
    "StateBackend",
    "StateStore",
    "StoreId",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
]
