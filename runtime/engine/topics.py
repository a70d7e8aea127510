"""Names of a job's internal topics, and the message key of a record key.

Both engines and the runner agree on these: the runner creates the topics, the worker
writes and restores through them, and the Flink engine keys sink records exactly as
the native engine does.

==========================  ==========================================================
topic                       holds
==========================  ==========================================================
``<app>.<step>.changelog``  a stateful step's state changes (compacted), one
                            partition per task
``<app>.<step>.repartition`` records of a repartitioning ``key_by`` on their way to the
                            task that owns their key, and watermark markers
==========================  ==========================================================

``app`` is the job's consumer group (its name unless another group is given), so two
deployments of one job never share internal topics.
"""

from __future__ import annotations

from typing import Any

from runtime.api.graph import KeyByNode
from runtime.api.job import Job
from runtime.engine.repartition import internal_source

__all__ = ["changelog_topic", "internal_topics", "key_bytes", "message_key", "repartition_topic"]


def repartition_topic(app: str, step: str) -> str:
    """The internal topic a repartitioning ``key_by`` step writes through.

    >>> repartition_topic("clicks", "by_user")
    'clicks.by_user.repartition'
    """
    return f"{app}.{step}.repartition"


def internal_topics(job: Job, app: str) -> dict[str, str]:
    """The internal topics of a job's repartitioning ``key_by`` steps, each mapped to the
    internal source that reads it back."""
    return {
        repartition_topic(app, n.name): internal_source(n.name)
        for n in job.nodes
        if isinstance(n, KeyByNode) and n.repartition
    }


def changelog_topic(app: str, step: str) -> str:
    """The compacted topic that holds a stateful step's changes (``app``: the group).

    >>> changelog_topic("clicks", "per_minute")
    'clicks.per_minute.changelog'
    """
    return f"{app}.{step}.changelog"


def key_bytes(key: Any) -> bytes | None:
    """The message key for a record key: bytes as they are, tuples joined with ``|``.

    >>> key_bytes(("t1", "mobile")), key_bytes(42), key_bytes(None)
    (b't1|mobile', b'42', None)
    """
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, tuple):
        return "|".join(str(k) for k in key).encode()
    return str(key).encode()


def message_key(key: Any) -> bytes | None:
    """:func:`key_bytes` with the common case inlined (the sink writer's hot path)."""
    if type(key) is str:
        return key.encode()
    return key_bytes(key)
