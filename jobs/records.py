"""Typed views of the input records the reference jobs read, for type checkers.

A source decodes each Avro record into a plain dict; a ``TypedDict`` of the schema's
fields tells a type checker what that dict holds, so ``mypy --strict`` catches a job
that reads a field the schema does not have, or reads it as the wrong type:

    playback = job.source("playback", schema="PlaybackEvent", record=PlaybackEvent)

Each ``TypedDict`` here lists its schema's fields with the Python types the decoder
gives them (enums as ``Literal`` strings); a unit test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "DeviceType",
    "InteractionEvent",
    "InteractionEventType",
    "PlaybackEvent",
    "PlaybackEventType",
    "TitleCatalogEntry",
]

DeviceType = Literal["tv", "mobile", "tablet", "web", "console"]
PlaybackEventType = Literal[
    "start", "play", "pause", "resume", "seek", "rebuffer_start", "rebuffer_end",
    "bitrate_change", "error", "heartbeat", "stop",
]  # fmt: skip
InteractionEventType = Literal[
    "impression", "hover", "search", "play_intent", "add_to_list", "remove_from_list",
    "thumbs_up", "thumbs_down", "rating",
]  # fmt: skip


class PlaybackEvent(TypedDict):
    """A ``PlaybackEvent`` (``schemas/PlaybackEvent.avsc``)."""

    event_id: str
    user_id: str
    profile_id: str
    device_id: str
    device_type: DeviceType
    app_version: str
    country: str
    isp: str
    cdn: str
    title_id: str
    playback_id: str
    event_type: PlaybackEventType
    event_time_ms: int
    position_ms: int
    bitrate_kbps: int
    buffer_ms: int
    error_code: str | None
    seek_from_ms: int | None


class InteractionEvent(TypedDict):
    """An ``InteractionEvent`` (``schemas/InteractionEvent.avsc``)."""

    event_id: str
    user_id: str
    profile_id: str
    device_id: str
    device_type: DeviceType
    country: str
    event_type: InteractionEventType
    event_time_ms: int
    title_id: str | None
    genre: str | None
    row_name: str | None
    row_index: int | None
    rank: int | None
    search_query: str | None
    rating: int | None


class TitleCatalogEntry(TypedDict):
    """A ``TitleCatalogEntry`` (``schemas/TitleCatalogEntry.avsc``): one catalogue title."""

    title_id: str
    genre: str
    kind: str
    duration_ms: int
