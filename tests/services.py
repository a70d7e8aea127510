"""Real PostgreSQL, Redis and schema registry servers for tests.

PostgreSQL and Redis come from Debian's packages; the schema registry is Apicurio
Registry (in-memory storage, Confluent-compatible API), assembled once from Maven
Central by ``deploy/registry/pom.xml`` into ``~/.cache/shoal/registry`` (``SHOAL_CACHE``)
and run with Java.

Session-scoped fixtures ``postgres`` and ``redis_server`` start one server each on a
free loopback port with its data in a fresh temporary folder, and stop it when the
session ends. Fault tests call ``stop()``, ``start()`` and ``restart()`` on them; a
server keeps its port and data across a restart.

Nothing is skipped: a missing binary fails the test and names the Debian package
(``postgresql``, ``redis-server``, ``maven``, ``openjdk-17-jre-headless``; ``.ci/run``
installs them).

The ``schema_registry`` fixture serves plain HTTP and, for the TLS settings, HTTPS with a
throwaway CA (``ca_file``) on a second port.

PostgreSQL refuses to run as root, so under root the cluster belongs to the system
user ``postgres`` (created by Debian's package; ``shoal-postgres`` is created when it
is missing) and its commands run through ``runuser``. Its data folder is made
outside pytest's temporary folder, which only root may enter.

Test modules pull the fixtures in as a plugin, so the whole session shares one server
of each (a plain import would make one per importing module)::

    pytest_plugins = ["tests.services"]

and import the classes for annotations only under ``TYPE_CHECKING`` (a module that
is imported before pytest loads it as a plugin cannot be assertion-rewritten, which
pytest warns about, and warnings are errors here).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "PostgresServer",
    "RedisServer",
    "RegistryServer",
    "free_port",
    "postgres",
    "redis_server",
    "schema_registry",
]

_PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # Tests need no durability against an OS crash; a stopped server keeps its data.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(binary: str, package: str) -> str:
    return (
        f"{binary} is missing: install Debian's {package} package "
        f"(apt-get install {package}; .ci/run does it) - tests never skip"
    )


def _pg_bin_dir() -> Path:
    """The folder of ``initdb``/``pg_ctl``: Debian keeps them off PATH, per version."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        folder = Path(candidate)
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    pytest.fail(_missing("PostgreSQL (initdb, pg_ctl)", "postgresql"))


