"""Schema registry plumbing without a server: settings, subjects, wire formats, framing.

The registry is the client library's in-process fake (``mock://``), a fake client that
answers as a refusing registry would, or (for basic auth) a small HTTP server in this
process. ``tests/integration/test_schema_registry.py`` runs the same paths against a
real registry server.
"""

from __future__ import annotations

import base64
import doctest
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme
from confluent_kafka.schema_registry.error import SchemaRegistryError

import connectors.avro.confluent as confluent_module
import connectors.avro.framing as framing_module
import connectors.avro.registry as registry_module
import connectors.avro.subjects as subjects_module
import connectors.wire as wire_module
from connectors.avro import (
    AvroSerde,
    MagicByteSerde,
    RegistryConfig,
    RegistrySerde,
    SchemaRepository,
    check_strategy,
    load_registry_config,
    subject_name,
)
from connectors.codecs import CodecFactory
from connectors.kafka.client import registry_client
from connectors.kafka.config import librdkafka_properties, load_client_config
from connectors.wire import EndpointCodecs, WireConfig, parse_choices
from runtime import Avro, Job
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ConnectorError, RecordOrigin
from runtime.engine.worker import Worker, WorkerOptions
from runtime.settings import load_settings
from runtime.state.memory import MemoryBackend

PING: dict[str, Any] = {
    "type": "record",
    "name": "Ping",
    "namespace": "test.events",
    "fields": [{"name": "n", "type": "int"}, {"name": "who", "type": "string"}],
}
PING_BROKEN = {  # the same record with a field of another type: not backward compatible
    **PING,
    "fields": [{"name": "n", "type": "string"}],
}


def ping(n: int) -> dict[str, Any]:
    return {"n": n, "who": f"u{n % 3}"}


def fake_registry(name: str) -> Any:
    return registry_client({"url": f"mock://{name}"})


def codecs(repository: SchemaRepository | None = None) -> CodecFactory:
    return CodecFactory(repository or SchemaRepository([PING]))


@pytest.mark.parametrize(
    "module",
    [registry_module, subjects_module, framing_module, confluent_module, wire_module],
    ids=lambda m: m.__name__,
)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- settings ------------------------------------------------------------------------


def test_registry_settings_merge_in_order(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "security.protocol=SSL\n"
        "schema.registry.url=https://from-file:8081\n"
        "schema.registry.timeout=3\n"
        "schema.registry.max.retries=1\n"
        "schema.registry.ssl.ca.location=file-ca.pem\n"
    )
    x = ["schema.registry.timeout=4", "schema.registry.ssl.ca.location=x-ca.pem"]
    env = {"SHOAL_SCHEMA_REGISTRY_SSL_CA_LOCATION": "env-ca.pem", "SHOAL_KAFKA_X": "y"}
    config = load_registry_config(None, config_file=path, overrides=x, env=env)
    assert config is not None and config.url == "https://from-file:8081"
    conf = config.client_conf()
    assert conf["timeout"] == 4.0  # -X over the file, a number for the client
    assert conf["max.retries"] == 1  # from the file
    assert conf["ssl.ca.location"] == "env-ca.pem"  # the environment over -X
    chosen = load_registry_config(
        "https://option:8081", env_url="https://env:8081", config_file=path
    )
    assert chosen is not None and chosen.url == "https://option:8081"
    from_env = load_registry_config(None, env_url="https://env:8081", config_file=path)
    assert from_env is not None and from_env.url == "https://env:8081"
    assert load_registry_config(None, overrides=["linger.ms=5"]) is None


