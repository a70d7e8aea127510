"""The command side of the control protocol: ``shoal savepoint``, ``shoal stop``, ``shoal scale``.

A command is a transient coordinator, not a service: it writes phases to the job's
control topic, waits for every live member of the consumer group to answer, and
exits (see :mod:`runtime.engine.control` for the phases). Any failure — a worker
that does not answer, the group changing under it, a repartition topic that does
not drain — sends ``abort`` (the workers resume) and raises one line naming what
went wrong; no savepoint manifest is written then.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.kafka.admin import GroupMember, KafkaAdmin
from connectors.kafka.config import KafkaClientConfig
from connectors.kafka.control import ControlTopic, control_topic, iter_partition, unconsumed
from runtime.api.errors import ConfigError, ConnectorError
from runtime.engine.repartition import MARK_TAG
from runtime.savepoint.format import Manifest, ensure_empty
from runtime.savepoint.storage import Location, Storage, open_storage
from runtime.savepoint.take import changelog_name, repartition_name, write_savepoint

__all__ = ["CommandOptions", "Coordinator"]

#: Rounds of pause -> hold before giving up on repartition topics that keep refilling.
MAX_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class CommandOptions:
    """Time limits of a command.

    Attributes:
        answer_s: how long every worker has to answer a phase.
        drain_s: how long the repartition topics have to drain.
        hold_s: the longest workers hold (they resume on their own after it).
    """

    answer_s: float = 60.0
    drain_s: float = 120.0
    hold_s: float = 600.0


def _name(member: GroupMember, ack: Mapping[str, Any] | None = None) -> str:
    """A worker as a person knows it: its id, host and pid."""
    if ack is not None:
        return f"{ack.get('worker')} (host {ack.get('host')}, pid {ack.get('pid')})"
    rest, _, pid = member.client_id.rpartition(":")
    host = rest.rpartition("@")[2]
    worker = rest.partition(":")[2].partition("@")[0] if rest.startswith("shoal:") else ""
    label = worker or member.instance_id or member.member_id[:24]
    return f"{label} (host {host or member.host.strip('/')}, pid {pid or '?'})"


class Coordinator:
    """Runs one command against the job whose consumer group is ``group``.

    Args:
        client: the cluster.
        group: the job's consumer group (its name unless run with ``--group``).
        options: time limits.
        echo: receives progress lines.
    """

    def __init__(
        self,
        client: KafkaClientConfig,
        group: str,
        options: CommandOptions = CommandOptions(),
        echo: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.client = client
        self.group = group
        self.options = options
        self.echo = echo
        self.admin = KafkaAdmin(client)
        topic = control_topic(group)
        if topic not in self.admin.topics():
            raise ConfigError(
                f"no control topic {topic}: is {group!r} the consumer group of a running Shoal "
                "job (see shoal jobs)?"
            )
        self.channel = ControlTopic(client, topic, from_start=True)
        self.latest = self.channel.read_to_end()
        self.cmd_id = secrets.token_hex(4)
        self._ack_keys: set[str] = set()
        self.issued_ms = time.time_ns() // 1_000_000

    def close(self) -> None:
        """Release the clients."""
        self.channel.close()

    # -- building blocks --------------------------------------------------------------
    def description(self) -> dict[str, Any]:
        """The job as its workers announced it.

        Raises:
            ConfigError: no worker ever announced the job.
        """
        desc = self.latest.get("job")
        if desc is None:
            raise ConfigError(
                f"no job description on {control_topic(self.group)}: start the job with this "
                "version of Shoal first"
            )
        return desc

    def members(self) -> dict[str, GroupMember]:
        """Live members of the group by member id."""
        return {m.member_id: m for m in self.admin.group_members(self.group)}

    def send(self, op: str, phase: str) -> None:
        """Write the command record for one phase."""
        now = time.time_ns() // 1_000_000
        self.channel.send(
            "command",
            {
                "id": self.cmd_id,
                "op": op,
                "phase": phase,
                "issued_ms": self.issued_ms,
                "sent_ms": now,
                "deadline_ms": now + int(self.options.hold_s * 1000),
            },
        )

    def wait_acks(self, phase: str, members: Mapping[str, GroupMember]) -> dict[str, Any]:
        """Wait until every member answered ``phase``; returns the acks by member id.

        Raises:
            ConfigError: a worker answered with an error, or did not answer in time
                (named), or left the group.
        """
        prefix = f"ack.{self.cmd_id}.{phase}."
        acks: dict[str, Any] = {}
        deadline = time.monotonic() + self.options.answer_s
        while True:
            for key, value in self.channel.read(0.3):
                if key.startswith(prefix) and value is not None:
                    self._ack_keys.add(key)
                    acks[str(value.get("member", key[len(prefix) :]))] = value
            bad = [a for a in acks.values() if a.get("error")]
            if bad:
                raise ConfigError(
                    f"worker {_name(members.get(bad[0]['member'], _EMPTY), bad[0])} failed "
                    f"'{phase}': {bad[0]['error']}"
                )
            missing = [m for m in members if m not in acks]
            if not missing:
                return acks
            if time.monotonic() > deadline:
                names = ", ".join(_name(members[m]) for m in missing)
                raise ConfigError(
                    f"worker {names} of group {self.group!r} did not answer '{phase}' within "
                    f"{self.options.answer_s:.0f}s (is it running this version of Shoal? is it "
                    "stuck? see shoal status)"
                )

    def in_flight(self, description: Mapping[str, Any]) -> list[tuple[str, int]]:
        """Repartition partitions with records the group has not consumed, or with a
        transaction not complete yet (its records may be about to appear).

        Watermark markers alone do not count: a restored upstream task sends its
        watermark again before anything depends on it.
        """
        partitions = int(description["partitions"])
        topics = [
            repartition_name(self.group, s["name"])
            for s in description.get("steps", [])
            if s.get("kind") == "keyby" and s.get("repartition")
        ]
        pairs = [(t, p) for t in topics for p in range(partitions)]
        pending = self._pending(pairs)
        if pending:
            return pending
        committed = self._stable_offsets()
        starts = {tp: committed.get(tp, (-1, ""))[0] for tp in pairs}
        return unconsumed(self.client, starts, ignore=is_marker)

    def _stable_offsets(self) -> dict[tuple[str, int], tuple[int, str]]:
        """The group's committed offsets once no transaction of it is pending."""
        deadline = time.monotonic() + self.options.answer_s
        while True:
            try:
                return self.admin.group_offsets(self.group, stable=True)
            except ConnectorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _pending(self, pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Partitions whose read_committed end is behind their log end: a transaction is
        open, or committed but its markers are not written yet."""
        if not pairs:
            return []
        lso = self.admin.end_offsets(pairs)
        hw = self.admin.end_offsets(pairs, committed=False)
        return sorted(tp for tp in pairs if lso.get(tp, 0) < hw.get(tp, 0))

    def _settle(self, desc: Mapping[str, Any]) -> None:
        """Wait until the held workers' last transactions are complete everywhere: state
        changes, outputs and repartition topics readable up to their ends.

        Raises:
            ConfigError: a transaction stays open (a worker that does not hold).
        """
        partitions = int(desc["partitions"])
        topics = [changelog_name(self.group, s["name"]) for s in desc.get("steps", [])
                  if s.get("layout")]  # fmt: skip
        topics += [repartition_name(self.group, s["name"]) for s in desc.get("steps", [])
                   if s.get("kind") == "keyby" and s.get("repartition")]  # fmt: skip
        pairs = [(t, p) for t in topics for p in range(partitions)]
        counts = self.admin.topics()
        for out in self._output_topics(desc).values():
            pairs += [(out, p) for p in range(counts.get(out, 0))]
        deadline = time.monotonic() + self.options.answer_s
        while True:
            pending = self._pending(pairs)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"transactions still open on {pending[:3]} while the workers hold: a worker "
                    "outside the protocol writes to them"
                )
            time.sleep(0.2)

    def _wait_drained(self, description: Mapping[str, Any]) -> list[tuple[str, int]]:
        deadline = time.monotonic() + self.options.drain_s
        while True:
            left = self.in_flight(description)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    # -- commands -----------------------------------------------------------------------
    def savepoint(
        self,
        dest: Location,
        *,
        stop: bool = False,
        on_hold: Callable[[Manifest], None] | None = None,
    ) -> Manifest:
        """Align the workers on one cut, write it to ``dest``, resume (or stop) them.

        ``dest`` is a folder, a URL (``s3://bucket/prefix``) or a storage; it is checked
        before the workers are asked anything, so an unusable one costs them nothing.
        ``on_hold(manifest)`` runs once the savepoint is written while the workers
        still hold at the cut (``shoal canary`` reads the sinks' ends there: what the
        job had committed exactly up to the cut).

        Raises:
            ConfigError: no live worker, a worker failed or did not answer, the group
                changed, the repartition topics did not drain, or ``dest`` is not empty.
        """
        desc = self.description()
        op = "stop" if stop else "savepoint"
        members = self.members()
        storage = open_storage(dest)
        ensure_empty(storage)
        if not members:
            if stop:
                raise ConfigError(f"group {self.group!r} has no live workers")
            return self._offline(desc, storage)
        self.echo(f"{op} {self.cmd_id}: {len(members)} workers of {desc.get('job')} ({self.group})")
        try:
            manifest = self._take(desc, members, storage)
            if on_hold is not None:
                on_hold(manifest)
        except BaseException:
            self.send(op, "abort")
            raise
        if stop:
            self.send(op, "stop")
            self._wait_gone(members)
        else:
            self.send(op, "resume")
        self._forget()
        return manifest

    def _take(
        self, desc: Mapping[str, Any], members: Mapping[str, GroupMember], dest: Storage
    ) -> Manifest:
        op = "savepoint"
        for round_ in range(1, MAX_ROUNDS + 1):
            self.send(op, f"pause{round_}")
            self.wait_acks(f"pause{round_}", members)
            left = self._wait_drained(desc)
            if left:
                raise ConfigError(
                    f"repartition topics still hold unconsumed records after "
                    f"{self.options.drain_s:.0f}s: {left[:3]}"
                )
            self.send(op, f"hold{round_}")
            self.wait_acks(f"hold{round_}", members)
            left = self.in_flight(desc)
            if not left:
                break
            self.echo(f"  records still in flight in {len(left)} repartition partitions; again")
        else:
            raise ConfigError(f"repartition topics kept refilling over {MAX_ROUNDS} rounds")
        now = self.members()
        if set(now) != set(members):
            joined = [_name(m) for k, m in now.items() if k not in members]
            left_ = [_name(m) for k, m in members.items() if k not in now]
            raise ConfigError(
                f"the group changed during the savepoint (joined: {joined or 'none'}, left: "
                f"{left_ or 'none'}); nothing written, try again"
            )
        self._settle(desc)
        self.echo("  workers hold at one cut; writing the savepoint")
        return self._write(desc, dest)

    def _offline(self, desc: Mapping[str, Any], dest: Storage) -> Manifest:
        """A stopped job's committed checkpoint is a cut when nothing is in flight."""
        left = self.in_flight(desc)
        if left:
            raise ConfigError(
                f"group {self.group!r} has no live workers and its repartition topics hold "
                f"records it has not consumed ({left[:3]}): start the job and take the "
                "savepoint while it runs"
            )
        self.echo(f"savepoint of the stopped job {desc.get('job')} ({self.group})")
        return self._write(desc, dest)

    def _write(self, desc: Mapping[str, Any], dest: Storage) -> Manifest:
        """Read the committed cut and the changelogs; write the savepoint."""
        committed = self._stable_offsets()
        partitions = int(desc["partitions"])
        changelogs = [
            (changelog_name(self.group, s["name"]), p)
            for s in desc.get("steps", [])
            if s.get("layout")
            for p in range(partitions)
        ]
        ends = self.admin.end_offsets(changelogs)
        outputs = self._outputs(desc)

        def read(topic: str, partition: int) -> Any:
            return iter_partition(self.client, topic, partition, ends.get((topic, partition), 0))

        return write_savepoint(
            dest,
            desc,
            committed,
            read,
            outputs=outputs,
            command=self.cmd_id,
            progress=self.echo,
        )

    def _output_topics(self, desc: Mapping[str, Any]) -> dict[str, str]:
        named = {n: t for n, t in dict(desc.get("sinks", {})).items() if "://" not in t}
        if desc.get("dead_letters"):
            named["dead-letters"] = desc["dead_letters"]
        return named

    def _outputs(self, desc: Mapping[str, Any]) -> dict[str, Any]:
        """Where each sink topic (and the dead letters) ended at the cut."""
        counts = self.admin.topics()
        out: dict[str, Any] = {}
        for name, topic in self._output_topics(desc).items():
            n = counts.get(topic)
            if not n:
                continue
            ends = self.admin.end_offsets([(topic, p) for p in range(n)])
            out[name] = {"topic": topic, "partitions": {str(p): e for (_, p), e in ends.items()}}
        return out

    def stop(self) -> None:
        """Stop every worker (each checkpoints and leaves the group).

        Raises:
            ConfigError: a worker did not stop in time (named).
        """
        members = self.members()
        if not members:
            raise ConfigError(f"group {self.group!r} has no live workers")
        self.send("stop", "stop")
        self._wait_gone(members)
        self._forget()

    def _wait_gone(self, members: Mapping[str, GroupMember]) -> None:
        deadline = time.monotonic() + self.options.answer_s
        while True:
            left = [m for k, m in self.members().items() if k in members]
            if not left:
                return
            if time.monotonic() > deadline:
                raise ConfigError(
                    "worker " + ", ".join(_name(m) for m in left) + " did not leave the group "
                    f"within {self.options.answer_s:.0f}s"
                )
            time.sleep(0.5)

    def _forget(self) -> None:
        """Mark the command done and drop its acks (compaction then removes them)."""
        self.send("done", "done")
        for key in sorted(self._ack_keys):
            self.channel.send(key, None)

    def scale(self, workers: int) -> dict[str, Any]:
        """Ask the job's local supervisor for ``workers`` workers; returns its answer.

        Raises:
            ConfigError: no supervisor answered (the job does not run under
                ``shoal run --workers``), or it refused.
        """
        self.channel.send(
            "scale", {"id": self.cmd_id, "workers": workers, "issued_ms": self.issued_ms}
        )
        deadline = time.monotonic() + min(self.options.answer_s, 15.0)
        while time.monotonic() < deadline:
            for key, value in self.channel.read(0.3):
                if key == f"ack.scale.{self.cmd_id}" and value is not None:
                    if value.get("error"):
                        raise ConfigError(f"the supervisor refused: {value['error']}")
                    return value
        raise ConfigError(
            f"no supervisor of group {self.group!r} answered within 15s: shoal scale changes a "
            "job started with shoal run --workers N; on Kubernetes use kubectl scale"
        )


_EMPTY = GroupMember(None, "", "")


def is_marker(value: bytes | None) -> bool:
    """A repartition topic's watermark marker (see ``runtime.engine.repartition``)."""
    return value is not None and value[:1] == MARK_TAG
