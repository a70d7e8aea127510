"""Shared fixtures: one real local Kafka broker per test run, started on demand."""

from __future__ import annotations

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