def test_registry_settings_are_not_kafka_settings(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    # A Java client's file: Confluent's serializers take basic.auth.* without the prefix.
    path.write_text(
        "schema.registry.url=http://r:8081\nlinger.ms=5\n"
        "basic.auth.credentials.source=USER_INFO\nbasic.auth.user.info=java:style\n"
    )
    kafka = load_client_config("b:9092", config_file=path, overrides=["schema.registry.timeout=3"])
    assert dict(kafka.properties) == {"linger.ms": "5"}
    assert "schema.registry.url" not in librdkafka_properties({"schema.registry.url": "x"})
    registry = load_registry_config(None, config_file=path)
    assert registry is not None
    assert registry.client_conf()["basic.auth.user.info"] == "java:style"
    prefixed = load_registry_config(
        None, config_file=path, overrides=["schema.registry.basic.auth.user.info=u:p"]
    )
    assert prefixed is not None and prefixed.client_conf()["basic.auth.user.info"] == "u:p"


def test_the_environment_names_the_registry() -> None:
    settings = load_settings(
        {
            "SHOAL_SCHEMA_REGISTRY_URL": "http://r:8081",
            "SHOAL_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "u:secret",
        }
    )
    assert settings.schema_registry_url == "http://r:8081"
    assert dict(settings.registry_env) == {"SHOAL_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "u:secret"}
    assert "secret" not in repr(settings)
    config = load_registry_config(
        None, env_url=settings.schema_registry_url, env=settings.registry_env
    )
    assert config is not None and config.client_conf()["basic.auth.user.info"] == "u:secret"


def test_registry_secrets_never_show() -> None:
    config = RegistryConfig(
        "https://user:hunter2@registry:8081",
        {"ssl.key.password": "hunter2", "timeout": "5"},
    )
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.shown())
    with pytest.raises(ConfigError) as info:
        RegistryConfig("ftp://user:hunter2@registry", {})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "props, message",
    [
        ({"bogus.setting": "1"}, "unknown schema registry setting schema.registry.bogus.setting"),
        ({"timeout": "soon"}, "schema.registry.timeout='soon' is not a float"),
        ({"auto.register.schemas": "maybe"}, "expected true or false"),
        ({"basic.auth.credentials.source": "SASL_INHERIT"}, "expected USER_INFO or URL"),
        ({"ssl.truststore.location": "ts.jks"}, "must be a PEM file"),
    ],
)
def test_bad_registry_settings_are_one_line(props: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RegistryConfig("http://r:8081", props).client_conf()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_java_spellings_are_translated(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = RegistryConfig(
        "https://r:8081",
        {
            "basic.auth.credentials.source": "USER_INFO",
            "basic.auth.user.info": "u:p",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(ca),
            "auto.register.schemas": "false",
        },
    )
    conf = config.client_conf()
    assert conf == {
        "url": "https://r:8081",
        "timeout": 10.0,
        "basic.auth.user.info": "u:p",
        "ssl.ca.location": str(ca),
    }
    assert config.auto_register is False
    config.connect()  # the client takes them


# -- subjects and wire choices -------------------------------------------------------


def test_subject_strategies() -> None:
    assert subject_name("topic", "t", "a.B") == "t-value"
    assert subject_name("record", "t", "a.B") == "a.B"
    assert subject_name("topic-record", "t", "a.B") == "t-a.B"
    with pytest.raises(ConfigError, match="valid: topic, record, topic-record"):
        subject_name("RecordNameStrategy", "t", "a.B")


def test_the_default_format_follows_the_registry() -> None:
    assert WireConfig().format_of("out") == "single-object"
    registry = RegistryConfig("mock://defaults")
    assert WireConfig(registry).format_of("out") == "confluent"
    wire = WireConfig.from_options(
        registry, ["single-object", "out=confluent"], ["record", "out=topic-record"]
    )
    assert (wire.format_of("out"), wire.format_of("other")) == ("confluent", "single-object")
    assert (wire.strategy_of("out"), wire.strategy_of("other")) == ("topic-record", "record")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: WireConfig.from_options(None, ["confluent"]), "needs a schema registry"),
        (lambda: WireConfig.from_options(None, ["out=json"]), "valid formats: single-object"),
        (lambda: WireConfig.from_options(None, (), ["=topic"]), "expected VALUE or NAME=VALUE"),
        (
            lambda: EndpointCodecs(
                codecs(), WireConfig.from_options(None, ["outt=single-object"]), {}, {"out": "t"}
            ),
            "--wire-format outt=...: the job has no source or sink 'outt' (known: out)",
        ),
    ],
)
def test_bad_wire_choices_are_one_line(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_parse_choices_keeps_the_last_word() -> None:
    choices = parse_choices(["a=topic", "record", "a=record"], check_strategy, "--strategy")
    assert choices == ("record", {"a": "record"})


# -- framing -------------------------------------------------------------------------


def test_both_framings_decode_in_one_batch_in_order() -> None:
    repository = SchemaRepository([PING])
    registry = fake_registry("mixed")
    single = AvroSerde("Ping", repository)
    framed = RegistrySerde("Ping", repository, registry, "pings-value")
    serde = MagicByteSerde(framed, single, framed)
    datas = [
        framed.encode(ping(0)),
        single.encode(ping(1)),
        b"\x07junk",
        framed.encode(ping(3)),
        b"\x00\x00\x00\x03\xe7" + framed.encode(ping(4))[5:],  # id 999: unknown
        None,
        single.encode(ping(6)),
    ]
    origins = [RecordOrigin("pings", 0, i) for i in range(len(datas))]
    values, failures = serde.decode_batch(datas, origins)  # type: ignore[arg-type]
    assert values == [ping(0), ping(1), ping(3), ping(6)]
    reasons = {i: str(e) for i, e in failures}
    assert sorted(reasons) == [2, 4, 5]
    assert "first byte 07 is neither" in reasons[2] and "pings[0]@2" in reasons[2]
    assert "schema id 999 is unknown to the registry" in reasons[4]
    assert "pings[0]@4" in reasons[4]
    assert "empty or missing value" in reasons[5]
    assert serde.decode_batch([]) == ([], [])


def test_registry_framing_without_a_registry_says_what_is_missing() -> None:
    repository = SchemaRepository([PING])
    framed = RegistrySerde("Ping", repository, fake_registry("none"), "pings-value")
    single = AvroSerde("Ping", repository)
    values, failures = MagicByteSerde(single, single).decode_batch([framed.encode(ping(1))])
    assert values == [] and "no schema registry is configured (--schema-registry URL)" in str(
        failures[0][1]
    )
    with pytest.raises(Exception, match="a first byte 00 is schema registry framing"):
        single.decode(framed.encode(ping(1)))


# -- endpoints -----------------------------------------------------------------------


def endpoints(
    registry: Any, *formats: str, strategy: str = "topic", name: str = "ep"
) -> EndpointCodecs:
    wire = WireConfig.from_options(RegistryConfig(f"mock://{name}"), formats, [strategy])
    return EndpointCodecs(
        codecs(), wire, {"in": "pings"}, {"out": "pongs", "json": "j"}, client=registry
    )


@pytest.mark.parametrize(
    "strategy, subject",
    [
        ("topic", "pongs-value"),
        ("record", "test.events.Ping"),
        ("topic-record", "pongs-test.events.Ping"),
    ],
)
def test_sinks_register_under_their_strategy_at_prepare(strategy: str, subject: str) -> None:
    registry = fake_registry(f"strategy-{strategy}")
    codecs_ = endpoints(registry, strategy=strategy)
    done = codecs_.prepare([("out", "Ping"), ("json", "")])
    assert registry.get_subjects() == [subject]
    assert done == [f"out: subject {subject!r}, id 1"]
    data = codecs_.sink("out", "Ping").encode(ping(1))
    assert data[:5] == b"\x00\x00\x00\x00\x01"
    assert codecs_.sink("json", "").encode({"a": 1}) == b'{"a":1}'
    assert "mock://" in codecs_.describe()
    assert "out=confluent, json=json" in codecs_.describe()


def test_a_single_object_sink_beside_a_registry() -> None:
    registry = fake_registry("single-sink")
    codecs_ = endpoints(registry, "out=single-object")
    assert codecs_.prepare([("out", "Ping")]) == []
    assert codecs_.sink("out", "Ping").encode(ping(1))[:2] == b"\xc3\x01"
    assert registry.get_subjects() == []


def test_sources_read_what_either_framing_wrote() -> None:
    registry = fake_registry("sources")
    producer = endpoints(registry)
    confluent = producer.sink("out", "Ping").encode(ping(1))
    single = codecs()("Ping").encode(ping(2))
    reader = endpoints(registry).source("in", "Ping")
    assert reader.decode_batch([confluent, single]) == ([ping(1), ping(2)], [])


def test_without_a_registry_the_plain_codecs_are_used() -> None:
    base = codecs()
    plain = EndpointCodecs(base, WireConfig(), {"in": "t"}, {"out": "u"})
    assert plain.source("in", "Ping") is base("Ping") and plain.sink("out", "") is base("")
    assert plain.prepare([("out", "Ping")]) == [] and plain.describe() == ""


class RefusingRegistry:
    """Answers registrations as a registry that refuses them does."""

    def __init__(self, status: int, message: str) -> None:
        self.error = SchemaRegistryError(status, 0, message)

    def register_schema(self, subject_name: str, schema: Any) -> int:
        raise self.error

    def lookup_schema(self, subject_name: str, schema: Any) -> Any:
        raise self.error

    def get_schema(self, schema_id: int) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "status, message",
    [
        (409, "incompatible with the versions registered there"),
        (422, "as invalid"),
        (401, "denies access to test.events.Ping"),
    ],
)
def test_a_refused_schema_is_one_line_at_prepare(status: int, message: str) -> None:
    codecs_ = endpoints(RefusingRegistry(status, "Schema being registered is\nincompatible"))
    with pytest.raises(ConfigError) as info:
        codecs_.prepare([("out", "Ping")])
    text = str(info.value)
    assert message in text and "subject 'pongs-value'" in text and "\n" not in text


