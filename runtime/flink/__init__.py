"""The Flink engine: the same job graph, translated to a PyFlink DataStream job.

``run_on_flink(job, bindings, options, connectors=...)`` reads the job's sources with
Flink's Kafka connector, runs every step as a Flink operator (windows with Flink's window
operator and the job's own ``AggregateFunction`` objects, ``process()`` steps with
Flink keyed state and timers) and writes the sinks with Kafka transactions
(exactly-once), checkpointing into RocksDB. ``FlinkOptions`` says where and how;
``FlinkConnectors`` (``runtime.composition.FLINK_CONNECTORS``) is what it uses of the
connectors. ``runtime.flink.engine.FlinkEngine`` is the engine ``shoal run --engine
flink`` runs.

pyflink is an optional extra (``pip install shoal[flink]``): importing this package
does not need it; ``require_pyflink()`` (called by ``run_on_flink``) says what to
install when it is missing. ``runtime.flink._pyflink`` is the one module that
imports pyflink.

Where the two engines differ is listed in ``runtime.flink.translate``'s docstring.
"""

from __future__ import annotations

from runtime.flink.options import FlinkConnectors, FlinkOptions, require_pyflink
from runtime.flink.submit import FlinkRun, run_on_flink

__all__ = ["FlinkConnectors", "FlinkOptions", "FlinkRun", "require_pyflink", "run_on_flink"]
