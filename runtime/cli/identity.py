"""Who a worker is: a stable, unique id per worker slot, never a shared constant.

A worker's id names its static group membership (``group.instance.id``), its
transactional id (a restarted worker fences its predecessor's open transaction), its
local state folder and, with ``--workers``, its HTTP port. It comes from, in order:

1. ``--worker-id``;
2. ``SHOAL_WORKER_ID``;
3. the Kubernetes pod name (``POD_NAME`` from the downward API, or the host name of a
   StatefulSet pod, ``NAME-ORDINAL``, when running in a cluster);
4. the host name.

A supervisor (``--workers N``) gives its slot ``I`` the id ``BASE-wI``; a single worker
without a pod name or an explicit id is ``HOST-w0``. Two workers with one id in one
group would fence each other: the runner refuses to start a second one (see
``runtime.runner.check_identity``).
"""

from __future__ import annotations

import re
import socket

from runtime.settings import Settings

__all__ = ["slot_of", "worker_base", "worker_id"]

_STATEFUL_POD = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-\d+$")
_SLOT = re.compile(r"(?:^|-)w(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def worker_base(settings: Settings, hostname: str | None = None) -> tuple[str, bool]:
    """The id source for this process, and whether it names one worker already.

    Returns:
        ``(base, exact)``: ``exact`` is true for an explicit id or a pod name (one pod,
        one worker), false for a host name (a host may run several workers).
    """
    if settings.worker_id:
        return settings.worker_id, True
    host = hostname or socket.gethostname()
    if settings.pod_name:
        return settings.pod_name, True
    if settings.kubernetes and _STATEFUL_POD.match(host):
        return host, True
    return _UNSAFE.sub("-", host).strip("-") or "host", False


def worker_id(settings: Settings, explicit: str | None, slot: int | None = None) -> str:
    """The id of this worker (``slot``: its slot under a supervisor)."""
    if explicit:
        return explicit
    base, exact = worker_base(settings)
    if slot is None:
        return base if exact else f"{base}-w0"
    return f"{base}-w{slot}"


def slot_of(worker: str | None) -> int | None:
    """The slot number at the end of an id (``host-w3`` -> 3, ``w3`` -> 3), if any."""
    if not worker:
        return None
    match = _SLOT.search(worker)
    return int(match.group(1)) if match else None
