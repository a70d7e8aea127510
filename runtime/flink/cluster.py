"""A standalone Flink session cluster from the pyflink distribution, on this machine.

One JobManager (``StandaloneSessionClusterEntrypoint``) and one TaskManager
(``TaskManagerRunner``) run as two JVMs with the distribution's ``lib/`` jars and
``opt/flink-python`` (Python operators) on their class path, bound to 127.0.0.1 on
free ports, with their configuration and logs in one folder. Jobs are submitted to
its REST address (``shoal run JOB --engine flink --jobmanager ADDRESS``). The
TaskManager runs Python functions in thread mode inside its JVM, so it gets the
``PYTHONPATH`` the mini cluster gets (``submit.python_path``).

``stop()`` ends both JVMs (and what they started) and waits for them: nothing is
left behind.
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.api.errors import ConfigError, ShoalError

JOBMANAGER = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"

# Java 17 needs these for Flink's serializers and Kryo (as the distribution's config.yaml).
_JAVA_MODULES = [
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.rmi/sun.rmi.registry",
            "jdk.compiler/com.sun.tools.javac.api",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.compiler/com.sun.tools.javac.parser",
            "jdk.compiler/com.sun.tools.javac.tree",
            "jdk.compiler/com.sun.tools.javac.util",
            "java.security.jgss/sun.security.krb5",
        )
    ),
    *(
        f"--add-opens=java.base/{p}=ALL-UNNAMED"
        for p in (
            "java.lang",
            "java.net",
            "java.io",
            "java.nio",
            "sun.nio.ch",
            "java.lang.reflect",
            "java.text",
            "java.time",
            "java.util",
            "java.util.concurrent",
            "java.util.concurrent.atomic",
            "java.util.concurrent.locks",
        )
    ),
]

# TaskManager memory, every component explicit (the distribution's scripts derive them
# from a process size; a JVM started directly needs them set). Heap and direct memory
# limits of the JVM follow from them.
_TM_MEMORY = {
    "taskmanager.cpu.cores": str(os.cpu_count() or 1),
    "taskmanager.memory.framework.heap.size": "128m",
    "taskmanager.memory.task.heap.size": "768m",
    "taskmanager.memory.framework.off-heap.size": "128m",
    "taskmanager.memory.task.off-heap.size": "0m",
    "taskmanager.memory.network.min": "128m",
    "taskmanager.memory.network.max": "128m",
    "taskmanager.memory.managed.size": "512m",
    "taskmanager.memory.jvm-metaspace.size": "256m",
    "taskmanager.memory.jvm-overhead.min": "192m",
    "taskmanager.memory.jvm-overhead.max": "192m",
}
_TM_JVM = ["-Xms896m", "-Xmx896m", "-XX:MaxDirectMemorySize=256m", "-XX:MaxMetaspaceSize=256m"]
_JM_JVM = ["-Xms512m", "-Xmx512m", "-XX:MaxMetaspaceSize=256m"]


def pyflink_home() -> Path:
    """The installed pyflink package (its ``lib/``, ``opt/`` and ``conf/``).

    Raises:
        ConfigError: pyflink is not installed.
    """
    from runtime.flink.options import require_pyflink

    require_pyflink()
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise ConfigError("pyflink is installed as a namespace without files: reinstall it")
    return Path(spec.origin).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StandaloneCluster:
    """A local standalone Flink session cluster (see the module docstring).

    Args:
        home: folder for its configuration and logs (created).
        slots: task slots of its TaskManager (the most parallel step's parallelism).
        start_timeout_s: how long to wait for the TaskManager to register.
    """

    home: Path
    slots: int = 4
    start_timeout_s: float = 90.0
    rest_port: int = 0
    _procs: tuple[subprocess.Popen[bytes], ...] = ()

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the REST endpoint (what ``--jobmanager`` takes)."""
        return f"127.0.0.1:{self.rest_port}"

    def _config(self) -> dict[str, str]:
        return {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": str(free_port()),
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": "1024m",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": str(self.rest_port),
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": str(self.slots),
            "parallelism.default": "1",
            "io.tmp.dirs": str(self.home / "tmp"),
            **_TM_MEMORY,
        }

    def start(self) -> str:
        """Start both JVMs and wait until the TaskManager's slots are there.

        Returns:
            The REST address.

        Raises:
            ConfigError: pyflink or Java is missing.
            ShoalError: the cluster did not come up in time (its logs are in ``home``).
        """
        from runtime.flink.submit import python_path

        java = shutil.which("java")
        if java is None:
            raise ConfigError("a standalone Flink cluster needs Java 11+ (java is not on PATH)")
        flink = pyflink_home()
        conf = self.home / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (self.home / "tmp").mkdir(exist_ok=True)
        self.rest_port = self.rest_port or free_port()
        (conf / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in self._config().items()))
        shutil.copy(flink / "conf" / "log4j.properties", conf / "log4j.properties")
        jars = [
            *sorted((flink / "lib").glob("*.jar")),
            *sorted((flink / "opt").glob("flink-python*.jar")),
        ]
        classpath = os.pathsep.join(str(j) for j in jars)
        env = {**os.environ, "PYTHONPATH": python_path(), "FLINK_CONF_DIR": str(conf)}
        procs = []
        for role, main, jvm in (
            ("jobmanager", JOBMANAGER, _JM_JVM),
            ("taskmanager", TASKMANAGER, _TM_JVM),
        ):
            log = self.home / f"{role}.log"
            cmd = [
                java,
                *jvm,
                *_JAVA_MODULES,
                f"-Dlog.file={log}",
                f"-Dlog4j.configurationFile=file:{conf / 'log4j.properties'}",
                "-cp",
                classpath,
                main,
                "--configDir",
                str(conf),
            ]
            out = (self.home / f"{role}.out").open("wb")
            procs.append(
                subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.home,
                    start_new_session=True,
                )
            )
            out.close()
        self._procs = tuple(procs)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.address

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        url = f"http://{self.address}/overview"
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    raise ShoalError(
                        f"a Flink cluster JVM exited with {p.returncode} while starting "
                        f"(logs in {self.home})"
                    )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    body = resp.read().decode()
                if json.loads(body).get("slots-total", 0) >= self.slots:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise ShoalError(
            f"the Flink cluster did not come up within {self.start_timeout_s:.0f}s "
            f"(logs in {self.home})"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """End both JVMs (SIGTERM, then SIGKILL) and wait for them."""
        for p in self._procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self._procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
            # What the JVM started (process-mode Python workers) shares its group.
            _signal_group(p, signal.SIGKILL)
        self._procs = ()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running JVMs."""
        return [p.pid for p in self._procs if p.poll() is None]


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group that ``proc`` leads (its own session), if any is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
