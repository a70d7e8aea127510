"""State in the old format is refused on restore with one line that says how to migrate.

A job checkpoints to its changelog on the real broker; then a record in the old
format (a pickle whose loading would create a marker file) is appended to that
changelog, as a previous version (or an attacker) would have left it. Restarting
the job with ``shoal run`` must fail with one ``error:`` line naming the changelog
topic, partition and offset and the way to migrate, no traceback, and nothing run.
"""

from __future__ import annotations

import os
import pickle  # only to write the old format the worker must refuse
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from jobs.playback_health import job
from runtime.api.bindings import Bindings
from runtime.engine.topics import changelog_topic
from runtime.generator import GeneratorConfig
from runtime.state.serde import encode_key
from tests.integration.helpers import produce_generated, read_all, run_job_until_idle, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Touch:
    """Runs ``touch <path>`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


def test_old_format_changelog_fails_restore_with_one_line(kafka: str, tmp_path: Path) -> None:
    playback, out, errors, dead = (unique(p) for p in ("old-in", "old-out", "old-err", "old-dl"))
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 1)])
    config = GeneratorConfig(
        seed=5, users=100, late_rate=0.0, malformed_rate=0.0, bad_timestamp_rate=0.0,
        interaction_ratio=0.0,
    )  # fmt: skip
    produce_generated(kafka, {"playback": playback, "interactions": playback}, config, 3_000)
    binds = [
        f"playback={playback}",
        f"rebuffers-per-cdn={out}",
        f"playback-errors={errors}",
        f"dead-letters={dead}",
    ]
    group = f"oldfmt-{uuid.uuid4().hex[:6]}"
    worker = run_job_until_idle(kafka, job, Bindings.for_job(job, binds), group=group)
    assert worker.checkpoints > 0

    # The changelog now holds this version's records; append one in the old format.
    topic = changelog_topic(group, "rebuffers_10s")
    marker = tmp_path / "pwned"
    old = pickle.dumps(Touch(marker), protocol=5)
    sink = KafkaSink(kafka)
    sink.write(topic, encode_key(("cdn-a", 0)), old, None, None, 0)
    sink.flush()
    offsets = [m.offset() for m in read_all(kafka, topic) if m.value() == old]
    assert len(offsets) == 1

    args = ["run", "jobs.playback_health:job", "--bootstrap", kafka, "--group", group]
    args += ["--state", "memory", "--seconds", "60", "--quiet"]
    for bind in binds:
        args += ["--bind", bind]
    run = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    errors_said = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert len(errors_said) == 1, run.stderr[-3000:]
    line = errors_said[0]
    assert f"changelog {topic}[0] at offset {offsets[0]}" in line, line
    assert "old format" in line and "new --group" in line and ".changelog topics" in line, line
    assert not marker.exists()
