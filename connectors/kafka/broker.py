"""The local broker: a real single-node Apache Kafka (KRaft) for development and tests.

Its jars come from Maven Central through ``deploy/kafka/pom.xml`` and are fetched
once into a cache folder. ``LocalBroker.start`` formats storage (first start only),
starts the broker on free loopback ports with its data in ``home``, and waits until
it answers metadata requests. The ports are kept in ``home`` so that a restart with
the same data comes back on the same address.

With :class:`BrokerSecurity` the broker also serves a SASL_SSL listener: TLS with a
throwaway CA and a certificate for 127.0.0.1/localhost made at first start
(``home/tls``: ``ca.pem`` is what clients trust), SCRAM-SHA-512 users created when the
storage is formatted, and KRaft's ``StandardAuthorizer`` with no access for anyone
without an ACL. The PLAINTEXT listener on loopback stays as the operator's door: its
principal (``User:ANONYMOUS``) is a super user, like the ``admin`` user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from connectors.kafka.client import CLIENT_LOGGER, AdminClient, KafkaException
from connectors.kafka.config import KafkaClientConfig
from runtime.api.errors import BrokerError, InvariantError
from runtime.api.files import open_private_log, private_dir, write_private
from runtime.api.redact import redact_text

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """A SASL_SSL listener with SCRAM users and ACLs (see the module docstring).

    Attributes:
        users: SCRAM user name -> password, created when the storage is formatted.
        super_users: users allowed everything (ACLs are not checked for them).
    """

    users: Mapping[str, str] = field(repr=False)
    super_users: tuple[str, ...] = ("admin",)


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the local broker keeps its jars and data, and how much heap it gets."""

    home: Path
    jar_cache: Path
    pom: Path
    heap_mb: int = 768
    start_timeout_s: float = 90.0
    security: BrokerSecurity | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def require_tool(name: str, why: str) -> str:
    """The path of an executable, or a BrokerError saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"{name!r} was not found on PATH: {why}")
    return path


def fetch_jars(settings: BrokerSettings, *, quiet: bool = True) -> Path:
    """Download the broker's jars once (Maven) and return the folder that holds them.

    Raises:
        BrokerError: Java or Maven is missing, or Maven could not fetch the jars.
    """
    libs = settings.jar_cache / "libs"
    marker = settings.jar_cache / ".complete"
    pom_text = settings.pom.read_text() if settings.pom.exists() else None
    if pom_text is None:
        raise BrokerError(f"the broker's Maven file {settings.pom} is missing")
    if marker.exists() and marker.read_text() == pom_text and any(libs.glob("kafka_*.jar")):
        return libs
    require_tool(
        "java", "the local Kafka broker needs Java 17+ (apt-get install openjdk-17-jre-headless)"
    )
    mvn = require_tool("mvn", "the broker's jars are fetched with Maven (apt-get install maven)")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(settings.pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
    ]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise BrokerError("Maven could not fetch the Kafka jars:\n" + "\n".join(tail))
    marker.write_text(pom_text)
    return libs


class LocalBroker:
    """A single-node Kafka broker in KRaft mode, run as a child process.

    Use as a context manager, or call ``start`` and ``stop``. ``stop`` leaves no
    process behind (SIGTERM, then SIGKILL after a grace period).
    """

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.home = settings.home
        self._proc: subprocess.Popen[bytes] | None = None

    # -- files ----------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.home / "broker.json"

    def _read_state(self) -> dict[str, int | str]:
        try:
            data: dict[str, int | str] = json.loads(self._state_file.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _ports(self) -> tuple[int, int, int]:
        state = self._read_state()
        port, controller = state.get("port"), state.get("controller_port")
        secure = state.get("secure_port", 0)
        if isinstance(port, int) and isinstance(controller, int) and isinstance(secure, int):
            if all(_port_free(p) for p in (port, controller, secure) if p):
                return port, controller, secure or _free_port()
            if self._formatted():
                raise BrokerError(
                    f"the broker's ports {port}/{controller} are taken; "
                    "is another broker running on this folder? (shoal broker status)"
                )
        return _free_port(), _free_port(), _free_port()

    def _formatted(self) -> bool:
        return (self.home / "data" / "meta.properties").exists()

    def _write_config(self, port: int, controller: int, secure: int) -> Path:
        cfg = private_dir(self.home / "config")
        data = private_dir(self.home / "data").resolve()
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "1000",
            "log.retention.check.interval.ms": "30000",
            # Outputs carry event-time timestamps (often days old in replays and tests):
            # a dev broker keeps everything rather than deleting by age.
            "log.retention.ms": "-1",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "5000",
            "transaction.remove.expired.transaction.cleanup.interval.ms": "60000",
        }
        if self.settings.security is not None:
            props.update(self._security_props(port, controller, secure))
        path = cfg / "server.properties"
        write_private(path, "".join(f"{k}={v}\n" for k, v in props.items()))
        log = private_dir(self.home / "logs").resolve()
        write_private(
            cfg / "log4j2.properties",
            "appender.f.type = RollingFile\n"
            "appender.f.name = F\n"
            f"appender.f.fileName = {log}/server.log\n"
            f"appender.f.filePattern = {log}/server.log.%i\n"
            "appender.f.layout.type = PatternLayout\n"
            "appender.f.layout.pattern = [%d] %p %m (%c)%n\n"
            "appender.f.policies.type = Policies\n"
            "appender.f.policies.size.type = SizeBasedTriggeringPolicy\n"
            "appender.f.policies.size.size = 20MB\n"
            "appender.f.strategy.type = DefaultRolloverStrategy\n"
            "appender.f.strategy.max = 3\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.f.ref = F\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.ak.name = org.apache.kafka\nlogger.ak.level = WARN\n",
        )
        return path

    def _java(self, libs: Path, main: str, *args: str, heap: bool = False) -> list[str]:
        java = require_tool(
            "java",
            "the local Kafka broker needs Java 17+ (apt-get install openjdk-17-jre-headless)",
        )
        cmd = [java]
        if heap:
            mb = self.settings.heap_mb
            cmd += [f"-Xms{mb // 2}m", f"-Xmx{mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        cmd += [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={(self.home / 'config' / 'log4j2.properties').resolve()}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]
        return cmd

    # -- security -------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        """The PEM file of the throwaway CA that signed the SASL_SSL listener's certificate."""
        return (self.home / "tls" / "ca.pem").resolve()

    def _security_props(self, port: int, controller: int, secure: int) -> dict[str, str]:
        security = self.settings.security
        if security is None:
            raise InvariantError("the SASL_SSL listener's settings are missing")
        keystore = self._make_certificates()
        supers = ";".join(["User:ANONYMOUS", *(f"User:{u}" for u in security.super_users)])
        return {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure},"
                f"CONTROLLER://127.0.0.1:{controller}"
            ),
            "advertised.listeners": (f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure}"),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": SCRAM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": supers,
            "allow.everyone.if.no.acl.found": "false",
        }

    def _make_certificates(self) -> Path:
        """A CA and a broker certificate for 127.0.0.1/localhost (made once per home)."""
        tls = self.home / "tls"
        keystore = tls / "broker.pem"
        if keystore.exists() and self.ca_file.exists():
            return keystore.resolve()
        try:
            import trustme
            from cryptography.hazmat.primitives import serialization
        except ImportError as exc:
            raise BrokerError(f"a secured broker needs the trustme package: {exc}") from exc
        tls.mkdir(parents=True, exist_ok=True)
        os.chmod(tls, 0o700)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        # Kafka's PEM key stores take PKCS#8 keys only.
        key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        keystore.write_bytes(pkcs8 + chain)
        os.chmod(keystore, 0o600)
        self.ca_file.write_bytes(ca.cert_pem.bytes())
        return keystore.resolve()

    def _scram_args(self) -> list[str]:
        security = self.settings.security
        if security is None:
            return []
        args = []
        for user, password in security.users.items():
            args += ["--add-scram", f"{SCRAM}=[name={user},password={password}]"]
        return args

    @property
    def secure_bootstrap(self) -> str:
        """``host:port`` of the SASL_SSL listener (a broker started with security)."""
        port = self._read_state().get("secure_port")
        if self.settings.security is None or not isinstance(port, int):
            raise BrokerError(f"the broker in {self.home} has no SASL_SSL listener")
        return f"127.0.0.1:{port}"

    # -- lifecycle ------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """``host:port`` of the broker's client listener (from its state file)."""
        port = self._read_state().get("port")
        if not isinstance(port, int):
            raise BrokerError(f"no broker has been started in {self.home}")
        return f"127.0.0.1:{port}"

    def pid(self) -> int | None:
        """The broker's process id, if it is running."""
        pid = self._read_state().get("pid")
        if not isinstance(pid, int):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if KAFKA_MAIN.encode() in cmdline else None

    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self.pid() is not None

    def start(self, *, log: bool = False) -> str:
        """Start the broker (fetching jars and formatting storage if needed).

        Returns:
            The bootstrap address.

        Raises:
            BrokerError: Java/Maven missing, the broker failed or did not answer in time.
        """
        if self.running():
            return self.bootstrap
        libs = fetch_jars(self.settings)
        private_dir(self.home)
        port, controller, secure = self._ports()
        config = self._write_config(port, controller, secure)
        if not self._formatted():
            cluster_id = uuid.uuid4().hex[:22]
            fmt = subprocess.run(
                self._java(
                    libs,
                    STORAGE_TOOL,
                    "format",
                    "--standalone",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                    *self._scram_args(),
                ),
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise BrokerError(
                    f"formatting broker storage failed: {redact_text(fmt.stderr.strip()[-500:])}"
                )
        out = open_private_log(self.home / "logs" / "stdout.log")  # handed to the child
        try:
            self._proc = subprocess.Popen(
                self._java(libs, KAFKA_MAIN, str(config), heap=True),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(out)
        write_private(
            self._state_file,
            json.dumps(
                {
                    "pid": self._proc.pid,
                    "port": port,
                    "controller_port": controller,
                    "secure_port": secure if self.settings.security is not None else 0,
                }
            ),
        )
        bootstrap = f"127.0.0.1:{port}"
        self._wait_ready(bootstrap)
        return bootstrap

    def _wait_ready(self, bootstrap: str) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        admin = AdminClient(
            KafkaClientConfig(bootstrap).client({"socket.timeout.ms": 2000}, logger=CLIENT_LOGGER)
        )
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._proc.returncode} while starting; "
                    f"see {self.home / 'logs'}"
                )
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except KafkaException as exc:
                last = str(exc)
            time.sleep(0.3)
        self.stop()
        raise BrokerError(
            f"the broker did not answer within {self.settings.start_timeout_s}s: {last}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker; returns whether one was running. Keeps its data."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    break
            elif self.pid() is None:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        self._proc = None
        return True

    def kill(self) -> None:
        """SIGKILL the broker (tests of crash recovery)."""
        pid = self.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(timeout=10)
            self._proc = None

    def wipe(self) -> None:
        """Stop the broker and delete its data."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
