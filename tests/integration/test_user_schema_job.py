"""A job outside the repository, with its own record schema, run with ``shoal run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from tests.integration.helpers import decoded, read_all, unique

if TYPE_CHECKING:
    from tests.services import RegistryServer

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.services"]

SCHEMA = {
    "type": "record",
    "name": "ButtonClick",
    "namespace": "acme.events",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "button", "type": "string"},
        {"name": "at_ms", "type": "long"},
    ],
}
JOB = '''
from pathlib import Path

from runtime import Job, Json

job = Job("clicks", schemas=Path(__file__).parent / "schemas")
(
    job.source("clicks", schema="ButtonClick", timestamp=lambda e: e["at_ms"])
    .filter(lambda e: e["button"] == "play", name="plays_only")
    .map(lambda e: {"user": e["user_id"], "at_ms": e["at_ms"]}, name="project")
    .sink("plays", Json())
)
'''


def test_job_with_its_own_schema_runs_on_the_broker(kafka: str, tmp_path: Path) -> None:
    project = tmp_path / "clickproject"
    (project / "schemas").mkdir(parents=True)
    (project / "schemas" / "ButtonClick.avsc").write_text(json.dumps(SCHEMA))
    (project / "click_job.py").write_text(textwrap.dedent(JOB))
    topic, out = unique("clicks"), unique("plays")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(topic, 2)])
    encode = codec_factory([project / "schemas"])("ButtonClick").encode
    base = 1_700_000_000_000
    clicks = [
        {"user_id": f"u{i % 7}", "button": "play" if i % 3 else "pause", "at_ms": base + i}
        for i in range(300)
    ]
    sink = KafkaSink(kafka)
    for c in clicks:
        sink.write(topic, c["user_id"].encode(), encode(c), None)
    sink.write(topic, b"bad", b"\x00not avro", None)
    sink.flush()
    env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "run", "click_job:job", "--bootstrap", kafka,
         "--group", unique("clicks-job"), "--bind", f"clicks={topic}", "--bind", f"plays={out}",
         "--bind", f"dead-letters={out}-dead", "--seconds", "25", "--quiet"],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    got = sorted((v["user"], v["at_ms"]) for v in decoded(read_all(kafka, out), ""))
    want = sorted((c["user_id"], c["at_ms"]) for c in clicks if c["button"] == "play")
    assert got == want
    dead = decoded(read_all(kafka, f"{out}-dead", first_wait_s=5), "DeadLetter")
    assert len(dead) == 1 and dead[0]["source_topic"] == topic


def test_job_with_its_own_schema_reads_registry_framed_input(
    kafka: str, schema_registry: RegistryServer, tmp_path: Path
) -> None:
    """The same outside job, its input written by Confluent's serializer through the
    real registry: Shoal resolves the writer schema by id against the job's own record."""
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from connectors.kafka.client import registry_client

    project = tmp_path / "clickproject"
    (project / "schemas").mkdir(parents=True)
    (project / "schemas" / "ButtonClick.avsc").write_text(json.dumps(SCHEMA))
    (project / "click_job.py").write_text(textwrap.dedent(JOB))
    topic, out = unique("rclicks"), unique("rplays")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(topic, 2)])
    base = 1_700_000_000_000
    clicks = [
        {"user_id": f"u{i % 5}", "button": "play" if i % 4 else "pause", "at_ms": base + i}
        for i in range(120)
    ]
    sink = KafkaSink(kafka)
    with registry_client({"url": schema_registry.url}) as client:
        serialize = AvroSerializer(client, json.dumps(SCHEMA))
        context = SerializationContext(topic, MessageField.VALUE)
        for c in clicks:
            sink.write(topic, c["user_id"].encode(), serialize(c, context), None)
    sink.flush()
    env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "run", "click_job:job", "--bootstrap", kafka,
         "--schema-registry", schema_registry.url, "--group", unique("rclicks-job"),
         "--bind", f"clicks={topic}", "--bind", f"plays={out}",
         "--bind", f"dead-letters={out}-dead", "--seconds", "25", "--quiet"],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    got = sorted((v["user"], v["at_ms"]) for v in decoded(read_all(kafka, out), ""))
    assert got == sorted((c["user_id"], c["at_ms"]) for c in clicks if c["button"] == "play")
