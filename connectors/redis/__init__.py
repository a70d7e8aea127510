"""Redis sink: latest values as hashes, top-N as sorted sets, for dashboards to read.

Bind a sink with ``--bind NAME=redis://HOST:PORT/DB?prefix=...&key=...&ttl=...``
(see :mod:`connectors.redis.config` for the key layout, the parameters and the
defaults per schema, :mod:`connectors.redis.sink` for atomicity and retries).
"""

from connectors.redis.config import (
    DEFAULTS,
    Backoff,
    HashWrite,
    Layout,
    RedisConfig,
    config_from_url,
)
from connectors.redis.sink import RedisSink

__all__ = [
    "DEFAULTS",
    "Backoff",
    "HashWrite",
    "Layout",
    "RedisConfig",
    "RedisSink",
    "config_from_url",
]
