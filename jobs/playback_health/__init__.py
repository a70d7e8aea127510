"""Playback health: playback errors as they happen, and rebuffers per CDN per 10 seconds."""

from jobs.playback_health.job import job

__all__ = ["job"]
