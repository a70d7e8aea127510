"""The worker's side of the control protocol: savepoints and stops, with no master.

Commands travel through the job's compacted control topic (``<group>.control``,
see :mod:`connectors.kafka.control`). A command (``shoal savepoint``, ``shoal
stop``) is a short-lived coordinator: it writes a ``command`` record with an id and
a phase; every worker reads the topic with a consumer of its own (outside the
group) and answers each phase with an ack record keyed by command id, phase and
its group member id. The coordinator waits for an ack from every live member of
the group and names the one that did not answer.

Phases, in order (a savepoint is a consistent cut even when records cross
repartition topics between workers):

===========  ====================================================================
phase        what a worker does, then acks
===========  ====================================================================
``pauseN``   pauses its external input partitions and keeps running: records in
             the repartition topics are still consumed, and checkpoints go on.
             The coordinator waits until the group has consumed every committed
             record of the repartition topics.
``holdN``    pauses every partition, checkpoints, and holds: no record is
             processed and nothing is committed until the next phase; the
             consumer is still polled so the group does not drop the worker. If
             the repartition topics show records again (a transaction that was
             open at ``pauseN``), the coordinator goes back to ``pauseN+1``.
``resume``   resumes every partition (also ``abort``, after a failure).
``stop``     stops: the loop ends, the worker checkpoints and leaves the group.
===========  ====================================================================

While a worker holds, the coordinator reads the committed offsets with their
checkpoint metadata and the changelog topics up to their ends: that is the
savepoint. The workers write no files, so the savepoint's folder needs to be
reachable only from where the command runs.

A worker reads the control topic from its end as it starts, so commands issued
before it started are never acted on (a restarted worker does not stop again);
phases it has answered are not answered twice. A worker holds at most until the
command's deadline, then resumes on its own.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

log = logging.getLogger("shoal.control")

__all__ = ["ControlAgent", "ControlChannel", "PausableSource"]

#: How often the loop looks at the control topic (seconds).
READ_EVERY_S = 0.2


class ControlChannel(Protocol):
    """Reads and writes the control topic (see ``connectors.kafka.control``)."""

    def send(self, key: str, value: Mapping[str, Any] | None) -> None: ...

    def read(self, timeout_s: float = 0.0) -> list[tuple[str, dict[str, Any] | None]]: ...

    def close(self) -> None: ...


class PausableSource(Protocol):
    """What the agent needs of the worker's consumer."""

    @property
    def assignment(self) -> set[tuple[str, int]]: ...

    def pause(self, pairs: list[tuple[str, int]]) -> None: ...

    def resume(self, pairs: list[tuple[str, int]]) -> None: ...

    def member_id(self) -> str: ...

    def poll(self, max_records: int, timeout_s: float) -> list[Any]: ...

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None: ...


class _Worker(Protocol):
    """What the agent needs of the worker (see ``runtime.engine.worker.Worker``)."""

    internal_topics: Mapping[str, str]
    last_progress: float

    def checkpoint(self) -> None: ...


