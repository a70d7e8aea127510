"""The playback health job's reference: its error feed and its rebuffers per CDN.

From the valid playback events (bad timestamps already left out):

* ``error_records``: one record per ``error`` event, in the published shape (the
  job's documentation, restated), as sorted ``(field, value)`` tuples with their
  multiplicity;
* ``rebuffers_per_cdn``: ``rebuffer_start`` events per (CDN, 10-second window start).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tests.reference.counts import window_counts

WINDOW_MS = 10_000
#: The fields of the published playback error, in the job's order.
ERROR_FIELDS = (
    "event_time_ms", "user_id", "title_id", "playback_id", "cdn", "device_type", "error_code",
)  # fmt: skip

ErrorRecord = tuple[tuple[str, Any], ...]


def error_records(events: Iterable[Mapping[str, Any]]) -> Counter[ErrorRecord]:
    """The error feed: each error event's published fields, as sorted items."""
    return Counter(
        tuple(sorted((f, e[f]) for f in ERROR_FIELDS)) for e in events if e["event_type"] == "error"
    )


def rebuffers_per_cdn(events: Iterable[Mapping[str, Any]]) -> Counter[tuple[Any, int]]:
    """Rebuffer starts per (CDN, window start) (a ``Counter``: 0 for any other)."""
    return Counter(
        window_counts((e for e in events if e["event_type"] == "rebuffer_start"), WINDOW_MS, "cdn")
    )
