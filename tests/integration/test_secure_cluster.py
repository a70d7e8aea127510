"""Shoal on a secured cluster: SASL_SSL (SCRAM-SHA-512, TLS from a throwaway CA) and ACLs.

A second local broker runs for this module with a SASL_SSL listener and KRaft's
StandardAuthorizer (nobody may do anything without an ACL). The job's principal gets
exactly the ACLs docs/cluster.md lists; a reference job runs end to end over SASL_SSL with
exact output; wrong passwords, untrusted certificates and missing ACLs fail with one
line naming the cause.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.broker import BrokerSecurity, LocalBroker
from connectors.kafka.config import KafkaClientConfig
from connectors.kafka.sink import KafkaSink
from runtime.api.errors import BrokerError, ConnectorError
from runtime.composition import broker_settings
from runtime.generator import Generator, GeneratorConfig
from runtime.settings import load_settings
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.workers import Producer, WorkerPool, chaos_line, group_lag
from tests.reference.counts import window_counts

pytestmark = pytest.mark.integration

PARTITIONS = 2
EVENTS = 6_000
PASSWORDS = {"admin": "admin-secret-1", "job": "job-secret-2", "reader": "reader-secret-3"}
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SecureCluster:
    """The secured broker: its operator door (PLAINTEXT) and the SASL_SSL listener."""

    plain: str
    sasl: str
    ca: Path
    folder: Path

    def properties(self, user: str, password: str | None = None, ca: Path | None = None) -> Path:
        """A client .properties file for ``user`` (as a user of Kafka's own tools writes it)."""
        path = self.folder / f"{user}-{password or 'ok'}.properties"
        path.write_text(
            "security.protocol=SASL_SSL\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            f'required username="{user}" password="{password or PASSWORDS[user]}";\n'
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={ca or self.ca}\n"
        )
        return path

    def client(self, user: str) -> KafkaClientConfig:
        """A client configuration for ``user`` over SASL_SSL."""
        return KafkaClientConfig(
            self.sasl,
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": PASSWORDS[user],
                "ssl.ca.location": str(self.ca),
            },
        )


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    home = tmp_path_factory.mktemp("secure-broker")
    settings = dataclasses.replace(
        broker_settings(load_settings(), home / "broker"),
        security=BrokerSecurity(users=PASSWORDS, super_users=("admin",)),
    )
    broker = LocalBroker(settings)
    try:
        plain = broker.start()
    except BrokerError as exc:
        pytest.fail(f"could not start the secured local Kafka broker: {exc}")
    try:
        yield SecureCluster(plain, broker.secure_bootstrap, broker.ca_file, home)
    finally:
        broker.stop()


def grant_job(admin: KafkaAdmin, principal: str, group: str, inputs: list[str],
              outputs: list[str]) -> None:
    """The ACLs a job needs (docs/cluster.md: ACLs)."""
    for topic in inputs:
        admin.grant(principal, "topic", topic, ["READ", "DESCRIBE"])
    for topic in outputs:
        admin.grant(principal, "topic", topic, ["WRITE", "DESCRIBE", "CREATE"])
    admin.grant(principal, "topic", f"{group}.", ["ALL"], prefixed=True)
    admin.grant(principal, "group", group, ["READ"])
    admin.grant(principal, "transactional_id", f"{group}-", ["WRITE", "DESCRIBE"], prefixed=True)


