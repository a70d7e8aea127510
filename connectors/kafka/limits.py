"""What a topic accepts: record timestamps and sizes, read from the broker's configs.

Kafka 4 brokers refuse records stamped more than ``message.timestamp.after.max.ms``
(default one hour) ahead of the broker's clock or more than
``message.timestamp.before.max.ms`` (default: no limit) behind it, and record batches
larger than ``max.message.bytes``; a topic may override each, and a refused record
inside a transaction makes the whole checkpoint abort. The transport checks every
record against these limits *before* producing it (see ``connectors.kafka.transport``),
so the broker never refuses one: timestamps are clamped into the accepted window,
records that cannot be made acceptable are dead-lettered.

Topics with ``message.timestamp.type=LogAppendTime`` take any timestamp (the broker
stamps them itself).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Kafka 4's broker defaults, used for topics whose configs cannot be read.
DEFAULT_AFTER_MAX_MS = 3_600_000
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: Stay this far inside the timestamp window: the broker's clock may differ from ours.
CLOCK_MARGIN_MS = 60_000
#: Room left in ``max.message.bytes`` for the record batch's own framing and headers.
FRAMING_BYTES = 1_024
#: Above this, a limit means "no limit" (Kafka's default is Long.MAX_VALUE).
_UNBOUNDED = 2**62


@dataclass(frozen=True, slots=True)
class TopicLimits:
    """The timestamps and sizes one topic accepts.

    Attributes:
        after_max_ms: how far ahead of the broker's clock a timestamp may be
            (``None``: no limit).
        before_max_ms: how far behind it (``None``: no limit).
        max_message_bytes: the largest record batch the topic takes.
    """

    after_max_ms: int | None = DEFAULT_AFTER_MAX_MS
    before_max_ms: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def window(self, now_ms: int) -> tuple[int, int]:
        """``(lowest, highest)`` timestamp to write at ``now_ms``, margins applied.

        The margin is a minute, or half the limit when the limit is shorter.

        >>> TopicLimits(after_max_ms=3_600_000).window(10_000_000)[1]
        13540000
        """
        lo, hi = -(2**63), 2**63 - 1
        if self.after_max_ms is not None:
            hi = now_ms + self.after_max_ms - min(CLOCK_MARGIN_MS, self.after_max_ms // 2)
        if self.before_max_ms is not None:
            lo = now_ms - self.before_max_ms + min(CLOCK_MARGIN_MS, self.before_max_ms // 2)
        return lo, hi

    @property
    def max_record_bytes(self) -> int:
        """The largest key plus value written as one record (framing left aside)."""
        return max(0, self.max_message_bytes - FRAMING_BYTES)


def limits_from_configs(configs: dict[str, str | None]) -> TopicLimits:
    """Limits from a topic's effective configs (``name -> value``; broker defaults
    included, as DescribeConfigs reports them)."""
    if configs.get("message.timestamp.type") == "LogAppendTime":
        return TopicLimits(
            after_max_ms=None,
            before_max_ms=None,
            max_message_bytes=_int(configs.get("max.message.bytes"), DEFAULT_MAX_MESSAGE_BYTES),
        )
    after = _bound(configs.get("message.timestamp.after.max.ms"), DEFAULT_AFTER_MAX_MS)
    before = _bound(configs.get("message.timestamp.before.max.ms"), None)
    # Older brokers: one symmetric limit (deprecated in Kafka 3.6, gone in 4).
    diff = _bound(configs.get("message.timestamp.difference.max.ms"), None)
    if diff is not None:
        after = diff if after is None else min(after, diff)
        before = diff if before is None else min(before, diff)
    return TopicLimits(
        after_max_ms=after,
        before_max_ms=before,
        max_message_bytes=_int(configs.get("max.message.bytes"), DEFAULT_MAX_MESSAGE_BYTES),
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _bound(text: str | None, default: int | None) -> int | None:
    if text is None:
        return default
    value = _int(text, -1)
    if value < 0:
        return default
    return None if value >= _UNBOUNDED else value
