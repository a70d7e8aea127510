"""Local state and the files Shoal writes are owner-only, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.api.files import open_private_log, private_dir, write_private
from runtime.state.rocksdb import RocksDBBackend


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: nothing is masked, so only explicit modes protect."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_folders_are_0700_at_every_level_created_and_parents_are_left_alone(
    tmp_path: Path, open_umask: None
) -> None:
    tmp_path.chmod(0o755)
    leaf = private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", leaf)] == [0o700] * 3
    assert mode(tmp_path) == 0o755  # existed before: not ours to change
    (tmp_path / "open").mkdir(mode=0o777)
    assert mode(private_dir(tmp_path / "open")) == 0o700  # the leaf is always made private


def test_files_are_0600_new_rewritten_and_appended(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "server.properties"
    write_private(path, "a=1\n")
    assert mode(path) == 0o600 and path.read_text() == "a=1\n"
    path.chmod(0o666)
    write_private(path, b"b=2\n", append=True)
    assert mode(path) == 0o600 and path.read_text() == "a=1\nb=2\n"
    log = tmp_path / "stdout.log"
    log.write_text("old\n")
    log.chmod(0o644)
    fd = open_private_log(log)
    try:
        os.write(fd, b"new\n")
    finally:
        os.close(fd)
    assert mode(log) == 0o600 and log.read_text() == "old\nnew\n"


def test_rocksdb_state_folders_are_0700(tmp_path: Path, open_umask: None) -> None:
    root = tmp_path / "state" / "w0"
    backend = RocksDBBackend(root)
    try:
        store = backend.open_store("job", "counts", 3)
        store.close()
    finally:
        backend.close()
    for folder in (tmp_path / "state", root, root / "job", root / "job" / "counts"):
        assert mode(folder) == 0o700, folder
    assert mode(root / "job" / "counts" / "3") == 0o700
    assert any((root / "job" / "counts" / "3").iterdir())  # the store lives there
