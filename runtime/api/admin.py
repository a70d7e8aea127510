"""Protocols for the cluster around a job: client settings, topics and group members.

The runner and the Flink engine create the topics a job needs and check its
consumer group through these; ``connectors.kafka`` implements them
(``KafkaClientConfig``, ``KafkaAdmin``), and the composition root
(``runtime.composition``) hands the implementations in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["ClientSettings", "GroupMemberInfo", "TopicAdmin", "TopicSpec"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: partitions, replication and configs (e.g. ``cleanup.policy``).

    ``replication`` -1 takes the broker's ``default.replication.factor`` (Kafka 2.4+), so
    a production cluster's durability rules apply without Shoal knowing them.
    """

    name: str
    partitions: int = 1
    replication: int = -1
    config: Mapping[str, str] = field(default_factory=dict)


class ClientSettings(Protocol):
    """Where the cluster is and the user's client settings (TLS, SASL ...)."""

    @property
    def bootstrap(self) -> str:
        """``host:port[,host:port...]``."""
        ...

    @property
    def properties(self) -> Mapping[str, str]:
        """The user's settings, merged from file, options and environment."""
        ...


class GroupMemberInfo(Protocol):
    """One live member of a consumer group."""

    @property
    def instance_id(self) -> str | None:
        """Its static membership id (``group.instance.id``), if any."""
        ...

    @property
    def client_id(self) -> str:
        """Its client id."""
        ...

    @property
    def host(self) -> str:
        """Its address, as the group coordinator sees it."""
        ...


class TopicAdmin(Protocol):
    """Lists and creates topics and reads a consumer group's members."""

    def topics(self) -> dict[str, int]:
        """Topic name -> partition count."""
        ...

    def ensure_topics(self, specs: list[TopicSpec]) -> list[str]:
        """Create the topics that do not exist yet; returns the names created."""
        ...

    def topic_configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        """The configs of existing topics."""
        ...

    def group_members(self, group: str) -> Sequence[GroupMemberInfo]:
        """The live members of a consumer group."""
        ...
