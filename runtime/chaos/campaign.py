"""A chaos run's fault period: the planned faults done on time, the job sampled each second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.api.errors import ShoalError
from runtime.chaos.faults import Target
from runtime.chaos.schedule import Fault

Say = Callable[[str], None]


@dataclass(frozen=True)
class Done:
    """A fault as it was done: when (seconds from the start), what, and to what."""

    at_s: float
    kind: str
    detail: str
    ok: bool = True


@dataclass(frozen=True)
class Sample:
    """The job once a second: its lag and the input records it committed per second."""

    at_s: float
    lag: int | None
    rate: float | None


@dataclass
class Record:
    """Everything a run did and saw, for the verdict line and the report."""

    done: list[Done] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """Faults of ``kind`` that were done."""
        return sum(1 for d in self.done if d.kind == kind and d.ok)


class Sampler(threading.Thread):
    """Reads the group's lag and committed input position every second, in the background.

    Args:
        read: returns ``(lag, committed records)``; a failure leaves a gap.
        t0: the run's start (``time.monotonic()``).
        into: where samples go.
    """

    def __init__(self, read: Callable[[], tuple[int, int]], t0: float, into: Record) -> None:
        super().__init__(name="shoal-chaos-sampler", daemon=True)
        self.read, self.t0, self.into = read, t0, into
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        last: tuple[float, int] | None = None
        while not self.stopped.is_set():
            at = time.monotonic() - self.t0
            try:
                lag, position = self.read()
            except Exception:  # a sample during a broker pause may fail: leave a gap
                self.into.samples.append(Sample(at, None, None))
                last = None
            else:
                rate = None
                if last is not None and at > last[0]:
                    rate = max(0.0, (position - last[1]) / (at - last[0]))
                self.into.samples.append(Sample(at, lag, rate))
                last = (at, position)
            self.stopped.wait(max(0.0, 1.0 - (time.monotonic() - self.t0 - at)))

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self.stopped.set()
        self.join(timeout=30)


@dataclass(frozen=True)
class Pauses:
    """How to do the pauses (``None``: that kind of fault is not configured)."""

    broker: Callable[[], str] | None = None
    sink: Callable[[], str] | None = None


def run_faults(
    target: Target,
    faults: list[Fault],
    duration_s: float,
    pauses: Pauses,
    record: Record,
    t0: float,
    say: Say,
) -> None:
    """Do each fault at its time until ``duration_s`` has passed since ``t0``."""
    for fault in faults:
        wait = t0 + fault.at_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        at = time.monotonic() - t0
        if fault.kind == "kill":
            record.done.append(_kill(target, fault, at, say))
        else:
            do = pauses.broker if fault.kind == "broker_pause" else pauses.sink
            if do is None:
                continue
            say(f"[chaos {at:5.1f}s] {fault.kind.replace('_', ' ')} ...")
            try:
                detail = do()
            except ShoalError as exc:
                record.done.append(Done(at, fault.kind, str(exc), ok=False))
                say(f"[chaos {at:5.1f}s] {fault.kind} failed: {exc}")
            else:
                record.done.append(Done(at, fault.kind, detail))
                say(f"[chaos {time.monotonic() - t0:5.1f}s] {detail}")
    rest = t0 + duration_s - time.monotonic()
    if rest > 0:
        time.sleep(rest)


def _kill(target: Target, fault: Fault, at: float, say: Say) -> Done:
    workers = target.workers()
    if not workers:
        say(f"[chaos {at:5.1f}s] kill skipped: no worker running (still restarting?)")
        return Done(at, "kill", "no worker running", ok=False)
    worker = workers[int(fault.pick * len(workers)) % len(workers)]
    try:
        target.kill(worker)
    except ShoalError as exc:
        say(f"[chaos {at:5.1f}s] kill {worker} failed: {exc}")
        return Done(at, "kill", f"{worker}: {exc}", ok=False)
    say(f"[chaos {at:5.1f}s] killed {worker} (SIGKILL); {len(workers) - 1} still running")
    return Done(at, "kill", worker)
