"""Topic administration: idempotent creation with partitions and configs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.kafka.client import (
    CLIENT_LOGGER,
    AdminClient,
    ConfigResource,
    KafkaError,
    KafkaException,
    NewTopic,
    ResourceType,
)
from connectors.kafka.limits import TopicLimits, limits_from_configs
from runtime.api.errors import ConnectorError


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: partitions, replication and configs (e.g. ``cleanup.policy``)."""

    name: str
    partitions: int = 1
    replication: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


class KafkaAdmin:
    """Creates, lists and deletes topics.

    Args:
        bootstrap: ``host:port`` of the cluster.
    """

    def __init__(self, bootstrap: str, timeout_s: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": CLIENT_LOGGER}
        self._admin = AdminClient(conf)

    def topics(self) -> dict[str, int]:
        """Topic name -> partition count (internal topics excluded)."""
        try:
            md = self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise ConnectorError(f"cannot list topics on {self.bootstrap}: {exc}") from exc
        return {
            name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")
        }

    def ensure_topics(self, specs: list[TopicSpec]) -> list[str]:
        """Create the topics that do not exist yet; returns the names created.

        Raises:
            ConnectorError: a topic could not be created (other than already existing).
        """
        existing = self.topics()
        wanted = [s for s in specs if s.name not in existing]
        if not wanted:
            return []
        futures = self._admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=dict(s.config)) for s in wanted],
            operation_timeout=self.timeout_s,
        )
        created = []
        for name, fut in futures.items():
            try:
                fut.result(timeout=self.timeout_s)
                created.append(name)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise ConnectorError(f"cannot create topic {name!r}: {exc}") from exc
        self._wait_visible([s.name for s in wanted])
        return created

    def _wait_visible(self, names: list[str]) -> None:
        import time

        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if all(n in self.topics() for n in names):
                return
            time.sleep(0.1)
        raise ConnectorError(f"topics {names} did not appear within {self.timeout_s}s")

    def topic_limits(self, names: list[str]) -> dict[str, TopicLimits]:
        """The timestamps and sizes each topic accepts (see ``connectors.kafka.limits``).

        Reads each topic's effective configs (its overrides and the broker's
        ``log.message.timestamp.*`` defaults); a topic that does not exist (yet) gets
        the limits of the broker's configs.

        Raises:
            ConnectorError: the configs could not be read.
        """
        existing = self.topics()
        present = [n for n in dict.fromkeys(names) if n in existing]
        out: dict[str, TopicLimits] = {}
        if present:
            resources = [ConfigResource(ResourceType.TOPIC, n) for n in present]
            for res, fut in self._admin.describe_configs(resources).items():
                out[res.name] = limits_from_configs(self._entries(fut, res.name))
        missing = [n for n in names if n not in out]
        if missing:
            broker = self._broker_limits()
            out.update(dict.fromkeys(missing, broker))
        return out

    def _broker_limits(self) -> TopicLimits:
        """Limits new topics get from the broker's ``log.*`` settings."""
        try:
            md = self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read the brokers of {self.bootstrap}: {exc}") from exc
        if not md.brokers:
            return TopicLimits()
        broker_id = str(min(md.brokers))
        res = ConfigResource(ResourceType.BROKER, broker_id)
        fut = self._admin.describe_configs([res])[res]
        entries = self._entries(fut, f"broker {broker_id}")
        topic_names = {
            "log.message.timestamp.after.max.ms": "message.timestamp.after.max.ms",
            "log.message.timestamp.before.max.ms": "message.timestamp.before.max.ms",
            "log.message.timestamp.difference.max.ms": "message.timestamp.difference.max.ms",
            "log.message.timestamp.type": "message.timestamp.type",
            "message.max.bytes": "max.message.bytes",
        }
        return limits_from_configs(
            {topic: entries[name] for name, topic in topic_names.items() if name in entries}
        )

    def _entries(self, fut: Any, what: str) -> dict[str, str | None]:
        try:
            entries = fut.result(timeout=self.timeout_s)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read the configs of {what}: {exc}") from exc
        return {name: entry.value for name, entry in entries.items()}

    def groups(self) -> list[str]:
        """Ids of the cluster's consumer groups.

        Right after a broker starts its group coordinator may still be loading: the
        listing is asked again for a few seconds while it reports errors.
        """
        import time

        deadline = time.monotonic() + min(self.timeout_s, 10.0)
        while True:
            try:
                fut = self._admin.list_consumer_groups(request_timeout=self.timeout_s)
                listing = fut.result()
            except KafkaException as exc:
                raise ConnectorError(
                    f"cannot list consumer groups on {self.bootstrap}: {exc}"
                ) from exc
            if not listing.errors or time.monotonic() >= deadline:
                return sorted(g.group_id for g in listing.valid)
            time.sleep(0.5)

    def delete_groups(self, names: list[str]) -> None:
        """Delete consumer groups and their committed offsets (they must have no members).

        Raises:
            ConnectorError: a group could not be deleted (other than not existing).
        """
        if not names:
            return
        futures = self._admin.delete_consumer_groups(names, request_timeout=self.timeout_s)
        for name, fut in futures.items():
            try:
                fut.result(timeout=self.timeout_s)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                raise ConnectorError(f"cannot delete consumer group {name!r}: {exc}") from exc

    def delete_topics(self, names: list[str]) -> None:
        """Delete topics (missing ones are ignored)."""
        existing = self.topics()
        names = [n for n in names if n in existing]
        if not names:
            return
        for name, fut in self._admin.delete_topics(names, operation_timeout=self.timeout_s).items():
            try:
                fut.result(timeout=self.timeout_s)
            except KafkaException as exc:
                raise ConnectorError(f"cannot delete topic {name!r}: {exc}") from exc
