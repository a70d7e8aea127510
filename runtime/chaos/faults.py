"""How faults are done: kill a worker of a :class:`Target`, pause a local process.

A ``Target`` is where a job's workers run: :class:`LocalTarget` reads the state file
of a local ``shoal run --workers N`` supervisor (``runtime.cli.supervisor``), whose
dead workers it restarts; ``runtime.chaos.kubernetes`` deletes the pods of a
StatefulSet, whose controller recreates them. A pause is SIGSTOP, a few seconds,
then SIGCONT of a process of this machine (the local broker, a local Redis or
PostgreSQL): clients see a server that stops answering, not one that refuses.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from runtime.api.errors import ConfigError
from runtime.cli.supervisor import read_workers


class Target(Protocol):
    """The workers of a running job, and a way to kill one."""

    def describe(self) -> str:
        """What this target is, for the progress lines."""
        ...

    def workers(self) -> list[str]:
        """The ids of the workers running now (empty while none is known)."""
        ...

    def kill(self, worker: str) -> None:
        """Kill ``worker`` at once, as a crash would (no graceful stop)."""
        ...


class LocalTarget:
    """The workers of a local ``shoal run --workers N`` supervisor.

    Args:
        pid_file: the supervisor's state file (``runtime.cli.supervisor.workers_file``).
    """

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    def describe(self) -> str:
        """The supervisor and its workers."""
        state = read_workers(self.pid_file)
        return f"supervisor pid {state.get('supervisor', '?')}, workers {self.workers()}"

    def check(self) -> None:
        """Raise unless a live supervisor is listed.

        Raises:
            ConfigError: no supervisor of this group runs on this machine.
        """
        state = read_workers(self.pid_file)
        sup = state.get("supervisor")
        if not isinstance(sup, int) or not _alive(sup):
            raise ConfigError(
                f"no local supervisor for this job (no live one in {self.pid_file}): start "
                "it with shoal run JOB --workers N on this machine, with the same SHOAL_HOME"
            )

    def _pids(self) -> dict[str, int]:
        workers = read_workers(self.pid_file).get("workers", {})
        if not isinstance(workers, dict):
            return {}
        return {
            str(w): pid
            for w, pid in workers.items()
            if isinstance(pid, int) and _alive(pid) and _is_worker(pid, str(w))
        }

    def workers(self) -> list[str]:
        """Worker ids whose process runs and is that worker."""
        return sorted(self._pids())

    def kill(self, worker: str) -> None:
        """SIGKILL the worker's process group (the worker and anything it started).

        Raises:
            ConfigError: the worker is not running.
        """
        pid = self._pids().get(worker)
        if pid is None:
            raise ConfigError(f"worker {worker} is not running")
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_worker(pid: int, worker: str) -> bool:
    """Whether ``pid`` is still the ``shoal run`` of ``worker`` (a pid can be reused)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the supervisor's file, which is rewritten at once
    return worker.encode() in args and b"run" in args


def pause(
    pid: int,
    seconds: float,
    what: str,
    *,
    group: bool = False,
    wait: Callable[[float], None] = time.sleep,
) -> None:
    """SIGSTOP ``pid``, wait ``seconds``, SIGCONT it (also when interrupted).

    ``group``: the whole process group when ``pid`` leads one (a PostgreSQL server's
    postmaster and its backends).

    Raises:
        ConfigError: the process does not exist or is not ours to signal.
    """

    def send(sig: int) -> None:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)

    try:
        send(signal.SIGSTOP)
    except ProcessLookupError:
        raise ConfigError(f"{what} (pid {pid}) is not running") from None
    except PermissionError:
        raise ConfigError(f"{what} (pid {pid}) belongs to another user") from None
    try:
        wait(seconds)
    finally:
        send(signal.SIGCONT)


def local_process(pid_file: Path, what: str) -> int:
    """The pid in a server's pid file (first line), e.g. ``postmaster.pid`` or Redis's.

    Raises:
        ConfigError: the file is missing or holds no live pid.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise ConfigError(f"{what}: no pid in {pid_file}") from None
    if not _alive(pid):
        raise ConfigError(f"{what}: pid {pid} from {pid_file} is not running")
    return pid