def _wait_port(port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class PostgresServer:
    """A PostgreSQL cluster of its own: ``start``, ``stop``, ``restart``, ``url``.

    Args:
        bin_dir: folder of ``initdb`` and ``pg_ctl``.
        port: loopback port (kept across restarts).
    """

    user = "shoal"
    database = "shoal"

    def __init__(self, bin_dir: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.port = port
        self.os_user = _pg_os_user() if os.geteuid() == 0 else None
        self.home = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
        self.data = self.home / "data"
        self.log = self.home / "server.log"
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.home, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        settings = {**_PG_SETTINGS, "port": str(port), "unix_socket_directories": f"'{self.home}'"}
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.running = False

    @property
    def url(self) -> str:
        """``postgres://`` URL of the test database (trust authentication)."""
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def sink_url(self, **params: str) -> str:
        """``url`` with query parameters for a sink binding."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.url}?{query}" if query else self.url

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin_dir / tool), *args]
        if self.os_user is not None:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.home, check=False)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}"
            )

    def start(self) -> None:
        """Start the server and wait until it answers commands (its data loaded)."""
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")
        _wait_port(self.port, 30, "PostgreSQL")
        self.running = True

    def stop(self) -> None:
        """Stop the server now: open sessions are cut (``-m fast``)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        self.running = False

    def restart(self) -> None:
        """Stop, then start again (same port, same data)."""
        self.stop()
        self.start()

    def create_database(self) -> None:
        """Create :attr:`database` (the cluster starts with ``postgres`` only)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def remove(self) -> None:
        """Stop if running and delete the data."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def _pg_os_user() -> str:
    """The system user that owns the cluster when tests run as root."""
    for name in ("postgres", "shoal-postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    if shutil.which("useradd") is None:
        pytest.fail("PostgreSQL refuses to run as root and there is no postgres user to run it")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         "shoal-postgres"],
        check=True, capture_output=True,
    )  # fmt: skip
    return "shoal-postgres"


class RedisServer:
    """A Redis server of its own, durable across its restarts (AOF, fsync always).

    Args:
        binary: the ``redis-server`` executable.
        port: loopback port (kept across restarts).
        home: its data and log folder.
    """

    def __init__(self, binary: str, port: int, home: Path) -> None:
        self.binary = binary
        self.port = port
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def sink_url(self, **params: str) -> str:
        """``url`` with query parameters for a sink binding."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.url}?{query}" if query else self.url

    def start(self) -> None:
        """Start the server and wait until it answers commands (its data loaded)."""
        cmd = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.home), "--daemonize", "no", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always",
            "--logfile", str(self.home / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_port(self.port, 30, "Redis")
            self._wait_loaded(30)
        except RuntimeError:
            self.stop()
            raise

    def _wait_loaded(self, timeout_s: float) -> None:
        """Wait until PING answers PONG: a listening server may still be loading its AOF."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis on 127.0.0.1:{self.port} did not finish loading")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes its append-only file first)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop, then start again (same port, same data)."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL server with an empty database ``shoal``."""
    server = PostgresServer(_pg_bin_dir(), free_port())
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running Redis server on database 0."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(_missing("redis-server", "redis-server"))
    server = RedisServer(binary, free_port(), tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


class RegistryServer:
    """Apicurio Registry on loopback: ``url`` (HTTP) and ``tls_url`` (HTTPS, ``ca_file``).

    Both URLs name the Confluent-compatible API (``/apis/ccompat/v7``), as a Shoal user
    passes it to ``--schema-registry``. Storage is in memory: a restart starts empty.

    Args:
        jar: the assembled registry's runner jar.
        home: its log and TLS files.
    """

    api = "/apis/ccompat/v7"

    def __init__(self, jar: Path, home: Path) -> None:
        self.jar = jar
        self.home = home
        self.port = free_port()
        self.tls_port = free_port()
        self.ca_file = home / "ca.pem"
        self.log = home / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API over plain HTTP."""
        return f"http://127.0.0.1:{self.port}{self.api}"

    @property
    def tls_url(self) -> str:
        """The same API over HTTPS (a certificate for 127.0.0.1 and localhost)."""
        return f"https://localhost:{self.tls_port}{self.api}"

    def _tls_files(self) -> tuple[Path, Path]:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        chain, key = self.home / "server.pem", self.home / "server.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key.write_bytes(cert.private_key_pem.bytes())
        self.ca_file.write_bytes(ca.cert_pem.bytes())
        return chain, key

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the server and wait until its API answers."""
        chain, key = self._tls_files()
        cmd = [
            "java", "-Xmx384m", "-XX:+UseSerialGC",
            "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
            f"-Dquarkus.http.ssl-port={self.tls_port}",
            f"-Dquarkus.http.ssl.certificate.files={chain}",
            f"-Dquarkus.http.ssl.certificate.key-files={key}",
            "-Dquarkus.log.level=WARN",
            "-jar", str(self.jar),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.home
            )
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the schema registry did not start; its log ends:\n{tail}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 30 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def build_registry(cache: Path, pom: Path) -> Path:
    """Assemble the registry once with Maven (cached by the pom's text); its runner jar.

    Raises:
        RuntimeError: Maven failed (the message ends with its output).
    """
    build = cache / "build"
    marker = cache / ".complete"
    jar = build / "shoal-local-registry-1-runner.jar"
    pom_text = pom.read_text()
    if marker.exists() and marker.read_text() == pom_text and jar.is_file():
        return jar
    if build.exists():
        shutil.rmtree(build)
    cache.mkdir(parents=True, exist_ok=True)
    cmd = ["mvn", "-B", "-q", "-f", str(pom), "package", f"-Dregistry.build.dir={build}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not jar.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"Maven could not assemble the schema registry:\n{tail}")
    marker.write_text(pom_text)
    return jar


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A running Apicurio Registry (in-memory), fresh for this session."""
    from runtime.settings import load_settings

    for tool, package in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")):
        if shutil.which(tool) is None:
            pytest.fail(_missing(tool, package) + " (the schema registry needs it)")
    settings = load_settings()
    try:
        jar = build_registry(settings.cache / "registry", settings.registry_pom)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server = RegistryServer(jar, tmp_path_factory.mktemp("registry"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
