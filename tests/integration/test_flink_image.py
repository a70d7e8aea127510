"""The Flink engine's image: built from this checkout, it runs a reference job on Flink exactly.

The image ``shoal-flink:VERSION`` is built by ``deploy/docker/build.py shoal-flink`` (what
``make image-flink`` runs), which rebuilds unless the image carries the hash of the
current inputs: a stale image is never tested. Its progress lines (with the build's
duration) are printed.

What ``deploy/images.yaml`` says of the image is checked inside it (user, entrypoint,
Python, jars). Then clusters of the image's containers, on the host network and
configured with ``deploy/flink/flinkdeployment.yaml``'s ``flinkConfiguration`` through
``FLINK_PROPERTIES``, run ``jobs.user_counts:job`` against the session broker:

* as the Flink Kubernetes operator runs the manifest, without Kubernetes: one container
  started as ``standalone-job`` (an application cluster's JobManager running the
  manifest's entry class and launcher arguments) and one as ``taskmanager``, sharing a
  volume at ``/flink-data`` as the manifest's pods share their checkpoint claim;
* as a session cluster (``jobmanager`` and ``taskmanager``) that the image's own
  ``shoal run --engine flink --jobmanager`` submits to, which cancels the job on SIGTERM.

After the input, one far-later event per partition moves every partition's watermark
past every window; the committed output must equal a brute-force count exactly.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from runtime.generator import GeneratorConfig
from tests.integration.helpers import decoded, produce_generated, read_all, unique
from tests.integration.test_chaos_kill9 import close_all_windows
from tests.integration.test_flink_equality import recent_start_ms
from tests.reference.counts import window_counts

pytestmark = [
    pytest.mark.integration,
    # The module's first test also builds the 1.3 GB image (about 6 minutes cold here);
    # each test starts two or three JVMs and a job on a shared 2-core machine.
    pytest.mark.timeout(1800),
]

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "docker" / "build.py"
IMAGE: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "images.yaml").read_text())[
    "shoal-flink"
]
DEPLOYMENT: dict[str, Any] = next(
    d
    for d in yaml.safe_load_all((ROOT / "deploy" / "flink" / "flinkdeployment.yaml").read_text())
    if d and d["kind"] == "FlinkDeployment"
)["spec"]
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs")
RUN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network=host")
PARTITIONS = 4
EVENTS = 10_000


def podman(*args: str, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args[:3])}: {proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def flink_image() -> str:
    """The id of ``shoal-flink:VERSION`` built from this checkout (or reused if current)."""
    for tool in ("podman", "runc", "mmdebstrap", "mvn"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            pytest.fail(f"{tool} is missing: run deploy/setup/system-deps image-flink - "
                        "tests never skip")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(BUILD), "shoal-flink"], capture_output=True,
                          text=True, timeout=2400)
    print(proc.stderr, end="")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"image: ready in {time.monotonic() - t0:.0f}s")
    tag = proc.stdout.strip()
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert tag == f"{IMAGE['name']}:{version}" == DEPLOYMENT["image"]
    inputs = subprocess.run([sys.executable, str(BUILD), "--inputs", "shoal-flink"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # The image's id, not its tag: another checkout's build may move the tag meanwhile.
    image_id, labels = podman("image", "inspect", "--format", "{{.Id}} {{json .Labels}}",
                              tag).stdout.split(" ", 1)
    assert json.loads(labels)["io.shoal.inputs"] == inputs, "not built from these sources"
    assert json.loads(labels)["org.opencontainers.image.version"] == version
    return image_id


def in_image(image: str, script: str) -> str:
    """Run a shell script in the image as its own user; its output."""
    return podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "bash", image, "-c",
                  script).stdout


def test_flink_image_is_what_the_manifests_assume(flink_image: str) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}",
                               flink_image).stdout)
    assert config["User"] == f"{IMAGE['uid']}:{IMAGE['gid']}"
    assert config["Entrypoint"] == [IMAGE["entrypoint"]]
    assert f"FLINK_HOME={IMAGE['flink_home']}" in config["Env"]

    helped = podman("run", "--rm", *RUN_FLAGS, flink_image, "help").stdout
    for role in ("jobmanager", "standalone-job", "taskmanager", "kubernetes-jobmanager.sh"):
        assert role in helped, role
    who = in_image(flink_image, "id").strip()
    assert who.startswith(f"uid={IMAGE['uid']}(flink) gid={IMAGE['gid']}(flink)"), who

    # The paths the FlinkDeployment names exist, and its Python has Shoal and PyFlink.
    found = in_image(flink_image, (
        f"test -f {IMAGE['flink_python_jar']} && test -f {IMAGE['kafka_connector_jar']} "
        f"&& test -f {IMAGE['steps_jar']} "
        f"&& {IMAGE['python']} -c 'import pyflink.datastream, runtime.flink.main, "
        "pyflink.version as v; print(v.__version__)'"
    ))
    assert Path(IMAGE["flink_python_jar"]).name == f"flink-python-{found.strip()}.jar"
    java = podman("run", "--rm", *RUN_FLAGS, "--entrypoint", "java", flink_image,
                  "-version").stderr
    assert 'version "17.' in java, java
    # Native Kubernetes starts Flink's scripts by name; conf/ is the flink user's to write
    # (the entrypoint configures the roles there), the jars are not.
    layout = in_image(flink_image, (
        "command -v kubernetes-jobmanager.sh kubernetes-taskmanager.sh; "
        "test -w $FLINK_HOME/conf/config.yaml && echo conf-writable; "
        "test -w $FLINK_HOME/lib || echo lib-read-only; "
        "shoal run --help | grep -q -- '--jobmanager' && echo shoal-cli"
    )).split()
    assert layout == [f"{IMAGE['flink_home']}/bin/kubernetes-jobmanager.sh",
                      f"{IMAGE['flink_home']}/bin/kubernetes-taskmanager.sh",
                      "conf-writable", "lib-read-only", "shoal-cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def volume() -> Iterator[str]:
    """A volume both roles of a cluster share (their checkpoints)."""
    name = f"shoal-flink-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def flink_properties(ports: dict[str, int]) -> str:
    """The manifest's flinkConfiguration as FLINK_PROPERTIES, on free loopback ports,
    with a shorter checkpoint interval (the sinks' transactions commit with it)."""
    conf = {
        **DEPLOYMENT["flinkConfiguration"],
        "execution.checkpointing.interval": "2 s",
        "jobmanager.rpc.port": ports["rpc"],
        "blob.server.port": ports["blob"],
        "rest.port": ports["rest"],
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.memory.process.size": "1728m",
    }
    return "".join(f"{key}: {value}\n" for key, value in conf.items())


def cluster_flags(ports: dict[str, int], volume: str, mount: str) -> list[str]:
    """``podman run`` flags of both roles: the JobManager's address, the configuration,
    and the shared volume."""
    return ["--env", "JOB_MANAGER_RPC_ADDRESS=127.0.0.1",
            "--env", f"FLINK_PROPERTIES={flink_properties(ports)}",
            "--volume", f"{volume}:{mount}:U"]


def launcher_args(kafka: str, group: str, binds: dict[str, str]) -> list[str]:
    """The manifest's job arguments, for jobs.user_counts on the test broker (plaintext:
    no --kafka-config)."""
    args = list(DEPLOYMENT["job"]["args"])
    assert args[:2] == ["-pym", "runtime.flink.main"]
    out = args[:2] + ["--job", "jobs.user_counts:job", "--group", group, "--bootstrap", kafka]
    for name, topic in binds.items():
        out += ["--bind", f"{name}={topic}"]
    flags = {a for a in args[2:] if a.startswith("--")}
    assert flags == {"--job", "--group", "--kafka-config", "--bind"}, flags
    return out


def produce_input(kafka: str, seed: int) -> tuple[str, dict[tuple[str, int], int]]:
    """Generated playback events, then one far-later event per partition (every window
    of the input closes); the input topic and the brute-force counts."""
    playback = unique("fimg-in")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(start_ms=recent_start_ms(), seed=seed, users=200, late_rate=0.0,
                             malformed_rate=0.0, bad_timestamp_rate=0.0, interaction_ratio=0.0)
    records = produce_generated(kafka, {"playback": playback, "interactions": playback},
                                config, EVENTS)
    assert {r.stream for r in records} == {"playback"}
    last_ts = max(r.value["event_time_ms"] for r in records)
    close_all_windows(kafka, playback, last_ts + 600_000, PARTITIONS)
    want = window_counts([r.value for r in records])
    assert len(want) > 1_000
    return playback, want


def wait_for_counts(kafka: str, out: str, want: dict[tuple[str, int], int],
                    containers: list[str]) -> None:
    """Read the committed output until it equals ``want``, while every container runs;
    then no window may be there twice."""
    deadline = time.monotonic() + 600
    got: dict[tuple[str, int], int] = {}
    rows = 0
    while got != want:
        for name in containers:
            assert running(name), f"{name} exited:\n{logs(name)}"
        assert time.monotonic() < deadline, (
            f"{len(got)} of {len(want)} windows after 600 s\n" + logs(containers[0])
        )
        time.sleep(5)
        messages = read_all(kafka, out, first_wait_s=2, idle_s=2)
        decoded_rows = decoded(messages, "")
        # Keyed like the native engine's output: by the stream's key, the user.
        assert [m.key() for m in messages] == [r["user_id"].encode() for r in decoded_rows]
        got = {(r["user_id"], r["window_start_ms"]): r["count"] for r in decoded_rows}
        rows = len(decoded_rows)
    assert rows == len(got), "a window was emitted twice"


def assert_flink_user_runs_java(containers: list[str]) -> None:
    """Every role runs as the image's flink user, the JVM as the container's main process."""
    for name in containers:
        status = proc_status(name)
        assert status["Uid"].split() == [str(IMAGE["uid"])] * 4, status
        assert status["Name"] == "java", status


def test_flinkdeployment_job_runs_exactly_on_image_containers(
    flink_image: str, kafka: str, volume: str
) -> None:
    playback, want = produce_input(kafka, seed=4712)
    out, dead = unique("fimg-out"), unique("fimg-dead")
    ports = {"rpc": free_port(), "blob": free_port(), "rest": free_port()}
    flags = cluster_flags(ports, volume, "/flink-data")
    jobmanager, taskmanager = unique("shoal-flink-jm"), unique("shoal-flink-tm")
    args = launcher_args(kafka, unique("fimg"),
                         {"playback": playback, "user-counts": out, "dead-letters": dead})
    try:
        podman("run", "--detach", "--name", jobmanager, *RUN_FLAGS, *flags, flink_image,
               "standalone-job", "--job-classname", DEPLOYMENT["job"]["entryClass"], *args)
        podman("run", "--detach", "--name", taskmanager, *RUN_FLAGS, *flags, flink_image,
               "taskmanager")
        wait_for_counts(kafka, out, want, [jobmanager, taskmanager])

        jobs = rest(ports["rest"], "/jobs/overview")["jobs"]
        assert [(j["name"], j["state"]) for j in jobs] == [("user_counts", "RUNNING")], jobs
        assert_flink_user_runs_java([jobmanager, taskmanager])
        # The manifest's checkpoint directory took the job's checkpoints.
        checkpoints = podman("exec", jobmanager, "sh", "-c",
                             "ls -d /flink-data/checkpoints/*/chk-* | head -1").stdout
        assert "/chk-" in checkpoints
    finally:
        for name in (taskmanager, jobmanager):
            podman("rm", "--force", name, check=False)
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")


def test_shoal_run_submits_to_a_session_cluster_of_image_containers(
    flink_image: str, kafka: str, volume: str
) -> None:
    """``jobmanager`` and ``taskmanager`` make a session cluster; the image's own ``shoal
    run --engine flink --jobmanager`` submits to it with the bundled connector jar
    (SHOAL_FLINK_JARS; the image has no Maven) and cancels the job on SIGTERM."""
    playback, want = produce_input(kafka, seed=4713)
    out, dead = unique("fimg-out"), unique("fimg-dead")
    ports = {"rpc": free_port(), "blob": free_port(), "rest": free_port()}
    # The client names SHOAL_HOME/flink/checkpoints as the job's checkpoint directory:
    # one volume there for the cluster, as a shared file system would be.
    flags = cluster_flags(ports, volume, "/var/lib/shoal")
    jobmanager, taskmanager = unique("shoal-flink-jm"), unique("shoal-flink-tm")
    client = unique("shoal-flink-client")
    try:
        podman("run", "--detach", "--name", jobmanager, *RUN_FLAGS, *flags, flink_image,
               "jobmanager")
        podman("run", "--detach", "--name", taskmanager, *RUN_FLAGS, *flags, flink_image,
               "taskmanager")
        deadline = time.monotonic() + 300
        while True:
            for name in (jobmanager, taskmanager):
                assert running(name), f"{name} exited:\n{logs(name)}"
            try:
                slots = rest(ports["rest"], "/overview")["slots-total"]
            except OSError:
                slots = 0
            if slots >= PARTITIONS:
                break
            assert time.monotonic() < deadline, "no TaskManager slots\n" + logs(taskmanager)
            time.sleep(2)

        podman(
            "run", "--detach", "--name", client, *RUN_FLAGS, flink_image,
            "shoal", "run", "jobs.user_counts:job", "--engine", "flink",
            "--jobmanager", f"127.0.0.1:{ports['rest']}", "--bootstrap", kafka,
            "--group", unique("fimg"), "--checkpoint-ms", "1000",
            "--bind", f"playback={playback}", "--bind", f"user-counts={out}",
            "--bind", f"dead-letters={dead}",
        )  # fmt: skip
        wait_for_counts(kafka, out, want, [client, jobmanager, taskmanager])
        jobs = rest(ports["rest"], "/jobs/overview")["jobs"]
        assert [(j["name"], j["state"]) for j in jobs] == [("user_counts", "RUNNING")], jobs
        assert_flink_user_runs_java([jobmanager, taskmanager])

        podman("stop", "--time", "60", client, timeout=90)
        state = json.loads(podman("inspect", "--format", "{{json .State}}", client).stdout)
        assert state["ExitCode"] == 0, logs(client)
        said = logs(client)
        assert f"on Flink cluster 127.0.0.1:{ports['rest']}" in said, said
        assert "stopped user_counts on Flink: CANCELED" in said, said
        # The overview can still say CANCELLING for a moment after the client saw the
        # job's status turn CANCELED.
        deadline = time.monotonic() + 30
        while True:
            jobs = rest(ports["rest"], "/jobs/overview")["jobs"]
            if [j["state"] for j in jobs] != ["CANCELLING"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [j["state"] for j in jobs] == ["CANCELED"], jobs
    finally:
        for name in (client, taskmanager, jobmanager):
            podman("rm", "--force", name, check=False)
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")


def rest(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


def logs(name: str) -> str:
    proc = podman("logs", name, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    important = [ln for ln in lines if "ERROR" in ln or "Exception" in ln or "Caused by" in ln]
    return "\n".join(important[-20:] + lines[-20:])


def proc_status(name: str) -> dict[str, str]:
    """``/proc/1/status`` of the container: its main process."""
    text = podman("exec", name, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
