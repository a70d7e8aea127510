"""Live QoE metrics per (title, device type, country, CDN) and per CDN, as ``QoeMetric``."""

from jobs.qoe.job import build, job

__all__ = ["build", "job"]
