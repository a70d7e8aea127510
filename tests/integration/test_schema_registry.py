"""Jobs and tools against a real schema registry (Apicurio Registry, in memory).

Input is written by Confluent's own Avro serializer (the registry client library's, not
Shoal's) and output is read back by Confluent's Avro deserializer, so Shoal's framing is
checked against an independent implementation. The registry server comes from the
``schema_registry`` fixture (``tests/services.py``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.avro import RegistryConfig
from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.client import registry_client
from connectors.kafka.sink import KafkaSink
from connectors.wire import WireConfig
from jobs.sessionization import build
from runtime.api.bindings import Bindings
from runtime.generator import Generator, GeneratorConfig, corrupt_bytes
from tests.integration.helpers import decoded, read_all, run_job_until_idle, unique
from tests.reference.events import MAX_FUTURE_MS, MIN_VALID_MS
from tests.reference.sessionization import assert_same_sessions, reference_sessions

if TYPE_CHECKING:
    from tests.services import RegistryServer

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.services"]

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {"playback": "PlaybackEvent", "interactions": "InteractionEvent"}
GAP_MS = 60_000
UNKNOWN_ID = 987_654


def avsc(name: str) -> str:
    return (ROOT / "schemas" / f"{name}.avsc").read_text()


def confluent_serializer(client: Any, name: str) -> Callable[[str, dict[str, Any]], bytes]:
    """Confluent's serializer (registers under ``<topic>-value``, its default)."""
    serializer = AvroSerializer(client, avsc(name))

    def encode(topic: str, value: dict[str, Any]) -> bytes:
        data: bytes = serializer(value, SerializationContext(topic, MessageField.VALUE))
        return data

    return encode


def confluent_values(client: Any, messages: list[Any], topic: str) -> list[Any]:
    """Messages decoded by Confluent's deserializer, with each message's writer schema."""
    deserializer = AvroDeserializer(client)
    context = SerializationContext(topic, MessageField.VALUE)
    return [deserializer(m.value(), context) for m in messages]


