"""Group offsets read from a broker that has just started, for groups it never saw.

librdkafka's admin client crashes the whole process (SIGSEGV) when an offset fetch is
answered NOT_COORDINATOR, which a broker that has just started does for groups it has
not loaded (librdkafka issue 5040). ``KafkaAdmin`` describes the group first, which
finds its coordinator and waits out the loading. The reads run in a child process, so
that a crash fails this test instead of ending the test run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connectors.kafka.broker import LocalBroker
from runtime.composition import broker_settings
from runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]

READS = """
import sys
from connectors.kafka.admin import KafkaAdmin
for i in range(6):
    admin = KafkaAdmin(sys.argv[1])
    print(admin.group_offsets(f"never-seen-{i}"), admin.group_lag(f"never-seen-{i}", ["x"]))
"""


def test_offsets_of_unseen_groups_on_a_fresh_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    broker = LocalBroker(broker_settings(load_settings(), tmp_path_factory.mktemp("fresh")))
    bootstrap = broker.start()
    try:
        run = subprocess.run(
            [sys.executable, "-c", READS, bootstrap], cwd=ROOT, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
    finally:
        broker.stop()
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert run.stdout.splitlines() == ["{} 0"] * 6, run.stdout
