"""Errors raised by Shoal.

Every error derives from :class:`ShoalError`. The tree is split by what should
happen next::

    ShoalError
    ├── ConfigError            a job or endpoint is misconfigured; fix and restart
    ├── JobDefinitionError     the job graph is invalid (duplicate step names, ...)
    ├── RecordError            bad input: the record goes to the dead-letter topic
    │   ├── DecodeError        bytes that are not valid for any known schema
    │   ├── SchemaError        a decoded value that violates its schema
    │   ├── TimestampError     missing or absurd event time
    │   └── OutputRefused      an output record the broker would refuse (too large,
    │                          or refused once already): dead-lettered, not written
    ├── UserFunctionError      a job's own function raised; the error policy decides
    ├── ConnectorError         an external system failed (broker, database, ...)
    │   └── BrokerError        the local broker could not be started or reached
    ├── WorkerBusy             a call into the worker thread was refused: too many are
    │                          pending (the HTTP service answers 503; try again)
    ├── InvariantError         the engine reached a state it must never reach (a bug in
    │                          Shoal, not in the job): fatal; the worker restarts
    └── StateError             state or checkpoint failure: fatal for the task
        ├── CheckpointAborted  a checkpoint lost a race with a rebalance: rewind to the
        │                      last committed checkpoint and go on
        └── StateFormatError   stored state bytes that do not decode (corrupt, or an
                               old format): migrate or fix the state, then restart

Messages name the job, the step and the record's topic/partition/offset when
they are known.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecordOrigin:
    """Where a record came from: used in error messages and dead-letter headers."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class ShoalError(Exception):
    """Root of every error Shoal raises."""


class ConfigError(ShoalError):
    """A job, endpoint or command-line setting is invalid."""


class JobDefinitionError(ShoalError):
    """The job graph is invalid: duplicate step names, unknown sources, ..."""


class RecordError(ShoalError):
    """A single input record is bad; it is dead-lettered, not fatal.

    Args:
        message: what is wrong with the record.
        origin: topic, partition and offset of the record, when known.
        step: the step that rejected it, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        origin: RecordOrigin | None = None,
        step: str | None = None,
    ) -> None:
        self.reason = message
        self.origin = origin or RecordOrigin()
        self.step = step
        where = []
        if step:
            where.append(f"step {step!r}")
        if self.origin.topic is not None:
            where.append(f"record {self.origin}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class DecodeError(RecordError):
    """The record's bytes could not be decoded."""


class SchemaError(RecordError):
    """The record decoded but violates its schema."""


class TimestampError(RecordError):
    """The record has no event time, or an absurd one."""


class OutputRefused(RecordError):
    """An output record the destination topic does not accept (larger than its
    ``max.message.bytes``, or refused by the broker once already); it is
    dead-lettered instead of failing every checkpoint."""


class UserFunctionError(ShoalError):
    """A function supplied by the job raised an exception."""


class ConnectorError(ShoalError):
    """An external system (broker, database, HTTP endpoint) failed."""


class BrokerError(ConnectorError):
    """The local Kafka broker could not be prepared, started or reached."""


class WorkerBusy(ShoalError):
    """The worker thread already has its maximum of calls pending; try again later."""


class InvariantError(ShoalError):
    """The engine found its own bookkeeping in a state it must never be in.

    Raised instead of ``assert`` (which ``python -O`` strips): the worker fails and its
    restart resumes from the last committed checkpoint.
    """


class StateError(ShoalError):
    """State or checkpoint failure; fatal for the task that hit it."""


class CheckpointAborted(StateError):
    """A checkpoint could not commit because the group moved on (rebalance, new generation).

    Nothing of it is visible: the worker rewinds its tasks to the last committed
    checkpoint and its consumer to the committed offsets, then continues.
    """


class StateFormatError(StateError):
    """Stored state (a changelog record, a local store's entry) does not decode.

    The bytes are corrupt, in an unknown format, or in the old format that this
    version never loads; the message says which, where, and how to migrate.
    """