def shoal(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def test_reference_job_exactly_once_over_sasl_ssl(secure: SecureCluster, tmp_path: Path) -> None:
    admin = KafkaAdmin(secure.plain)
    group = unique("secure-counts")
    playback, out = unique("sec-in"), unique("sec-out")
    admin.ensure_topics([TopicSpec(playback, PARTITIONS), TopicSpec(out, 2)])
    grant_job(admin, "User:job", group, [playback], [out])
    config = GeneratorConfig(seed=11, users=300, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    # The input arrives over SASL_SSL too, from the operator's account.
    producer = Producer(secure.client("admin"), playback, records, 1e9)  # type: ignore[arg-type]
    producer.run()
    assert producer.error is None, producer.error
    pool = WorkerPool(
        "jobs.user_counts:job", secure.sasl, group,
        [f"playback={playback}", f"user-counts={out}", f"dead-letters={group}.dead-letters"],
        tmp_path,
        extra=["--kafka-config", str(secure.properties("job")), "--checkpoint-ms", "500"],
    )
    pool.start(0)
    try:
        last_ts = max(r.value["event_time_ms"] for r in records)
        close_all_windows(secure.plain, playback, last_ts + 3_600_000, PARTITIONS)
        deadline = time.monotonic() + 180
        while group_lag(secure.plain, group, playback, PARTITIONS) > 0:
            assert time.monotonic() < deadline, "the job did not catch up\n" + pool.log_tail()
            assert not pool.crashed(), pool.log_tail()
            time.sleep(1)
        time.sleep(2)
        assert pool.stop_all() == [0], pool.log_tail()
    finally:
        for slot in pool.alive():
            pool.kill(slot)
    outputs = decoded(read_all(secure.plain, out), "")
    reference = window_counts([r.value for r in records])
    line, lost, duplicated = chaos_line(0, len(records), outputs, reference)
    print(line.replace("chaos:", "sasl_ssl:"))
    assert lost == 0 and duplicated == 0, line
    log = pool.log_tail(200)
    assert PASSWORDS["job"] not in log


def test_wrong_password_fails_fast_with_one_line(secure: SecureCluster) -> None:
    proc = shoal("topics", "--bootstrap", secure.sasl,
                 "--kafka-config", str(secure.properties("job", password="not-it")))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "authentication failed" in lines[0]
    assert "not-it" not in proc.stderr


def test_untrusted_certificate_fails_with_one_line(secure: SecureCluster) -> None:
    other = secure.folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    proc = shoal("topics", "--bootstrap", secure.sasl,
                 "--kafka-config", str(secure.properties("job", ca=other)))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "TLS handshake failed" in lines[0], lines[0]


def test_unreachable_cluster_fails_with_one_line() -> None:
    proc = shoal("topics", "--bootstrap", "127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "cannot reach Kafka" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_rights_on_internal_topics(secure: SecureCluster) -> None:
    admin = KafkaAdmin(secure.plain)
    group = unique("secure-victim")
    playback = unique("sec-in")
    internal = f"{group}.by_cdn.repartition"
    admin.ensure_topics([TopicSpec(playback, 1), TopicSpec(internal, 1)])
    # The reader may read the job's input and join its group, nothing more.
    admin.grant("User:reader", "topic", playback, ["READ", "DESCRIBE"])
    admin.grant("User:reader", "group", group, ["READ"])
    sink = KafkaSink(secure.client("reader"))
    sink.write(internal, b"k", b"\x80\x04crafted", None)
    with pytest.raises(ConnectorError, match="(?i)authoriz"):
        sink.flush(20)
    # Run as the reader, the job cannot create or use its internal topics.
    proc = shoal("run", "jobs.playback_health:job", "--bootstrap", secure.sasl,
                 "--kafka-config", str(secure.properties("reader")), "--group", group,
                 "--bind", f"playback={playback}", "--seconds", "5", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "error:" in proc.stderr and "uthoriz" in proc.stderr, proc.stderr
    assert PASSWORDS["reader"] not in proc.stderr + proc.stdout


def test_topics_and_tail_over_sasl_ssl(secure: SecureCluster) -> None:
    admin = KafkaAdmin(secure.plain)
    topic = unique("sec-tail")
    admin.ensure_topics([TopicSpec(topic, 1)])
    admin.grant("User:job", "topic", topic, ["READ", "DESCRIBE"])
    admin.grant("User:job", "group", "shoal-tail-", ["READ"], prefixed=True)
    sink = KafkaSink(secure.plain)
    for i in range(3):
        sink.write(topic, None, f'{{"n": {i}}}'.encode(), None)
    sink.flush()
    props = str(secure.properties("job"))
    listed = shoal("topics", "--bootstrap", secure.sasl, "--kafka-config", props)
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout
    tail = shoal("tail", topic, "-n", "3", "--from-beginning", "--timeout", "30",
                 "--bootstrap", secure.sasl, "--kafka-config", props)
    assert tail.returncode == 0, tail.stderr
    assert [line.count('"n"') for line in tail.stdout.strip().splitlines()] == [1, 1, 1]
    missing = shoal("tail", "no-such-topic", "--bootstrap", secure.sasl, "--kafka-config", props)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
