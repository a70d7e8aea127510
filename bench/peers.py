"""The peers' own virtual environments, under ``bench/.venvs/<name>`` (git-ignored).

Their dependencies clash with Shoal's and with each other's (client library
versions, RocksDB bindings), so each peer gets a virtual environment of its own,
created with ``python -m venv`` and pip on first use and reused while its
requirements stay the same. Versions are pinned so that numbers are comparable
across runs; change a pin here and the environment is rebuilt.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"

#: Peer -> pip requirements (fastavro decodes the input, as in every implementation).
PEERS: dict[str, tuple[str, ...]] = {
    "quix": ("quixstreams==3.28.1", "fastavro==1.13.1"),
    "bytewax": ("bytewax[kafka]==0.21.1", "fastavro==1.13.1"),
    # aiokafka needs cramjam for the lz4-compressed input (librdkafka has it built in).
    "faust": ("faust-streaming[rocksdict]==0.15.3", "aiokafka[lz4]", "fastavro==1.13.1"),
}

_MARKER = ".bench-requirements"


class PeerUnavailable(Exception):
    """A peer's environment cannot be set up here; the message says why, in one line."""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def peer_python(name: str, *, log: bool = True) -> Path:
    """The Python of peer ``name``'s environment, creating it if needed.

    Raises:
        PeerUnavailable: unknown peer, or the environment could not be created.
    """
    if name not in PEERS:
        raise PeerUnavailable(f"no such peer {name!r}")
    wanted = "\n".join(PEERS[name]) + "\n"
    home = VENVS / name
    python = home / "bin" / "python"
    marker = home / _MARKER
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if log:
        print(f"setting up {home.relative_to(VENVS.parent.parent)} (first use) ...", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(home)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise PeerUnavailable(f"python -m venv failed: {_last_line(proc.stderr)}")
    for args in (["--upgrade", "pip"], list(PEERS[name])):
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise PeerUnavailable(f"pip install {' '.join(args)} failed: {_last_line(proc.stderr)}")
    marker.write_text(wanted)
    return python
