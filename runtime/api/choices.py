"""The fixed choices of how a job runs: its delivery guarantee and its state backend.

Each is defined once, here: a ``Literal`` type (so a type checker catches
``state="rocksbd"``), the tuple of its values (command-line choices) and a check that
turns any other string into a one-line :class:`ConfigError`.

>>> GUARANTEES
('exactly_once', 'at_least_once')
>>> check_state_backend("memory")
'memory'
>>> check_state_backend("disk")
Traceback (most recent call last):
...
runtime.api.errors.ConfigError: unknown state backend 'disk': use rocksdb or memory
"""

from __future__ import annotations

from typing import Literal, get_args

from runtime.api.errors import ConfigError

__all__ = [
    "GUARANTEES",
    "STATE_BACKENDS",
    "Guarantee",
    "StateBackendName",
    "check_guarantee",
    "check_state_backend",
]

Guarantee = Literal["exactly_once", "at_least_once"]
"""``exactly_once``: outputs, state and input offsets commit in one Kafka transaction;
``at_least_once``: outputs are flushed, then offsets committed (a crash may repeat)."""

StateBackendName = Literal["rocksdb", "memory"]
"""``rocksdb``: on local disk, restored from there or from its changelog; ``memory``:
in the process, restored from its changelog."""

GUARANTEES: tuple[Guarantee, ...] = get_args(Guarantee)
STATE_BACKENDS: tuple[StateBackendName, ...] = get_args(StateBackendName)


def check_guarantee(value: str) -> Guarantee:
    """``value`` as a :data:`Guarantee`.

    Raises:
        ConfigError: it is none of them.
    """
    for choice in GUARANTEES:
        if value == choice:
            return choice
    raise ConfigError(f"unknown guarantee {value!r}: use {' or '.join(GUARANTEES)}")


def check_state_backend(value: str) -> StateBackendName:
    """``value`` as a :data:`StateBackendName`.

    Raises:
        ConfigError: it is none of them.
    """
    for choice in STATE_BACKENDS:
        if value == choice:
            return choice
    raise ConfigError(f"unknown state backend {value!r}: use {' or '.join(STATE_BACKENDS)}")
