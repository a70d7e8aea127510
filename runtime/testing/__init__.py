"""The test driver: run a job with no broker, event time and processing time by hand.

Feed records with explicit timestamps to a job's sources, advance watermarks and
the processing clock, then read every sink, the late outputs and the dead letters.
Deterministic: nothing depends on the wall clock or on threads.

>>> from datetime import timedelta
>>> from runtime import Job, Json, WatermarkStrategy, windows
>>> from runtime.aggregates import Count
>>> from runtime.testing import TestDriver
>>> job = Job("clicks")
>>> (job.source("events", schema="", timestamp=lambda e: e["ts"],   # "": JSON records
...             watermarks=WatermarkStrategy.bounded(timedelta(seconds=5)))
...     .key_by("by_user", lambda e: e["user"])
...     .window("per_10s", windows.tumbling(timedelta(seconds=10)))
...     .aggregate(Count())
...     .sink("counts", Json()))
>>> driver = TestDriver(job)
>>> T0 = 1_700_000_000_000    # event times are epoch ms
>>> for ts in (T0 + 1_000, T0 + 4_000, T0 + 12_000):
...     driver.send("events", {"user": "u1", "ts": ts})
>>> driver.output("counts")   # nothing yet: the watermark is at 12 s - 5 s
[]
>>> driver.advance_watermark(T0 + 10_000)
>>> [(r["window_start_ms"] - T0, r["value"]) for r in driver.output("counts")]
[(0, 2)]
"""

from runtime.testing.driver import TestDriver, TestRecord

__all__ = ["TestDriver", "TestRecord"]
