"""The session's local broker keeps its configuration, data and logs owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_broker_home_folders_are_0700_and_its_files_0600(broker_home: Path) -> None:
    for folder in ("config", "data", "logs"):
        assert mode(broker_home / folder) == 0o700, folder
    for name in ("config/server.properties", "config/log4j2.properties", "broker.json",
                 "logs/stdout.log"):  # fmt: skip
        assert mode(broker_home / name) == 0o600, name
    assert (broker_home / "data" / "meta.properties").exists()  # formatted into it
