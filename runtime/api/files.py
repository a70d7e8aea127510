"""Private folders and files: what Shoal keeps on local disk is its user's alone.

Local state (RocksDB stores), the local broker's home (its data, configuration and
logs) and the files Shoal writes there are created owner-only: folders ``0700``,
files ``0600``. The modes are set explicitly after creation, so they do not depend
on the process's umask. Folders that already existed above the first one Shoal
creates (the working directory, a home folder) are left as they are.

It lives in ``runtime.api`` because both sides need it and may meet only here: the
state backends (``runtime.state``) and the connectors (``connectors.kafka``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "open_private_log", "private_dir", "write_private"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as ``0700`` folders; ``path`` ends ``0700``.

    Raises:
        OSError: a folder cannot be created or its mode set.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process: still made private below
        os.chmod(folder, DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, data: str | bytes, *, append: bool = False) -> None:
    """Write (or append) ``data`` to ``path``, a ``0600`` file whatever the umask.

    Raises:
        OSError: the file cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # also when the file existed with another mode
        with os.fdopen(fd, "ab" if append else "wb", closefd=False) as out:
            out.write(data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)


def open_private_log(path: Path) -> int:
    """A ``0600`` file opened for appending (a child process's output); returns its fd.

    Raises:
        OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd
