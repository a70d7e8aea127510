"""Brute-force references: the independent answers the tests and the bench compare with.

Each module recomputes what a job or an engine step should output, from scratch and
as plainly as possible, from the definitions in the job's documentation. A reference
shares no code with the engine or the job it checks (a job's published record shape
or id format aside), so a bug in one is not repeated in the other.

Unit tests, integration tests and the bench (``bench/checks.py``) import them from
here; this package imports nothing else from ``tests`` and nothing from ``bench``.

* ``events``: what every reference agrees on about input events (valid timestamps,
  the order of event types at equal times).
* ``counts``: events per key and tumbling window.
* ``windows``: windowed aggregation and sessions of a keyed stream (engine tests).
* ``sessionization``, ``qoe``, ``personalization``, ``alerts``, ``playback_health``:
  the reference jobs.
"""