def shoal(*args: str, home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "SHOAL_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def client(schema_registry: RegistryServer) -> Iterator[Any]:
    """A registry client of the test's own (Confluent's), closed afterwards."""
    with registry_client({"url": schema_registry.url}) as opened:
        yield opened


def test_sessionization_reads_and_writes_registry_framing(
    kafka: str, schema_registry: RegistryServer, client: Any
) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    sessions, retractions, late, dead = (
        unique("sessions"),
        unique("retractions"),
        unique("late"),
        unique("dead"),
    )
    topics = {"playback": playback, "interactions": interactions}
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 4), TopicSpec(interactions, 4)])
    start_ms = (time.time_ns() // 1_000_000 - 3 * 3_600_000) // 3_600_000 * 3_600_000
    config = GeneratorConfig(
        start_ms=start_ms,
        seed=23,
        users=300,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.01,
        malformed_rate=0.002,
        bad_timestamp_rate=0.002,
    )
    sent = Generator(config).take(20_000)
    # Most input through Confluent's serializer; every seventh record single-object
    # encoded (the job reads both); corrupted ones and records with an id the registry
    # never gave out must be dead-lettered.
    confluent = {stream: confluent_serializer(client, name) for stream, name in SCHEMAS.items()}
    single = codec_factory()
    rng = random.Random(5)
    sink = KafkaSink(kafka)
    for i, rec in enumerate(sent):
        topic = topics[rec.stream]
        if i % 7 == 3:
            data = single(SCHEMAS[rec.stream]).encode(rec.value)
        else:
            data = confluent[rec.stream](topic, rec.value)
        if rec.corrupt is not None:
            data = corrupt_bytes(data, rec.corrupt, rng)
        sink.write(topic, rec.key, data, None)
    first = next(r for r in sent if r.stream == "playback" and r.corrupt is None)
    valid_record = confluent["playback"](playback, first.value)
    unknown = b"\x00" + UNKNOWN_ID.to_bytes(4, "big") + valid_record[5:]
    for n in range(3):
        sink.write(playback, f"unknown-{n}".encode(), unknown, None)
    sink.flush()

    job = build(gap=timedelta(milliseconds=GAP_MS), allowed_lateness=timedelta(seconds=30))
    bindings = Bindings.for_job(
        job,
        [
            f"playback={playback}",
            f"interactions={interactions}",
            f"sessions={sessions}",
            f"session-retractions={retractions}",
            f"sessions-late-events={late}",
            f"dead-letters={dead}",
        ],
    )
    wire = WireConfig(RegistryConfig(schema_registry.url), strategy="topic-record")
    worker = run_job_until_idle(kafka, job, bindings, wire=wire)
    now_ms = time.time_ns() // 1_000_000

    # --- the reference over what was sent (as in test_sessionization_job) --------------
    decodable = [r.value for r in sent if r.corrupt is None]
    valid = [v for v in decodable if MIN_VALID_MS <= v["event_time_ms"] <= now_ms + MAX_FUTURE_MS]
    partition_of: dict[str, int] = {}
    for topic in (playback, interactions):
        for m in read_all(kafka, topic):
            user = m.key().decode()
            if not user.startswith("unknown-"):
                assert partition_of.setdefault(user, m.partition()) == m.partition(), user
    watermarks = worker.last_watermarks
    want = {
        key: summary
        for key, summary in reference_sessions(valid, GAP_MS).items()
        if summary["session_end_ms"] + GAP_MS <= watermarks[partition_of[key[0]]]
    }

    # --- what the job wrote, read through the registry by Confluent's deserializer -----
    messages = read_all(kafka, sessions)
    subject = f"{sessions}-shoal.outputs.SessionSummary"  # the topic-record strategy
    registered = client.get_latest_version(subject)
    assert {m.value()[:5] for m in messages} == {b"\x00" + registered.schema_id.to_bytes(4, "big")}
    got_records = confluent_values(client, messages, sessions)
    got = {(r["user_id"], r["device_id"], r["session_start_ms"]): r for r in got_records}
    assert len(got) == len(got_records), "a session was emitted twice"
    assert len(want) > 40
    assert_same_sessions(got, want)

    letters = decoded(read_all(kafka, dead), "DeadLetter")  # Shoal's own: single-object
    assert len(letters) == len(sent) - len(valid) + 3
    unknown_letters = [d for d in letters if d["original_key"] and b"unknown-" in d["original_key"]]
    assert len(unknown_letters) == 3
    assert all(
        d["error_class"] == "DecodeError"
        and f"schema id {UNKNOWN_ID} is unknown to the registry" in d["error_message"]
        for d in unknown_letters
    )
    counters = worker.counters()
    assert counters["playback"]["in"] + counters["interactions"]["in"] == len(sent) + 3
    for step, c in counters.items():
        assert c["in"] == c["processed"] + c["late"] + c["dead_lettered"], step


def test_an_incompatible_output_schema_is_refused_at_start(
    kafka: str, schema_registry: RegistryServer, client: Any, tmp_path: Path
) -> None:
    playback, interactions, sessions = unique("playback"), unique("interactions"), unique("s")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 1), TopicSpec(interactions, 1)])
    subject = f"{sessions}-value"
    older = {
        "type": "record",
        "name": "SessionSummary",
        "namespace": "shoal.outputs",
        "fields": [{"name": "user_id", "type": "int"}],
    }
    client.register_schema(subject, Schema(json.dumps(older), "AVRO"))
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    proc = shoal(
        "run", "jobs.sessionization:job", "--bootstrap", kafka, "--quiet", "--seconds", "30",
        "--schema-registry", schema_registry.url, "--group", unique("refused"),
        "--bind", f"playback={playback}", "--bind", f"interactions={interactions}",
        "--bind", f"sessions={sessions}", "--bind", f"dead-letters={sessions}-dead",
        home=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"error: the schema registry refuses shoal.outputs.SessionSummary under subject "
        f"'{subject}': incompatible with the versions registered there"
    ), lines[0]
    assert sessions not in KafkaAdmin(kafka).topics()  # refused before anything was made
    assert client.get_versions(subject) == [1]


def test_generate_and_tail_through_the_registry_over_tls(
    kafka: str, schema_registry: RegistryServer, tmp_path: Path
) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    tls = [
        "--schema-registry", schema_registry.tls_url,
        "-X", f"schema.registry.ssl.ca.location={schema_registry.ca_file}",
    ]  # fmt: skip
    common = [
        "--bootstrap", kafka, "--playback-topic", playback, "--interactions-topic", interactions,
        "--malformed-rate", "0", "-n", "300", "--quiet",
    ]  # fmt: skip

    # Without the CA the registry's certificate is not trusted: one line, nothing sent.
    refused = shoal("generate", *common, "--schema-registry", schema_registry.tls_url,
                    "-X", "schema.registry.max.retries=0", home=tmp_path)  # fmt: skip
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "certificate verify failed" in refused.stderr, refused.stderr

    made = shoal("generate", *common, *tls, "--subject-strategy", "record", home=tmp_path)
    assert made.returncode == 0, made.stderr
    over_tls = {"url": schema_registry.tls_url, "ssl.ca.location": str(schema_registry.ca_file)}
    messages = read_all(kafka, playback)
    with registry_client(over_tls) as client:
        subjects = set(client.get_subjects())
        generated = confluent_values(client, messages, playback)
    assert {"shoal.events.PlaybackEvent", "shoal.events.InteractionEvent"} <= subjects
    assert messages and all(m.value()[:1] == b"\x00" for m in messages)

    tail = shoal(
        "tail", playback, "--from-beginning", "-n", str(len(messages)), "--timeout", "60",
        "--bootstrap", kafka, *tls, home=tmp_path,
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    shown = [json.loads(line)["value"] for line in tail.stdout.splitlines()]
    key = lambda v: (v["event_id"], v["event_time_ms"])  # noqa: E731
    assert sorted(shown, key=key) == sorted(generated, key=key)
