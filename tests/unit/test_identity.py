"""Worker identity: stable, unique per slot, from the documented sources in order."""

from __future__ import annotations

from runtime.cli.identity import slot_of, worker_base, worker_id
from runtime.settings import load_settings


def test_explicit_id_wins() -> None:
    s = load_settings({"SHOAL_WORKER_ID": "env-id", "POD_NAME": "pod-0"})
    assert worker_id(s, "given") == "given"
    assert worker_id(s, None) == "env-id"


def test_pod_name_then_statefulset_host_then_host() -> None:
    assert worker_id(load_settings({"POD_NAME": "qoe-3"}), None) == "qoe-3"
    k8s = load_settings({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert worker_base(k8s, "qoe-worker-2") == ("qoe-worker-2", True)
    assert worker_base(load_settings({}), "build box.local") == ("build-box.local", False)


def test_host_ids_carry_a_slot() -> None:
    plain = load_settings({})
    single = worker_id(plain, None)
    assert single.endswith("-w0")
    assert worker_id(plain, None, slot=3).endswith("-w3")
    assert worker_id(plain, None, slot=3) != worker_id(plain, None, slot=2)


def test_slot_of() -> None:
    assert slot_of("w4") == 4
    assert slot_of("hosta-w12") == 12
    assert slot_of("qoe-3") is None
    assert slot_of(None) is None
