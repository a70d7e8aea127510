"""Chaos runs: kill a running job's workers at random, then prove its outputs exact.

``shoal chaos JOB`` (:mod:`runtime.cli.chaos_cmd`) drives a job that already runs,
through four parts, one module each:

==============  ======================================================================
module          what it does
==============  ======================================================================
``schedule``    when each fault happens: seeded random intervals, one kind per fault
``faults``      how a fault is done: the ``Target`` protocol (a job's workers: list,
                kill) with its local target (``shoal run --workers N``), pausing a
                process (the local broker, a local Redis or PostgreSQL)
``kubernetes``  the same ``Target`` for a StatefulSet's pods (untested here: no cluster)
``campaign``    the fault period: faults done on time, lag and throughput sampled each
                second
``replay``      the input range the job read and the outputs it committed, from Kafka,
                and the job's own graph run over that range in the test driver
``verdict``     outputs compared key by key as multisets: lost and duplicated
``report``      ``chaos.md`` and ``timeline.png``
==============  ======================================================================
"""

from runtime.chaos.schedule import Fault, plan
from runtime.chaos.verdict import Comparison, compare, summary_line

__all__ = ["Comparison", "Fault", "compare", "plan", "summary_line"]