def test_an_unreachable_registry_is_one_line_at_prepare() -> None:
    wire = WireConfig(RegistryConfig("http://127.0.0.1:9", {"max.retries": "0", "timeout": "2"}))
    codecs_ = EndpointCodecs(codecs(), wire, {}, {"out": "pongs"})
    with pytest.raises(ConnectorError, match="cannot register test.events.Ping") as info:
        codecs_.prepare([("out", "Ping")])
    assert "\n" not in str(info.value)


# -- basic authentication, seen from a server ----------------------------------------


class _Registry(BaseHTTPRequestHandler):
    """Registers anything for the right credentials; 401 otherwise."""

    expected = "Basic " + base64.b64encode(b"shoal:right-password").decode()
    seen: list[str | None] = []

    def do_POST(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Authorization") != self.expected:
            body, status = {"error_code": 40101, "message": "Unauthorized"}, 401
        else:
            body, status = {"id": 7}, 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def auth_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_basic_auth_reaches_the_registry_and_a_wrong_password_never_shows(
    auth_registry: str,
) -> None:
    def prepare(user_info: str) -> list[str]:
        config = RegistryConfig(auth_registry, {"basic.auth.user.info": user_info})
        return EndpointCodecs(codecs(), WireConfig(config), {}, {"out": "pongs"}).prepare(
            [("out", "Ping")]
        )

    assert prepare("shoal:right-password") == ["out: subject 'pongs-value', id 7"]
    with pytest.raises(ConfigError) as info:
        prepare("shoal:wrong-password")
    assert "denies access" in str(info.value) and "wrong-password" not in str(info.value)
    assert _Registry.seen[0] == _Registry.expected


# -- the engine through endpoint codecs ----------------------------------------------


class _Msg:
    def __init__(self, topic: str, offset: int, data: bytes) -> None:
        self._topic, self._offset, self._data = topic, offset, data

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._data

    def timestamp(self) -> tuple[int, int]:
        return (0, 1_700_000_000_000)


class _Source:
    def __init__(self, msgs: list[_Msg]) -> None:
        self.msgs = msgs

    def poll(self, max_records: int, timeout_s: float) -> list[_Msg]:
        out, self.msgs = self.msgs[:max_records], self.msgs[max_records:]
        return out

    def close(self) -> None:
        pass


class _Transport:
    def __init__(self) -> None:
        self.written: list[tuple[str, bytes | None]] = []

    def write(self, topic: str, key: Any, value: Any, *args: Any, **kw: Any) -> None:
        self.written.append((topic, value))

    def write_many(self, topic: str, records: list[tuple[Any, Any, Any]]) -> None:
        self.written.extend((topic, v) for _, v, _ in records)

    def commit(self, offsets: Any) -> None:
        pass

    def take_refused(self) -> list[Any]:
        return []


def test_a_worker_reads_both_framings_writes_the_registry_and_dead_letters_unknown_ids() -> None:
    job = Job("pings")
    job.source("in", schema="Ping").filter(lambda p: p["n"] % 2 == 0, name="even").sink(
        "out", Avro("Ping")
    )
    registry = fake_registry("worker")
    repository = SchemaRepository.from_directories([])  # the built-in DeadLetter schema
    base = CodecFactory(SchemaRepository([PING, repository.current("DeadLetter").schema]))
    bindings = Bindings.for_job(job, ["in=pings", "out=pongs", "dead-letters=dead"])
    wire = WireConfig(RegistryConfig("mock://worker"), strategy="record")
    codecs_ = EndpointCodecs(base, wire, bindings.sources, bindings.sinks, client=registry)
    codecs_.prepare([("out", "Ping")])
    producer = EndpointCodecs(base, wire, {}, {"p": "pings"}, client=registry)
    framed = producer.sink("p", "Ping").encode
    datas = [framed(ping(0)), base("Ping").encode(ping(2)), framed(ping(3))]
    datas.append(b"\x00\x00\x01\x00\x00" + framed(ping(4))[5:])  # id 65536: unknown
    transport = _Transport()
    worker = Worker(job, bindings, transport, codecs_, MemoryBackend(), options=WorkerOptions())
    worker.on_assign([("pings", 0)])
    worker.step(_Source([_Msg("pings", i, d) for i, d in enumerate(datas)]))
    worker.checkpoint()
    out = [v for t, v in transport.written if t == "pongs"]
    assert all(v is not None and v[:1] == b"\x00" for v in out)
    assert [codecs_.sink("out", "Ping").decode_batch([v])[0][0] for v in out] == [
        ping(0),
        ping(2),
    ]
    assert registry.get_subjects() == ["test.events.Ping"]
    dead = [v for t, v in transport.written if t == "dead"]
    letters = base("DeadLetter").decode_batch(dead)[0]
    assert [(d["error_class"], d["source_offset"]) for d in letters] == [("DecodeError", 3)]
    assert "schema id 65536 is unknown to the registry" in letters[0]["error_message"]
