"""``shoal run --workers N``: N worker processes in one consumer group.

Each worker gets a stable slot id (``BASE-w0`` .. ``BASE-wN-1``, ``BASE`` from
``runtime.cli.identity``: the host name unless an id or pod name is given) that names
its transactional id and its local state folder; a worker that dies is restarted in
the same slot, which fences and aborts the dead one's open transaction at once.

While it runs, the supervisor keeps a small state file, ``SHOAL_HOME/run/<group>.workers.json``
(:func:`workers_file`): its own pid and the pid of each slot's current worker, rewritten
whenever a worker starts or ends and removed when the supervisor stops. Other commands on
the same machine find the job's processes there (``shoal chaos`` kills them), never by
guessing from process names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from runtime.cli.scaling import LagRule


@dataclass(frozen=True)
class Autoscale:
    """Scale between the rule's bounds: sample the group's lag every ``interval_s``."""

    rule: LagRule
    lag: Callable[[], int]
    interval_s: float = 5.0


def workers_file(home: Path, group: str) -> Path:
    """Where the supervisor of ``group`` on this machine lists its worker processes."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in group)
    return home / "run" / f"{safe}.workers.json"


def service_file(home: Path, group: str, worker_id: str) -> Path:
    """Where a worker of ``group`` on this machine writes its HTTP service's address
    (while it serves; ``shoal canary`` reads the workers' metrics there)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{group}.{worker_id}")
    return home / "run" / f"{safe}.http"


def service_urls(home: Path, group: str) -> list[str]:
    """The HTTP service addresses the live workers of ``group`` on this machine wrote."""
    urls = []
    for path in sorted((home / "run").glob("*.http")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and entry.get("group") == group:
            url = entry.get("url")
            if isinstance(url, str) and url.startswith("http"):
                urls.append(url)
    return urls


def read_workers(path: Path) -> dict[str, Any]:
    """A supervisor's state file: ``{"supervisor": pid, "group": ..., "workers": {id: pid}}``.

    Returns an empty dict when there is none (no supervisor of that group runs here) or it
    cannot be read.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_workers(
    path: Path | None, group: str, base: str, procs: dict[int, subprocess.Popen[bytes]]
) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "supervisor": os.getpid(),
        "group": group,
        "workers": {f"{base}-w{slot}": p.pid for slot, p in sorted(procs.items())},
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)  # readers never see half a file


def _spawn(
    base: str,
    slot: int,
    job_spec: str,
    server: str,
    args: list[str],
    global_args: list[str],
) -> subprocess.Popen[bytes]:
    rest = [a for a in args if a != job_spec]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.cli.main",
            *global_args,
            "run",
            job_spec,
            "--bootstrap",
            server,
            "--worker-id",
            f"{base}-w{slot}",
            *[a for a in rest if not a.startswith("--bootstrap")],
        ],
        start_new_session=True,
    )


