"""Per-user playback event counts in 10-second event-time windows (benchmark W1, chaos tests)."""

from jobs.user_counts.job import build, job

__all__ = ["build", "job"]
