"""CPU time and resident memory of a job's worker processes, from ``/proc`` (Linux).

The canary measures what a version costs per record: CPU seconds spent by the
workers against records they committed. Wall-clock throughput says nothing while both
versions keep up with the live input; CPU per record does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Usage", "usage_of"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Usage:
    """Summed over processes: CPU seconds (user + system) and resident MB; ``alive``:
    how many of them could be read."""

    cpu_s: float
    rss_mb: float
    alive: int


def _one(pid: int, proc: Path) -> tuple[float, float] | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        statm = (proc / str(pid) / "statm").read_text()
    except OSError:
        return None  # gone (a worker that was just restarted)
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    resident = int(statm.split()[1])
    return (utime + stime) / _TICKS, resident * _PAGE / 2**20


def usage_of(pids: Iterable[int], proc: Path = Path("/proc")) -> Usage:
    """CPU seconds and resident MB of ``pids`` together (gone ones are skipped)."""
    cpu = rss = 0.0
    alive = 0
    for pid in pids:
        got = _one(pid, proc)
        if got is not None:
            cpu += got[0]
            rss += got[1]
            alive += 1
    return Usage(cpu, rss, alive)
