"""Topic administration: idempotent creation with partitions and configs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from connectors.kafka.client import (
    CLIENT_LOGGER,
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
)
from connectors.kafka.config import KafkaClientConfig, as_client_config
from connectors.kafka.errors import COORDINATOR_MOVING, ClientErrors, explain
from connectors.kafka.limits import TopicLimits, limits_from_configs
from runtime.api.admin import TopicSpec
from runtime.api.errors import ConnectorError

# TopicSpec is defined with the admin protocol in runtime.api (re-exported here).
__all__ = ["GroupMember", "KafkaAdmin", "TopicSpec"]

log = logging.getLogger("shoal.kafka.admin")


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One live member of a consumer group: its static id, client id and address."""

    instance_id: str | None
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...] = ()
    member_id: str = ""


class KafkaAdmin:
    """Creates, lists and deletes topics.

    Args:
        bootstrap: ``host:port`` of the cluster.
    """

    def __init__(
        self,
        bootstrap: str | KafkaClientConfig,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.client = as_client_config(bootstrap)
        self.bootstrap = self.client.bootstrap
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self._errors = ClientErrors()
        self._admin = AdminClient(
            self.client.client(logger=CLIENT_LOGGER, error_cb=self._errors.callback)
        )

    def topics(self) -> dict[str, int]:
        """Topic name -> partition count (internal topics excluded).

        Raises:
            ConnectorError: one line with the cause, at once for a wrong password, an
                untrusted certificate or a missing ACL, within ``connect_timeout_s``
                for an unreachable cluster.
        """
        import time

        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                md = self._admin.list_topics(timeout=0.5)
                break
            except KafkaException as exc:
                self._admin.poll(0)  # serves the error callbacks
                if self._errors.decisive is not None:
                    raise ConnectorError(
                        explain(self._errors.decisive, self.bootstrap, "listing topics")
                    ) from exc
                if time.monotonic() >= deadline:
                    err = self._errors.last or (exc.args[0] if exc.args else exc)
                    raise ConnectorError(explain(err, self.bootstrap, "listing topics")) from exc
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

    def topic_configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        """Topic name -> its effective configuration (broker defaults included).

        Raises:
            ConnectorError: the configuration could not be read (e.g. no DescribeConfigs ACL).
        """
        if not names:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
        out: dict[str, dict[str, str]] = {}
        try:
            futures = self._admin.describe_configs(resources, request_timeout=self.timeout_s)
            for resource, fut in futures.items():
                entries = fut.result(timeout=self.timeout_s)
                out[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
        except KafkaException as exc:
            raise ConnectorError(f"cannot read the configuration of {names}: {exc}") from exc
        return out

    def group_members(self, group: str) -> list[GroupMember]:
        """The live members of a consumer group (empty for an unknown or empty group).

        Raises:
            ConnectorError: the group could not be described (e.g. no DESCRIBE ACL).
        """
        import time

        start = time.monotonic()
        deadline = start + min(self.timeout_s, 15.0)
        # A broker that has just created its offsets topic loads it for a while, and
        # under load a describe can go unanswered that long: ask again, within limits.
        patience = start + 2 * self.timeout_s
        while True:
            fut = self._admin.describe_consumer_groups([group], request_timeout=self.timeout_s)
            try:
                desc = fut[group].result(timeout=self.timeout_s)
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                code = err.code() if isinstance(err, KafkaError) else None
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    return []
                if code in COORDINATOR_MOVING and time.monotonic() < deadline:
                    time.sleep(0.3)  # the group's coordinator is loading or moving
                    continue
                raise ConnectorError(f"cannot describe consumer group {group!r}: {exc}") from exc
            except TimeoutError as exc:
                if time.monotonic() < patience:
                    continue
                raise ConnectorError(
                    f"the broker did not describe consumer group {group!r} within "
                    f"{time.monotonic() - start:.0f}s (overloaded or unreachable); try again"
                ) from exc
        return [
            GroupMember(
                m.group_instance_id,
                m.client_id,
                m.host,
                tuple(
                    sorted(
                        (tp.topic, tp.partition)
                        for tp in (m.assignment.topic_partitions if m.assignment else [])
                    )
                ),
                m.member_id,
            )
            for m in desc.members or []
        ]

    def _committed(self, group: str, tps: list[Any]) -> dict[tuple[str, int], int]:
        """The group's committed offsets of ``tps``, read by a consumer of the group
        that joins nothing: a consumer finds and follows the group's coordinator
        itself (the admin client's offset fetch can crash, see ``_coordinator_ready``).

        Raises:
            ConnectorError: the offsets could not be read within the admin timeout.
        """
        import time

        from connectors.kafka.client import Consumer

        consumer = Consumer(
            self.client.client({"enable.auto.commit": False}, group_id=group, logger=CLIENT_LOGGER)
        )
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                try:
                    found = consumer.committed(tps, timeout=self.timeout_s)
                    return {(tp.topic, tp.partition): tp.offset for tp in found}
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    code = err.code() if isinstance(err, KafkaError) else None
                    if code in COORDINATOR_MOVING and time.monotonic() < deadline:
                        time.sleep(0.3)
                        continue
                    raise ConnectorError(
                        f"cannot read the offsets of group {group!r}: {exc}"
                    ) from exc
        finally:
            consumer.close()

    def _coordinator_ready(self, group: str) -> None:
        """Wait until the group's coordinator answers (describing the group) before its
        offsets are listed.

        librdkafka dereferences a null group handle when an admin client's offset
        fetch gets NOT_COORDINATOR back (the coordinator of a group never seen, or one
        still loading on a broker that just started): the process dies with SIGSEGV
        (librdkafka issue 5040). Describing the group first finds the coordinator and
        waits out its loading, so the offset fetch goes to the right, ready broker.
        """
        self.group_members(group)

    def group_lag(self, group: str, topics: list[str]) -> int:
        """Records of ``topics`` the group has not committed yet (read_committed ends).

        A partition the group never committed counts from its start.

        Raises:
            ConnectorError: offsets could not be read.
        """
        from connectors.kafka.client import TopicPartition

        counts = self.topics()
        tps = [TopicPartition(t, p) for t in topics for p in range(counts.get(t, 0))]
        if not tps:
            return 0
        committed = self._committed(group, tps)
        try:
            ends = self._admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in tps},  # type: ignore[no-untyped-call]
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=self.timeout_s,
            )
            starts = self._admin.list_offsets(
                {tp: OffsetSpec.earliest() for tp in tps},  # type: ignore[no-untyped-call]
                request_timeout=self.timeout_s,
            )
            lag = 0
            for tp in tps:
                end = ends[tp].result(timeout=self.timeout_s).offset
                start = starts[tp].result(timeout=self.timeout_s).offset
                done = committed.get((tp.topic, tp.partition), -1)
                lag += max(0, end - (done if done >= 0 else start))
            return lag
        except (KafkaException, TimeoutError) as exc:
            raise ConnectorError(f"cannot read the lag of group {group!r}: {exc}") from exc

    def grant(
        self,
        principal: str,
        resource: str,
        name: str,
        operations: list[str],
        *,
        prefixed: bool = False,
    ) -> None:
        """Allow ``principal`` (e.g. ``User:alice``) ``operations`` on a resource.

        Args:
            resource: ``topic``, ``group``, ``transactional_id`` or ``cluster``.
            name: the resource's name (or name prefix with ``prefixed``).
            operations: ACL operation names, e.g. ``["READ", "DESCRIBE"]`` or ``["ALL"]``.

        Raises:
            ConnectorError: the ACLs could not be created (e.g. no authorizer).
        """
        kind = getattr(ResourceType, resource.upper())
        pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
        bindings = [
            AclBinding(
                kind,
                name,
                pattern,
                principal,
                "*",
                getattr(AclOperation, op.upper()),
                AclPermissionType.ALLOW,
            )
            for op in operations
        ]
        try:
            for fut in self._admin.create_acls(bindings, request_timeout=self.timeout_s).values():
                fut.result(timeout=self.timeout_s)
        except KafkaException as exc:
            raise ConnectorError(f"cannot create ACLs for {principal} on {name}: {exc}") from exc

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
                try:
                    out[res.name] = limits_from_configs(self._entries(fut, res.name))
                except ConnectorError as exc:
                    if "AUTHORIZATION" not in str(exc):
                        raise
                    # A principal may write a topic without DescribeConfigs on it: assume
                    # Kafka's defaults, which are what an unconfigured topic has.
                    log.warning("%s; assuming Kafka's default limits for it", exc)
                    out[res.name] = TopicLimits()
        missing = [n for n in names if n not in out]
        if missing:
            try:
                broker = self._broker_limits()
            except ConnectorError as exc:
                if "AUTHORIZATION" not in str(exc):
                    raise
                log.warning("%s; assuming Kafka's default limits", exc)
                broker = TopicLimits()
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

    def group_offsets(
        self, group: str, *, stable: bool = False
    ) -> dict[tuple[str, int], tuple[int, str]]:
        """Every committed ``(topic, partition) -> (offset, metadata)`` of a group.

        ``stable``: offsets a transaction committed are returned only once that
        transaction is complete (KIP-447), never the ones before it.

        Raises:
            ConnectorError: the offsets could not be read; with ``stable``, also while a
                transaction's offsets are pending (ask again).
        """
        self._coordinator_ready(group)
        try:
            fut = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], require_stable=stable
            )
            result = fut[group].result(timeout=self.timeout_s)
        except (KafkaException, TimeoutError) as exc:
            raise ConnectorError(f"cannot read the offsets of group {group!r}: {exc}") from exc
        failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
        if stable and failed:
            tp = failed[0]
            raise ConnectorError(
                f"cannot read the offsets of group {group!r}: {tp.topic}[{tp.partition}] {tp.error}"
            )
        return {
            (tp.topic, tp.partition): (tp.offset, tp.metadata or "")
            for tp in result.topic_partitions or []
            if tp.offset >= 0
        }

    def end_offsets(
        self, pairs: list[tuple[str, int]], *, earliest: bool = False, committed: bool = True
    ) -> dict[tuple[str, int], int]:
        """The read_committed end (or the start) offset of each partition.

        ``committed=False``: the log end (high watermark), which is beyond the
        read_committed end while a transaction is open or its markers are not written yet.

        Raises:
            ConnectorError: the offsets could not be read.
        """
        from connectors.kafka.client import TopicPartition

        if not pairs:
            return {}
        spec = OffsetSpec.earliest() if earliest else OffsetSpec.latest()  # type: ignore[no-untyped-call]
        try:
            futures = self._admin.list_offsets(
                {TopicPartition(t, p): spec for t, p in pairs},
                isolation_level=(
                    IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
                ),
                request_timeout=self.timeout_s,
            )
            return {
                (tp.topic, tp.partition): fut.result(timeout=self.timeout_s).offset
                for tp, fut in futures.items()
            }
        except (KafkaException, TimeoutError) as exc:
            raise ConnectorError(f"cannot read offsets of {pairs[:3]}...: {exc}") from exc

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
