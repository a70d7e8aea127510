"""What the references agree on about input events.

The bounds are the watermark strategy's defaults: an event time outside them is a bad
timestamp (dead-lettered), not an event. ``RANK`` orders a playback's events of equal
event time the way a player emits them.
"""

from __future__ import annotations

MIN_VALID_MS = 1_000_000_000_000  # the watermark strategy's default lower bound
MAX_FUTURE_MS = 10 * 60_000  # ... and how far ahead of the processing clock (default)

RANK = [
    "start",
    "play",
    "resume",
    "bitrate_change",
    "heartbeat",
    "seek",
    "pause",
    "rebuffer_start",
    "rebuffer_end",
    "error",
    "stop",
]
