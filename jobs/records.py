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

__all__ = ["DeviceType", "PlaybackEvent", "PlaybackEventType"]

DeviceType = Literal["tv", "mobile", "tablet", "web", "console"]
PlaybackEventType = Literal[
    "start", "play", "pause", "resume", "seek", "rebuffer_start", "rebuffer_end",
    "bitrate_change", "error", "heartbeat", "stop",
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
