"""A real local S3-compatible server for tests: moto's server, as an HTTP server process.

The session-scoped fixture ``s3_server`` starts ``python -m moto.server`` on a free
loopback port and stops it when the session ends. The server keeps everything in
memory and takes any credentials; ``env()`` gives the standard ``AWS_*`` variables
(fake credentials) and ``SHOAL_S3_ENDPOINT_URL``, which is how ``shoal`` finds it.

Test modules pull the fixture in as a plugin (see ``tests.services`` for why)::

    pytest_plugins = ["tests.s3"]

Nothing is skipped: a missing ``moto[server]`` fails the test naming the dev extra.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import free_port

__all__ = ["S3Server", "s3_server"]

#: Fake credentials: the server takes any; these only have to be present.
ACCESS_KEY = "shoal-test-access"
SECRET_KEY = "shoal-test-secret-value"


class S3Server:
    """moto's S3-compatible server on loopback.

    Args:
        port: the loopback port.
        log: its request log (a file: a pipe nobody reads would fill and stall it).
    """

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The server's URL (``endpoint_url`` of an S3 client)."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point ``shoal`` (and any AWS client) at it."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "SHOAL_S3_ENDPOINT_URL": self.endpoint,
        }

    def options(self) -> dict[str, str]:
        """fsspec options of the server (``--storage-option`` alike)."""
        return {"endpoint_url": self.endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY}

    def start(self) -> None:
        """Start the server and wait until it answers."""
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"moto's S3 server exited at start: {tail}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto's S3 server did not answer within 60s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (its contents are gone)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def create_bucket(self, prefix: str = "shoal-sp") -> str:
        """A new empty bucket; returns its name."""
        import boto3

        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running S3-compatible server (moto) on a free loopback port."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.fail("moto's server is missing: pip install -e '.[dev]' (moto[server])")
    server = S3Server(free_port(), tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