def supervise(
    job_name: str,
    workers: int,
    job_spec: str,
    server: str,
    args: list[str],
    quiet: bool,
    global_args: list[str] | None = None,
    base: str = "w",
    autoscale: Autoscale | None = None,
    control: tuple[Any, str] | None = None,
    pid_file: Path | None = None,
) -> None:
    """Run and watch the workers until Ctrl-C/SIGTERM; restart any that die.

    ``args`` are ``run``'s own options, ``global_args`` the program's (before ``run``);
    slot ``I`` runs as worker ``BASE-wI``. With ``autoscale`` the worker count moves
    between the rule's bounds (see ``runtime.cli.scaling``), starting at ``workers``;
    a worker taken away gets SIGTERM (it checkpoints and leaves the group).
    ``control`` (client settings, group): answer ``shoal scale`` through the job's
    control topic. ``pid_file``: keep the worker pids there (see :func:`workers_file`).
    """
    top = list(global_args or [])
    clean: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--bootstrap", "--worker-id"):
            skip = True
            continue
        clean.append(a)
    procs = {i: _spawn(base, i, job_spec, server, clean, top) for i in range(workers)}
    group = control[1] if control is not None else job_name
    _write_workers(pid_file, group, base, procs)
    known = {slot: p.pid for slot, p in procs.items()}
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo(
        f"supervising {workers} workers of {job_name}: {base}-w0..{base}-w{workers - 1}",
        err=True,
    )
    retiring: set[int] = set()
    # hook: shoal scale JOB N (see runtime.cli.scale_control)
    requests = None
    if control is not None:
        from runtime.cli.scale_control import ScaleRequests

        requests = ScaleRequests(*control)
    next_sample = time.monotonic() + (autoscale.interval_s if autoscale else 0)
    try:
        while not stop["now"]:
            if requests is not None:
                for request, want in requests.poll():
                    _rescale(
                        request, want, requests, procs, retiring, autoscale,
                        lambda s: _spawn(base, s, job_spec, server, clean, top), base,
                    )  # fmt: skip
            if autoscale is not None and time.monotonic() >= next_sample:
                next_sample = time.monotonic() + autoscale.interval_s
                _scale(
                    autoscale,
                    procs,
                    retiring,
                    lambda s: _spawn(base, s, job_spec, server, clean, top),
                    base,
                )
            for slot, proc in list(procs.items()):
                code = proc.poll()
                if code is not None:
                    if code == 0 or slot in retiring:
                        click.echo(f"worker {base}-w{slot} finished", err=True)
                        del procs[slot]
                        retiring.discard(slot)
                        continue
                    click.echo(f"worker {base}-w{slot} exited with {code}; restarting", err=True)
                    procs[slot] = _spawn(base, slot, job_spec, server, clean, top)
            if {slot: p.pid for slot, p in procs.items()} != known:
                known = {slot: p.pid for slot, p in procs.items()}
                _write_workers(pid_file, group, base, procs)
            if not procs:
                return
            time.sleep(0.5)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        if requests is not None:
            requests.close()
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _scale(
    autoscale: Autoscale,
    procs: dict[int, subprocess.Popen[bytes]],
    retiring: set[int],
    spawn: Callable[[int], subprocess.Popen[bytes]],
    base: str,
) -> None:
    """One sample of the lag and, if the rule says so, one worker more or fewer."""
    try:
        lag = autoscale.lag()
    except Exception as exc:  # a failed sample must never stop the supervisor
        click.echo(f"scaling: cannot read the group's lag ({exc}); keeping the workers", err=True)
        return
    running = sorted(s for s in procs if s not in retiring)
    decision = autoscale.rule.decide(lag, len(running), time.monotonic())
    if decision.change > 0:
        slot = next(i for i in range(len(procs) + 1) if i not in procs)
        procs[slot] = spawn(slot)
        click.echo(
            f"scaling: {len(running)} -> {len(running) + 1} workers ({decision.reason}); "
            f"started {base}-w{slot}",
            err=True,
        )
    elif decision.change < 0 and running:
        slot = running[-1]
        retiring.add(slot)
        os.killpg(procs[slot].pid, signal.SIGTERM)
        click.echo(
            f"scaling: {len(running)} -> {len(running) - 1} workers ({decision.reason}); "
            f"stopping {base}-w{slot}",
            err=True,
        )


def _rescale(
    request: str,
    want: int,
    requests: Any,
    procs: dict[int, subprocess.Popen[bytes]],
    retiring: set[int],
    autoscale: Autoscale | None,
    spawn: Callable[[int], subprocess.Popen[bytes]],
    base: str,
) -> None:
    """Start or stop workers until ``want`` run (a ``shoal scale`` request)."""
    running = sorted(s for s in procs if s not in retiring)
    if autoscale is not None:
        requests.answer(
            request, len(running), len(running), "autoscaling is on (--max-workers); restart "
            "the job without it to set the worker count"
        )  # fmt: skip
        return
    before = len(running)
    while len(running) < want:
        slot = next(i for i in range(len(procs) + 1) if i not in procs)
        procs[slot] = spawn(slot)
        running.append(slot)
        click.echo(f"scale: started {base}-w{slot}", err=True)
    while len(running) > want:
        slot = running.pop()
        retiring.add(slot)
        os.killpg(procs[slot].pid, signal.SIGTERM)
        click.echo(f"scale: stopping {base}-w{slot}", err=True)
    click.echo(f"scale: {before} -> {want} workers", err=True)
    requests.answer(request, before, want)
