"""Shared fixtures: one real local Kafka broker per test run, started on demand."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.api.errors import BrokerError
from runtime.composition import broker_settings
from runtime.settings import load_settings

# The references' own comparisons (assert_same_sessions ...) report like the tests' asserts.
pytest.register_assert_rewrite("tests.reference")


def _require(tool: str, why: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: {why}. Install it (see .ci/run) - tests never skip.")


@pytest.fixture(scope="session", autouse=True)
def shoal_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test, and every ``shoal`` command a test starts, gets a home of this run.

    The default home is per user (``~/.local/share/shoal``): tests never touch the
    developer's broker or local state there. A test that sets ``SHOAL_HOME`` itself
    (or removes it, to check the default) does so in its child's environment.
    """
    home = tmp_path_factory.mktemp("shoal-home")
    before = os.environ.get("SHOAL_HOME")
    os.environ["SHOAL_HOME"] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("SHOAL_HOME", None)
        else:
            os.environ["SHOAL_HOME"] = before


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Apache Kafka broker (KRaft), fresh for this run."""
    _require("java", "the local Kafka broker needs Java 17+")
    _require("mvn", "the broker's jars come from Maven Central through Maven")
    from connectors.kafka.broker import LocalBroker

    home = tmp_path_factory.mktemp("broker")
    broker = LocalBroker(broker_settings(load_settings(), home))
    try:
        bootstrap = broker.start()
    except BrokerError as exc:
        pytest.fail(f"could not start the local Kafka broker: {exc}")
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def broker_home(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the session broker (for tests that inspect it)."""
    return Path(tmp_path_factory.getbasetemp()) / "broker0"


@pytest.fixture
def topic_name() -> str:
    """A fresh, unique topic name."""
    return f"t-{uuid.uuid4().hex[:10]}"
