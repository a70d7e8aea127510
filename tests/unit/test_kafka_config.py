"""The one Kafka client-config builder: sources merge in order, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.kafka.config import (
    KafkaClientConfig,
    env_properties,
    load_client_config,
    parse_overrides,
    parse_properties,
)
from runtime.api.errors import ConfigError

PROPS = """\
# a client.properties as Kafka's own tools take it
security.protocol=SASL_SSL
sasl.mechanism = SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
    username="alice" password="file-secret";
ssl.truststore.type=PEM
ssl.truststore.location=ca.pem
! another comment
linger.ms: 5
"""


def test_properties_format() -> None:
    props = parse_properties(PROPS)
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["linger.ms"] == "5"
    assert props["sasl.jaas.config"].endswith('username="alice" password="file-secret";')


def test_properties_line_without_value_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_properties("a=b\n=novalue\n")


def test_merge_order_defaults_file_overrides_env(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("linger.ms=5\nclient.id=from-file\nsocket.timeout.ms=1000\n")
    cfg = load_client_config(
        "b1:9093",
        config_file=path,
        overrides=["client.id=from-x", "socket.timeout.ms=2000"],
        env={"SHOAL_KAFKA_SOCKET_TIMEOUT_MS": "3000", "OTHER": "x"},
    )
    conf = cfg.client({"linger.ms": 20, "batch.size": 10})
    assert conf["bootstrap.servers"] == "b1:9093"
    assert conf["batch.size"] == 10  # default kept
    assert conf["linger.ms"] == "5"  # file over default
    assert conf["client.id"] == "from-x"  # -X over file
    assert conf["socket.timeout.ms"] == "3000"  # environment over -X


def test_owned_settings_win_and_cannot_be_set_by_users() -> None:
    cfg = KafkaClientConfig("b:1", {"linger.ms": "1"})
    conf = cfg.client({}, group_id="g", enable_auto_commit=False)
    assert conf["group.id"] == "g" and conf["enable.auto.commit"] is False
    for key in ("group.id", "transactional.id", "isolation.level", "enable.idempotence"):
        with pytest.raises(ConfigError, match=key):
            KafkaClientConfig("b:1", {key: "x"})


def test_java_settings_become_librdkafka_settings() -> None:
    conf = KafkaClientConfig("b:1", parse_properties(PROPS)).client()
    assert conf["sasl.username"] == "alice"
    assert conf["sasl.password"] == "file-secret"
    assert conf["ssl.ca.location"] == "ca.pem"
    assert "sasl.jaas.config" not in conf and "ssl.truststore.location" not in conf


def test_jks_truststore_is_refused_with_advice() -> None:
    cfg = KafkaClientConfig("b:1", {"ssl.truststore.location": "trust.jks"})
    with pytest.raises(ConfigError, match="PEM"):
        cfg.client()


def test_librdkafka_settings_become_java_settings() -> None:
    cfg = KafkaClientConfig(
        "b:1",
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "bob",
            "sasl.password": 'p"w',
            "ssl.ca.location": "ca.pem",
        },
    )
    java = cfg.java_properties()
    assert java["bootstrap.servers"] == "b:1"
    assert "ScramLoginModule required" in java["sasl.jaas.config"]
    assert 'username="bob"' in java["sasl.jaas.config"]
    assert 'password="p\\"w"' in java["sasl.jaas.config"]
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == "ca.pem"
    assert "sasl.password" not in java and "ssl.ca.location" not in java


def test_repr_hides_secrets() -> None:
    cfg = KafkaClientConfig(
        "b:1", {"sasl.password": "hunter2", "sasl.jaas.config": 'x password="hunter3";'}
    )
    assert "hunter2" not in repr(cfg) and "hunter3" not in repr(cfg)
    assert "b:1" in repr(cfg)


def test_env_names() -> None:
    assert env_properties({"SHOAL_KAFKA_SASL_PASSWORD": "p", "SHOAL_KAFKA_": "x"}) == {
        "sasl.password": "p"
    }


def test_overrides_need_equals() -> None:
    assert parse_overrides(["a=b=c"]) == {"a": "b=c"}
    with pytest.raises(ConfigError, match="-X key=value"):
        parse_overrides(["novalue"])


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read --kafka-config"):
        load_client_config("b:1", config_file=tmp_path / "nope.properties")


def test_bootstrap_from_file(tmp_path: Path) -> None:
    path = tmp_path / "c.properties"
    path.write_text("bootstrap.servers=h1:9092,h2:9092\n")
    assert load_client_config("", config_file=path).bootstrap == "h1:9092,h2:9092"
