"""The native engine: runs a job graph over Kafka partitions, one task per partition.

=================  =====================================================================
module             where it happens
=================  =====================================================================
``worker``         the loop: poll a batch, run the tasks, write outputs, checkpoint when due
``assignment``     which task owns which partition; tasks open and close with partitions
``checkpoint``     taking a checkpoint: the commit steps, in order; ``CheckpointMeta``
``recovery``       restoring a task (local state or changelog), rewinding the consumer
``outputs``        encoding sink records, internal records and dead letters for the transport
``topics``         names of changelog and repartition topics, message keys
``ports``          what the worker needs from Kafka (transport, offsets, changelog reader)
``task``           one pipeline instance: decode, event-time checks, operators, counters
``context``        what an operator may ask of its task
``operators``      stateless steps; ``windows``: where windows fire; ``process``: keyed
                   state and timers; ``repartition``: ``key_by`` through internal topics
``watermarks``     event time per partition and per task
``queryable``      state lookups by key; ``calls``: calls from other threads; ``stats``:
                   histograms and the ``WorkerStats`` snapshot the HTTP service reads
=================  =====================================================================
"""
