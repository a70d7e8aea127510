"""Binding URLs with a password and a secret query never show them: reprs, strs, errors
of the sinks, binding errors and the start-up line of ``shoal run``.

The sinks' failures are real: each connects to a loopback port nothing listens on.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.external import make_external_sink
from jobs.qoe.alerts import alerts_job
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ConnectorError
from runtime.api.io import ExternalSink
from runtime.cli.native import startup_line

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Zq81xLk"
TOKEN = "tok-Yh27mNv"
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
SECRETS = (PASSWORD, TOKEN, WHSEC[6:])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _urls(port: int) -> dict[str, tuple[str, str]]:
    """Sink kind -> (binding URL with secrets, schema)."""
    return {
        "postgres": (
            f"postgres://shoal:{PASSWORD}@127.0.0.1:{port}/qoe"
            f"?table=t&password={TOKEN}&max_attempts=1&connect_timeout=2",
            "QoeMetric",
        ),
        "redis": (
            f"redis://user:{PASSWORD}@127.0.0.1:{port}/0"
            f"?password={TOKEN}&max_attempts=1&socket_timeout=2",
            "QoeMetric",
        ),
        "webhook": (
            f"webhook+http://user:{PASSWORD}@127.0.0.1:{port}/hook"
            f"?secret={WHSEC}&token={TOKEN}&max_attempts=1&deadline_s=2",
            "QoeAlert",
        ),
    }


def _assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)


def _metric() -> dict[str, object]:
    return {
        "window_start_ms": 0, "window_end_ms": 60_000, "window_kind": "tumbling_1m",
        "group_kind": "cdn", "title_id": None, "device_type": None, "country": None,
        "cdn": "cdn-a", "plays_started": 1, "startup_p50_ms": None, "startup_p90_ms": None,
        "startup_p99_ms": None, "watch_time_ms": 1, "rebuffer_time_ms": 0,
        "rebuffer_count": 0, "rebuffer_ratio": 0.0, "rebuffers_per_hour": 0.0,
        "avg_bitrate_kbps": None, "bitrate_switches": 0, "play_attempts": 0,
        "play_failures": 0, "failure_rate": 0.0, "concurrent_streams": 1,
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["postgres", "redis", "webhook"])
def test_sink_repr_str_and_errors_hide_secrets(kind: str) -> None:
    url, schema = _urls(_closed_port())[kind]
    sink: ExternalSink = make_external_sink(url, "out", schema, {})
    try:
        config = sink.config  # type: ignore[attr-defined]
        for text in (repr(sink), str(sink), repr(config), str(config)):
            _assert_hidden(text)
        assert "127.0.0.1" in repr(sink)
        record = {"alert_id": "a1", "state": "fired"} if kind == "webhook" else _metric()
        sink.write([(None, record, 0)])
        if kind == "webhook":
            sink.flush()
            (gone,) = sink.drain_undelivered()
            assert "Connect" in gone.error_message
            _assert_hidden(gone.error_message)
        else:
            with pytest.raises(ConnectorError) as info:
                sink.flush()
            _assert_hidden(str(info.value))
            assert "not written after 1 attempts" in str(info.value)
    finally:
        sink.close()


@pytest.mark.parametrize("kind", ["postgres", "redis", "webhook"])
def test_binding_errors_and_the_startup_line_hide_secrets(kind: str) -> None:
    url, _ = _urls(_closed_port())[kind]
    with pytest.raises(ConfigError) as info:
        Bindings.for_job(alerts_job, [f"no-such-sink={url}"])
    _assert_hidden(str(info.value))
    assert "no-such-sink" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Bindings.for_job(alerts_job, [f"={url}"])
    _assert_hidden(str(info.value))
    bindings = Bindings.for_job(alerts_job, [f"qoe-alerts={url}"])
    line = startup_line(alerts_job, "exactly_once", "memory", "127.0.0.1:9092", bindings)
    _assert_hidden(line)
    assert line.startswith("running qoe_alerts") and "qoe-alerts->" in line and "***" in line


def test_shoal_run_error_lines_hide_secrets() -> None:
    urls = _urls(_closed_port())
    for url, _ in urls.values():
        out = subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", "run", "jobs.qoe.alerts:alerts_job",
             "--bootstrap", "127.0.0.1:1", "--bind", f"nope={url}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 1 and out.stderr.startswith("error: binding "), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        _assert_hidden(out.stderr + out.stdout)


def test_schema_registry_credentials_never_show() -> None:
    from connectors.avro import RegistryConfig
    from connectors.codecs import codec_factory
    from connectors.wire import EndpointCodecs, WireConfig

    url = f"https://shoal:{PASSWORD}@registry.example:8081"
    config = RegistryConfig(url)
    codecs = EndpointCodecs(codec_factory(), WireConfig(config), {}, {"qoe-alerts": "alerts"})
    bindings = Bindings.for_job(alerts_job)
    line = startup_line(
        alerts_job, "exactly_once", "memory", "127.0.0.1:9092", bindings, codecs.describe()
    )
    other = RegistryConfig("https://registry:8081", {"basic.auth.user.info": f"shoal:{TOKEN}"})
    _assert_hidden(line + repr(config) + repr(other) + str(other.shown()))
    assert "schema registry https://shoal:***@registry.example:8081" in line
    # a refused setting, and the CLI's one line when the registry cannot be reached
    with pytest.raises(ConfigError) as info:
        RegistryConfig(url, {"basic.auth.password": PASSWORD})
    _assert_hidden(str(info.value))
    out = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "generate", "-n", "1", "--bootstrap",
         "127.0.0.1:1", "--schema-registry", f"http://shoal:{PASSWORD}@127.0.0.1:{_closed_port()}",
         "-X", "schema.registry.max.retries=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "cannot register" in out.stderr
    _assert_hidden(out.stderr + out.stdout)
