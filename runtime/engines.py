"""One engine interface: ``shoal run --engine NAME`` picks an :class:`Engine` by name.

Two engines run the same job graph: ``native`` (Shoal's own workers on Kafka
consumer groups) and ``flink`` (the job translated to PyFlink). Each implements
:class:`Engine`; the composition root (``runtime.composition.ENGINES``) registers
them, and the command line asks the registry for the one named by ``--engine``
instead of branching on names. A third engine is one class and one
:meth:`EngineRegistry.register` call.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.api.admin import ClientSettings
from runtime.api.bindings import Bindings
from runtime.api.choices import Guarantee, StateBackendName
from runtime.api.errors import ConfigError
from runtime.api.job import Job

__all__ = [
    "Engine",
    "EngineRegistry",
    "HttpEndpoint",
    "RunRequest",
    "Say",
    "stop_on_signals",
]

#: Prints one line for the operator (``shoal run`` writes it to stderr).
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    """Where a worker serves its HTTP service (already checked), and its token."""

    host: str
    port: int
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What ``shoal run`` asks of an engine, resolved from options and settings.

    Attributes:
        job: the job; ``job_spec`` its ``MODULE:ATTR`` (worker processes load it again).
        bindings: topics of sources, sinks and dead letters.
        client: the Kafka address and client settings.
        wire: framing and registry of the endpoints (``connectors.wire.WireConfig``).
        uses_registry: whether ``wire`` names a schema registry.
        guarantee: ``exactly_once`` or ``at_least_once``.
        state: ``rocksdb`` or ``memory``.
        from_savepoint: seed the group from this savepoint (a folder or a URL such as
            ``s3://bucket/prefix``) before any worker starts (``renames`` OLD=NEW,
            ``allow_dropped_state`` and the URL's filesystem ``storage_options`` as
            ``shoal run`` documents; the options may hold secrets and stay out of
            ``repr``).
        explicit_workers: ``--workers`` was given (even 1): run a supervisor, which
            ``shoal scale`` can change.
        state_dir: folder of local state.
        workers: worker processes; ``min_workers``/``max_workers``: autoscaling bounds.
        worker_id: this worker's id; ``explicit_worker_id`` the one given, if any.
        group: the consumer group (default: the job's name).
        seconds: stop after this long (``None``: until a signal).
        checkpoint_ms: checkpoint interval.
        partitions: partitions of output topics created here.
        batch_size: records per batch.
        http: where to serve the HTTP service (``None``: not at all).
        jobmanager: a Flink cluster's REST address.
        stall_timeout: exit for a restart when the loop is stuck this long.
        tick: seconds between live counter lines.
        replication_factor: replication of topics created here.
        schema_dirs: folders of the job author's own schemas.
        quiet: no live counters.
    """

    job: Job
    job_spec: str
    bindings: Bindings
    client: ClientSettings
    wire: object
    uses_registry: bool
    guarantee: Guarantee = "exactly_once"
    state: StateBackendName = "rocksdb"
    state_dir: Path = Path(".shoal") / "state"
    workers: int = 1
    min_workers: int | None = None
    max_workers: int | None = None
    worker_id: str = ""
    explicit_worker_id: str | None = None
    group: str | None = None
    seconds: float | None = None
    checkpoint_ms: int = 1000
    partitions: int = 4
    batch_size: int = 10_000
    http: HttpEndpoint | None = None
    jobmanager: str | None = None
    stall_timeout: float = 120.0
    tick: float = 1.0
    replication_factor: int = -1
    schema_dirs: tuple[Path, ...] = ()
    quiet: bool = False
    from_savepoint: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    renames: tuple[str, ...] = ()
    allow_dropped_state: bool = False
    explicit_workers: bool = False


class Engine(Protocol):
    """Runs a job until it is stopped (a signal, or ``request.seconds``)."""

    def run(self, request: RunRequest, say: Say) -> None:
        """Run ``request.job``; ``say`` prints progress for the operator.

        Raises:
            ConfigError: the request asks for something this engine does not do.
            ShoalError: the job failed.
        """
        ...


class EngineRegistry:
    """Engines by name; each is built only when it is asked for (its imports may be heavy)."""

    def __init__(self) -> None:
        self._engines: dict[str, tuple[Callable[[], Engine], str]] = {}

    def register(self, name: str, factory: Callable[[], Engine], summary: str) -> None:
        """Add an engine.

        Raises:
            ConfigError: ``name`` is taken.
        """
        if name in self._engines:
            raise ConfigError(f"engine {name!r} is registered twice")
        self._engines[name] = (factory, summary)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._engines)

    def summary(self) -> str:
        """One line per engine: ``name: what it is``."""
        return "; ".join(f"{name}: {summary}" for name, (_, summary) in self._engines.items())

    def get(self, name: str) -> Engine:
        """The engine called ``name``.

        Raises:
            ConfigError: no engine has that name.
        """
        entry = self._engines.get(name)
        if entry is None:
            raise ConfigError(f"unknown engine {name!r}: use {' or '.join(self._engines)}")
        return entry[0]()


def stop_on_signals(seconds: float | None) -> Callable[[], bool]:
    """Make SIGINT and SIGTERM ask the run to stop, instead of killing the process.

    Returns:
        ``should_stop()``: true after a signal, or once ``seconds`` have passed.
    """
    stop = {"now": False}
    deadline = None if seconds is None else time.monotonic() + seconds

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return lambda: stop["now"] or (deadline is not None and time.monotonic() > deadline)
