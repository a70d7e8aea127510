"""Savepoints: a running job's state and positions as a portable, versioned folder
(a local one, or a prefix of an object store such as ``s3://bucket/prefix``).

Where things happen:

==================  ==============================================================
module              does
==================  ==============================================================
``coordinator``     ``shoal savepoint`` / ``stop`` / ``scale``: the command side of
                    the control protocol (``runtime.engine.control`` is the worker's)
``take``            writes a savepoint from a cut: committed offsets + changelogs
``format``          the folder: ``manifest.json`` and the state files
``storage``         where the folder lives: a local folder or an fsspec URL, the
                    one place that reads and writes savepoint files
``layouts``         a stateful step's store entries as savepoint rows, and back
``datum``           generic state values as Avro (``shoal.savepoint.Datum``)
``compat``          a new job against a savepoint: kept, renamed, added, dropped,
                    how values change, problems one line per step
``restore``         ``shoal run --from-savepoint``: check, load, seed the group
``wiring``          the hook that gives a worker its control agent
==================  ==============================================================

Format, version 1
-----------------

A savepoint is a folder (on an object store: the objects under a prefix)::

    manifest.json
    state/<step>/task-<n>.avro      one per stateful step and task that had state

``manifest.json`` is written last, in one piece (through a temporary name and a rename
on a local folder, in one request on an object store): a folder without it is the
remains of a savepoint that failed and is never read. Its fields:

==================  ==============================================================
field               meaning
==================  ==============================================================
``format``          1
``shoal_version``   the version that wrote it
``created_ms``      when (epoch ms)
``command``         the id of the command that took it
``job``, ``group``  the job's name and consumer group
``partitions``      the number of tasks (input partitions) at the cut
``graph``           ``fingerprint`` and ``steps``: every step's name, kind, parents,
                    state layout and parameters, declared state type, the ``key_by``
                    its keys come from (``runtime.engine.describe``)
``sources``         per source name: ``topic`` and per partition ``offset`` (the
                    next to read), ``max_ts`` and ``wm`` (event-time progress)
``repartition``     per repartitioning ``key_by``: its topic and per partition the
                    group's position and watermark (nothing was in flight at the cut)
``state``           per stateful step: ``layout`` (``session``, ``fixed``,
                    ``process``, ``join``), ``params``, ``schema`` (the rows' Avro schema),
                    ``value_schema`` and ``key_type`` and ``version`` as declared,
                    ``key_kinds`` (Python types of the keys seen), ``keys``, and per
                    task its ``file``, ``rows`` and ``keys``
``outputs``         per sink (and ``dead-letters``): topic and end offset per
                    partition at the cut, i.e. what the job had written by then
==================  ==============================================================

Each state file is an Avro object container file (deflate) whose records are the
step's rows (see :mod:`runtime.savepoint.layouts` for the rows of each layout and
:mod:`runtime.savepoint.datum` for generic values); its header names the step, the
task and the layout. Any Avro reader reads it; reading it with a newer row schema
resolves it by Avro's rules, which is how declared accumulators evolve.
"""
