"""Wires a worker to its job's control topic (the hook ``runtime.runner`` calls)."""

from __future__ import annotations

import socket
from typing import Any

from connectors.external import is_external
from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.config import KafkaClientConfig
from connectors.kafka.control import ControlTopic, ensure_control_topic
from runtime.api.bindings import Bindings
from runtime.api.job import Job
from runtime.engine.control import ControlAgent
from runtime.engine.describe import describe_job

__all__ = ["attach_control"]


def attach_control(
    client: KafkaClientConfig,
    admin: KafkaAdmin,
    group: str,
    job: Job,
    bindings: Bindings,
    worker: Any,
    source: Any,
    *,
    worker_id: str,
    partitions: int,
    replication: int = -1,
) -> ControlAgent:
    """Create the control topic if needed, announce the job on it, return the agent.

    The announcement (see ``runtime.engine.describe``) is what ``shoal savepoint``
    records of the job: its steps, their state layouts and declared types, its
    bindings and its input partition count.
    """
    topic = ensure_control_topic(admin, group, replication)
    announce = describe_job(
        job,
        sources=bindings.sources,
        sinks={n: t for n, t in bindings.sinks.items() if not is_external(t)},
    )
    announce.update(
        {
            "group": group,
            "partitions": partitions,
            "dead_letters": bindings.dead_letters,
            "worker": worker_id,
            "host": socket.gethostname(),
        }
    )
    agent = ControlAgent(
        worker,
        source,
        ControlTopic(client, topic),
        serve_calls=lambda: worker.calls.serve(worker),
        worker_id=worker_id,
        announce=announce,
    )
    agent.start()
    return agent
