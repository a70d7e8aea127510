"""``shoal scale`` requests as a local supervisor sees them, on the job's control topic.

The supervisor of ``shoal run --workers N`` reads ``scale`` records written after it
started and answers each under ``ack.scale.<id>`` with the worker count before and
after (or why it refused), so ``shoal scale`` can report what happened.
"""

from __future__ import annotations

from typing import Any

from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.control import ControlTopic, ensure_control_topic


class ScaleRequests:
    """Reads scale requests for one group and answers them.

    Args:
        client: the cluster.
        group: the job's consumer group.
    """

    def __init__(self, client: Any, group: str) -> None:
        topic = ensure_control_topic(KafkaAdmin(client), group)
        self.channel = ControlTopic(client, topic)

    def poll(self) -> list[tuple[str, int]]:
        """New requests: ``(id, workers)``."""
        out = []
        for key, value in self.channel.read(0.0):
            if key != "scale" or value is None:
                continue
            workers = value.get("workers")
            if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
                out.append((str(value.get("id", "")), workers))
        return out

    def answer(self, request: str, before: int, workers: int, error: str | None = None) -> None:
        """Tell ``shoal scale`` what was done."""
        self.channel.send(
            f"ack.scale.{request}", {"before": before, "workers": workers, "error": error}
        )

    def close(self) -> None:
        """Release the control topic's clients."""
        self.channel.close()
