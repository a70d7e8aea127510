"""Live impression attribution: click-through rate per browse row/rank and per genre."""

from jobs.attribution.job import build, job

__all__ = ["build", "job"]
