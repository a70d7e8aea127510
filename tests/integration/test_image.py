"""The container image: built from this checkout, it runs a reference job exactly.

The image is built by ``deploy/docker/build.py`` (what ``make image`` runs), which
rebuilds unless ``shoal:VERSION`` carries the hash of the current inputs (sources, lock,
Dockerfile, base recipe): a stale image is never tested. Its progress lines (with the
build's duration) are printed.

From the image, ``jobs.user_counts:job`` reads generated playback events from the
session's broker (host network; podman with the flags our machines need) with RocksDB
state on a named volume; the output topic must equal a brute-force count exactly. The
worker must run as the image's unprivileged user, answer ``/health`` on the address
``SHOAL_HTTP`` names (no ``--http``), pass the image's own HEALTHCHECK, and stop cleanly
on SIGTERM.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.generator import GeneratorConfig
from tests.integration.helpers import decoded, produce_generated, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.workers import group_lag
from tests.reference.counts import window_counts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "docker" / "build.py"
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs")
RUN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network=host")
PARTITIONS = 4
EVENTS = 20_000
UID = 10001


def podman(*args: str, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args[:3])}: {proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def image() -> str:
    """The id of ``shoal:VERSION`` built from this checkout (or reused if current)."""
    for tool in ("podman", "runc", "mmdebstrap"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            pytest.fail(f"{tool} is missing: run deploy/setup/system-deps image - tests never skip")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(BUILD)], capture_output=True, text=True,
                          timeout=1200)
    print(proc.stderr, end="")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"image: ready in {time.monotonic() - t0:.0f}s")
    tag = proc.stdout.strip()
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert tag == f"shoal:{version}"
    inputs = subprocess.run([sys.executable, str(BUILD), "--inputs"], capture_output=True,
                            text=True, check=True).stdout.strip()
    # The image's id, not its tag: another checkout's build may move the tag meanwhile.
    image_id, labels = podman("image", "inspect", "--format", "{{.Id}} {{json .Labels}}",
                              tag).stdout.split(" ", 1)
    assert json.loads(labels)["io.shoal.inputs"] == inputs, "not built from these sources"
    assert json.loads(labels)["org.opencontainers.image.version"] == version
    return image_id


def test_image_config_and_cli(image: str) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["shoal"]
    assert "/var/lib/shoal" in config["Volumes"]
    assert "SHOAL_HOME=/var/lib/shoal" in config["Env"]
    assert "SHOAL_HTTP=127.0.0.1:8080" in config["Env"]
    check = json.loads(podman("image", "inspect", "--format", "{{json .HealthCheck}}",
                              image).stdout)
    assert check["Test"][0] == "CMD" and "/health" in " ".join(check["Test"])

    helped = podman("run", "--rm", *RUN_FLAGS, image, "--help")
    assert "Commands:" in helped.stdout and " run " in helped.stdout
    ran = podman("run", "--rm", *RUN_FLAGS, image, "run", "--help")
    assert "MODULE:ATTR" in ran.stdout and "SHOAL_HTTP" in ran.stdout
    who = podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "id", image).stdout
    assert who.startswith(f"uid={UID}(shoal) gid={UID}(shoal)"), who
    # no pip in the runtime image: it stayed in the build stage
    pip = podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "python3", image,
                 "-c", "import importlib.util as u; print(u.find_spec('pip') is None)").stdout
    assert pip.strip() == "True"
    # the native extension (built on the host with cargo): decoder, fold and key encoder on
    native = podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "python3", image, "-c",
                    "from connectors.avro import native; from runtime.engine import columnar; "
                    "from runtime.state import serde; "
                    "print(native.enabled(), columnar.enabled(), type(serde.encode_key).__name__)"
                    ).stdout
    assert native.split() == ["True", "True", "KeyEncoder"], native


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"shoal-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def test_user_counts_job_from_image(image: str, kafka: str, volume: str) -> None:
    playback, out, dead = unique("img-in"), unique("img-out"), unique("img-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(seed=4711, users=300, late_rate=0.0, malformed_rate=0.0,
                             bad_timestamp_rate=0.0, interaction_ratio=0.0)
    records = produce_generated(kafka, {"playback": playback, "interactions": playback},
                                config, EVENTS)
    assert {r.stream for r in records} == {"playback"}
    last_ts = max(r.value["event_time_ms"] for r in records)
    close_all_windows(kafka, playback, last_ts + 3_600_000, PARTITIONS)

    group, port, name = unique("img"), free_port(), unique("shoal-job")
    podman(
        "run", "--detach", "--name", name, *RUN_FLAGS,
        "--volume", f"{volume}:/var/lib/shoal",
        "--env", f"SHOAL_HTTP=127.0.0.1:{port}",
        image, "run", "jobs.user_counts:job", "--bootstrap", kafka, "--group", group,
        "--bind", f"playback={playback}", "--bind", f"user-counts={out}",
        "--bind", f"dead-letters={dead}",
        "--state", "rocksdb", "--checkpoint-ms", "500", "--partitions", "3", "--quiet",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while group_lag(kafka, group, playback, PARTITIONS) > 0:
            assert running(name), "the job's container exited:\n" + logs(name)
            assert time.monotonic() < deadline, "the job did not catch up\n" + logs(name)
            time.sleep(1)

        status = proc_status(name)
        assert status["Uid"].split() == [str(UID)] * 4, status
        assert status["Gid"].split() == [str(UID)] * 4, status
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            assert resp.status == 200
            assert json.load(resp)["status"] == "ok"
        assert podman("healthcheck", "run", name, check=False).returncode == 0, logs(name)

        podman("stop", "--time", "60", name, timeout=90)
        state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["ExitCode"] == 0, logs(name)
        assert "stopped user_counts" in logs(name)
    finally:
        podman("rm", "--force", name, check=False)

    outputs = decoded(read_all(kafka, out), "")
    seen = Counter((o["user_id"], o["window_start_ms"]) for o in outputs)
    assert max(seen.values()) == 1, "duplicated windows"
    got = {(o["user_id"], o["window_start_ms"]): o["count"] for o in outputs}
    assert got == window_counts([r.value for r in records])
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")

    # the RocksDB state is on the volume, written by the unprivileged user
    mount = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())
    files = [p for p in (mount / "state").rglob("*") if p.is_file()]
    assert files, f"no state under {mount}"
    assert {p.stat().st_uid for p in files} == {UID}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


def logs(name: str) -> str:
    proc = podman("logs", name, check=False)
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])


def proc_status(name: str) -> dict[str, str]:
    """``/proc/1/status`` of the container: its main process, the worker itself."""
    text = podman("exec", name, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)