class ControlAgent:
    """Answers control commands between two iterations of a worker's loop.

    Args:
        worker: the worker (checkpoints).
        source: the worker's consumer.
        serve_calls: serves the worker's pending calls (its HTTP service) while holding.
        channel: the control topic, read from its end.
        worker_id: the worker's id (named in acks, so errors can name it).
        announce: the job's description, written under ``job`` at start.
        clock: wall clock in epoch ms (deadlines are wall-clock times).
    """

    def __init__(
        self,
        worker: _Worker,
        source: PausableSource,
        channel: ControlChannel,
        *,
        serve_calls: Callable[[], None],
        worker_id: str,
        announce: Mapping[str, Any] | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.worker = worker
        self.source = source
        self.channel = channel
        self.serve_calls = serve_calls
        self.worker_id = worker_id
        self.announce = dict(announce or {})
        self.clock = clock
        self.answered: set[tuple[str, str]] = set()
        self.paused: set[tuple[str, int]] = set()
        self.pausing_inputs = False
        self.stop_requested = False
        self._command: dict[str, Any] | None = None
        self._next_read = 0.0
        self._failure: BaseException | None = None
        self.commands_seen = 0

    def start(self) -> None:
        """Announce the job on the control topic (what ``shoal savepoint`` records)."""
        if self.announce:
            self.channel.send("job", {**self.announce, "announced_ms": self.clock()})

    def should_stop(self) -> bool:
        """Look at the control topic (at most every ``READ_EVERY_S``); act on new phases.

        Returns:
            True once a ``stop`` phase arrived: the loop ends and the worker checkpoints.
        """
        if self.stop_requested:
            return True
        if self.pausing_inputs:
            self._pause_new_inputs()
        now = time.monotonic()
        if now < self._next_read:
            return False
        self._next_read = now + READ_EVERY_S
        for key, value in self.channel.read(0.0):
            if key == "command" and value is not None:
                self._on_command(value)
            if self.stop_requested:
                return True
        return self.stop_requested

    # -- phases ---------------------------------------------------------------------
    def _on_command(self, cmd: dict[str, Any]) -> None:
        cmd_id, phase = str(cmd.get("id", "")), str(cmd.get("phase", ""))
        if not cmd_id or (cmd_id, phase) in self.answered:
            return
        self.commands_seen += 1
        self.answered.add((cmd_id, phase))
        self._command = cmd
        log.warning("control: command %s phase %s", cmd_id, phase)
        if phase.startswith("pause"):
            self._release_internal()
            self.pausing_inputs = True
            self._pause_new_inputs()
            self._ack(cmd_id, phase, self._checkpoint())
            self._raise_failure()
        elif phase.startswith("hold"):
            self.pausing_inputs = True
            self._pause(sorted(self.source.assignment - self.paused))
            error = self._checkpoint()
            self._ack(cmd_id, phase, error)
            self._raise_failure()
            self._hold(cmd)
        elif phase in ("resume", "abort", "done"):
            self._resume_all()
        elif phase == "stop":
            # Partitions stay paused: the loop ends before it reads another record.
            self.stop_requested = True
            self._ack(cmd_id, phase, None)

    def _checkpoint(self) -> str | None:
        try:
            self.worker.checkpoint()
        except Exception as exc:  # acked to the coordinator first, then raised
            self._failure = exc
            return f"{type(exc).__name__}: {exc}"
        return None

    def _raise_failure(self) -> None:
        """A checkpoint that failed fails the worker, as it would in the loop."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _hold(self, cmd: dict[str, Any]) -> None:
        """Process nothing until the next phase or the deadline; keep the group membership."""
        deadline_ms = int(cmd.get("deadline_ms", self.clock() + 60_000))
        next_poll = 0.0
        while True:
            self.worker.last_progress = time.monotonic()
            self.serve_calls()
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 1.0
                self._poll_paused()
            for key, value in self.channel.read(0.2):
                if key != "command" or value is None:
                    continue
                if value.get("id") != cmd.get("id") or value.get("phase") != cmd.get("phase"):
                    self._on_command(value)
                    return
            if self.clock() > deadline_ms:
                log.warning("control: command %s passed its deadline; resuming", cmd.get("id"))
                self._resume_all()
                return

    def _poll_paused(self) -> None:
        """Poll the paused consumer (keeps it in the group). Partitions assigned meanwhile
        are paused too; a record that comes anyway is sought back, never processed."""
        msgs = self.source.poll(1, 0.0)
        self._pause(sorted(self.source.assignment - self.paused))
        if msgs:
            first: dict[tuple[str, int], int] = {}
            for m in msgs:
                first.setdefault((m.topic(), m.partition()), m.offset())
            self.source.seek(first)

    # -- partitions -----------------------------------------------------------------
    def _external(self, pairs: set[tuple[str, int]]) -> list[tuple[str, int]]:
        internal = self.worker.internal_topics
        return sorted(tp for tp in pairs if tp[0] not in internal)

    def _pause_new_inputs(self) -> None:
        self._pause(self._external(self.source.assignment - self.paused))

    def _pause(self, pairs: list[tuple[str, int]]) -> None:
        if pairs:
            self.source.pause(pairs)
            self.paused.update(pairs)

    def _release_internal(self) -> None:
        """Resume the repartition topics (a new ``pause`` round after a ``hold``)."""
        internal = [tp for tp in self.paused if tp[0] in self.worker.internal_topics]
        self._resume([tp for tp in internal if tp in self.source.assignment])
        self.paused.difference_update(internal)

    def _resume_all(self) -> None:
        self.pausing_inputs = False
        self._resume(sorted(self.paused & self.source.assignment))
        self.paused.clear()

    def _resume(self, pairs: list[tuple[str, int]]) -> None:
        if pairs:
            self.source.resume(pairs)

    def _ack(self, cmd_id: str, phase: str, error: str | None) -> None:
        member = self.source.member_id()
        self.channel.send(
            f"ack.{cmd_id}.{phase}.{member}",
            {
                "id": cmd_id,
                "phase": phase,
                "member": member,
                "worker": self.worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "partitions": [list(tp) for tp in sorted(self.source.assignment)],
                "error": error,
                "at_ms": self.clock(),
            },
        )

    def close(self) -> None:
        """Release the control topic's clients."""
        self.channel.close()
