"""Sessionization: viewing sessions per user and device, as ``SessionSummary`` records."""

from jobs.sessionization.job import build, job

__all__ = ["build", "job"]
