"""The Kubernetes manifests, against Kubernetes' schemas and against the code they run.

No cluster is needed. How each object is checked:

* Core objects (ConfigMap, Secret, Service, StatefulSet, PodDisruptionBudget,
  PersistentVolumeClaim) are validated with ``kubernetes-validate``, which ships the JSON
  schemas of every Kubernetes release in its wheel (nothing is fetched), in strict mode
  (an unknown field fails), for the oldest release we support and the newest it knows.
* Custom resources have no schema there. ScaledObject and TriggerAuthentication (KEDA),
  PodMonitor (Prometheus Operator) and FlinkDeployment (Flink operator) are validated
  against the small closed JSON schemas in ``tests/unit/kubernetes_crds/``, written from
  the CRDs' fields; the core objects they embed (the FlinkDeployment's pod template, the
  ScaledObject's HPA behaviour) are validated as core objects, and the ``kafka`` trigger's
  metadata against the scaler's parameters.
* Then the manifests are checked against the code: the container arguments parse with the
  real ``shoal run`` command and the Flink launcher's parser, every variable a pod gets is
  one Shoal reads, the worker id and the state folder come out of the pod name and the
  volume, the probe and scrape paths answer on the real HTTP service, the Kafka settings
  load through the real client-config builder, the images are the ones ``deploy/images.yaml``
  describes, and names, selectors and references agree across objects (the scaler
  watches the workers' group and input topic).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError
from runtime.cli.common import resolve_client
from runtime.cli.identity import slot_of, worker_id
from runtime.cli.main import cli
from runtime.cli.run_cmd import load_job, run
from runtime.flink import main as flink_main
from runtime.flink.options import FlinkOptions
from runtime.service import ServiceConfig, WorkerHandle, make_app, parse_address
from runtime.settings import load_settings
from tests.unit.service.conftest import LiveWorker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FLINK_MANIFEST = DEPLOY / "flink" / "flinkdeployment.yaml"
MANIFESTS = [*sorted((DEPLOY / "kubernetes").rglob("*.yaml")), FLINK_MANIFEST]
CRD_SCHEMAS = Path(__file__).parent / "kubernetes_crds"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
    ("flink.apache.org/v1beta1", "FlinkDeployment"): "flinkdeployment.json",
}
#: The oldest Kubernetes release the manifests support, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
#: What the kubelet sets in every pod (runtime/settings.py reads it for the worker id).
KUBELET_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
#: A token as `openssl rand -hex 32` makes one.
TOKEN = "0123456789abcdef" * 4
IMAGES: dict[str, Any] = yaml.safe_load((DEPLOY / "images.yaml").read_text())
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


OBJECTS = [(path, doc) for path in MANIFESTS for doc in _documents(path)]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``) in the manifests."""
    found = [o for _, o in OBJECTS if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in the manifests, got {len(found)}"
    return found[0]


def secret_data(name: str) -> dict[str, str]:
    secret = find("Secret", name)
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def config_data(name: str) -> dict[str, str]:
    return dict(find("ConfigMap", name)["data"])


def container_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The variables the container gets, as the kubelet would set them in pod ``pod_name``."""
    env = dict(KUBELET_ENV)
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected env source {source}"
        env.update(config_data(source["configMapRef"]["name"]))
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = var["value"]
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name", name
            env[name] = pod_name
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            data = secret_data(key["name"])
            assert key["key"] in data, f"{name}: Secret {key['name']} has no key {key['key']}"
            env[name] = data[key["key"]]
        else:
            pytest.fail(f"{name}: unexpected source {ref}")
    return env


def secret_ref(container: dict[str, Any], variable: str) -> tuple[str, str]:
    """(Secret, key) a variable of the container comes from."""
    for var in container.get("env", []):
        if var["name"] == variable:
            key = var["valueFrom"]["secretKeyRef"]
            return key["name"], key["key"]
    raise AssertionError(f"{container['name']} gets no {variable}")


def mount_files(
    pod_spec: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, tuple[Path, dict[str, str]]]:
    """Write the Secret files the container mounts under ``root``.

    Returns:
        mount path -> (the folder standing for it, file name -> (Secret, key)).
    """
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts: dict[str, tuple[Path, dict[str, str]]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" not in volume:
            continue
        name = volume["secret"]["secretName"]
        data = secret_data(name)
        items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
        folder = root / mount["mountPath"].strip("/")
        folder.mkdir(parents=True)
        sources = {}
        for item in items:
            assert item["key"] in data, f"Secret {name} has no key {item['key']}"
            (folder / item["path"]).write_text(data[item["key"]])
            sources[item["path"]] = (name, item["key"])
        mounts[mount["mountPath"].rstrip("/")] = (folder, sources)
    return mounts


def relocate(path: str, mounts: dict[str, tuple[Path, dict[str, str]]]) -> Path:
    """Where a path inside the container is in the test's copy of its mounts."""
    for mount, (folder, _) in mounts.items():
        if path.startswith(mount + "/"):
            return folder / path[len(mount) + 1 :]
    raise AssertionError(f"{path} is on no Secret volume the container mounts")


def mounted_from(path: str, mounts: dict[str, tuple[Path, dict[str, str]]]) -> tuple[str, str]:
    """(Secret, key) of a file in the container."""
    for mount, (_, sources) in mounts.items():
        if path.startswith(mount + "/"):
            return sources[path[len(mount) + 1 :]]
    raise AssertionError(f"{path} is on no Secret volume the container mounts")


def with_kafka_config(args: list[str], where: Path) -> list[str]:
    """``args`` with the --kafka-config file swapped for ``where``."""
    out, swap = [], False
    for arg in args:
        if swap:
            out.append(str(where))
            swap = False
        elif arg == "--kafka-config":
            out.append(arg)
            swap = True
        elif arg.startswith("--kafka-config="):
            out.append(f"--kafka-config={where}")
        else:
            out.append(arg)
    return out


def parse_run(args: list[str]) -> click.Context:
    """The container's arguments as the image's entrypoint (``shoal``) parses them."""
    assert IMAGES["shoal"]["entrypoint"] == "shoal"
    assert cli.get_command(click.Context(cli), args[0]) is run, f"{args[0]!r} is not `shoal run`"
    return run.make_context("run", list(args[1:]))


def labels_select(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def crd_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((CRD_SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_pod_spec(spec: dict[str, Any], version: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    kubernetes_validate.validate(pod, version, strict=True)


@pytest.fixture(autouse=True)
def _no_shoal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the manifests set reaches the code under test."""
    for name in list(os.environ):
        if name.startswith("SHOAL_") or name in ("POD_NAME", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)


@pytest.fixture
def statefulset() -> dict[str, Any]:
    return find("StatefulSet")


@pytest.fixture
def pod_spec(statefulset: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = statefulset["spec"]["template"]["spec"]
    return spec


@pytest.fixture
def worker(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    assert isinstance(container, dict)
    return container


@pytest.fixture
def live() -> Iterator[LiveWorker]:
    lw = LiveWorker()
    try:
        yield lw
    finally:
        lw.stop()


def test_the_manifests_hold_a_whole_deployment() -> None:
    kinds = Counter(o["kind"] for _, o in OBJECTS)
    assert kinds == {
        "ConfigMap": 1,
        "Secret": 2,
        "Service": 1,
        "StatefulSet": 1,
        "PodDisruptionBudget": 1,
        "PodMonitor": 1,
        "TriggerAuthentication": 1,
        "ScaledObject": 1,
        "FlinkDeployment": 1,
        "PersistentVolumeClaim": 1,
    }
    for path, obj in OBJECTS:
        where = f"{path.relative_to(ROOT)}: {obj['kind']} {obj['metadata']['name']}"
        # Applied into the namespace of the caller's choice, where they find each other.
        assert "namespace" not in obj["metadata"], where
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "shoal", where


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_pass_the_kubernetes_schemas(version: str) -> None:
    core = [o for _, o in OBJECTS if (o["apiVersion"], o["kind"]) not in CUSTOM]
    assert {o["kind"] for o in core} >= {"StatefulSet", "Service", "PodDisruptionBudget"}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)
    # The schemas do catch mistakes: a misspelt field, a wrong type.
    broken = copy.deepcopy(find("StatefulSet"))
    broken["spec"]["servicename"] = broken["spec"].pop("serviceName")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
    broken = copy.deepcopy(find("StatefulSet"))
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "60"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_custom_resources_pass_their_crd_schemas(version: str) -> None:
    custom = [o for _, o in OBJECTS if (o["apiVersion"], o["kind"]) in CUSTOM]
    assert len(custom) == len(CUSTOM)
    for obj in custom:
        crd_validator(CUSTOM[obj["apiVersion"], obj["kind"]]).validate(obj)

    # Embedded core objects, validated as such.
    flink = find("FlinkDeployment")
    validate_pod_spec(flink["spec"]["podTemplate"]["spec"], version)
    scaled = find("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h"},
        "spec": {
            "scaleTargetRef": {k: target[k] for k in ("apiVersion", "kind", "name")},
            "maxReplicas": scaled["spec"]["maxReplicaCount"],
            "behavior": scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
        },
    }
    kubernetes_validate.validate(hpa, version, strict=True)

    # The kafka trigger's metadata and authentication parameters are the scaler's own.
    kafka = crd_validator("keda-kafka-trigger.json")
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "kafka"
        kafka.validate(trigger["metadata"])
    parameter = jsonschema.Draft202012Validator(kafka.schema["$defs"]["authParameter"])
    for ref in find("TriggerAuthentication")["spec"]["secretTargetRef"]:
        parameter.validate(ref["parameter"])

    # KEDA refuses min > max (a CEL rule of the CRD).
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]

    # The schemas do catch mistakes.
    broken = copy.deepcopy(scaled)
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        crd_validator("scaledobject.json").validate(broken)
    with pytest.raises(jsonschema.ValidationError):
        kafka.validate({**scaled["spec"]["triggers"][0]["metadata"], "sasl": "SCRAM-SHA-512"})
    broken = copy.deepcopy(find("PodMonitor"))
    broken["spec"]["podMetricsEndpoints"][0]["bearerToken"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        crd_validator("podmonitor.json").validate(broken)


def test_images_are_the_described_ones_at_the_project_version(worker: dict[str, Any]) -> None:
    assert worker["image"] == f"{IMAGES['shoal']['name']}:{VERSION}"
    # The image's entrypoint runs; the manifest passes only its arguments.
    assert "command" not in worker
    flink = find("FlinkDeployment")
    assert flink["spec"]["image"] == f"{IMAGES['shoal-flink']['name']}:{VERSION}"


def test_worker_arguments_parse_with_shoal_run(worker: dict[str, Any]) -> None:
    ctx = parse_run(worker["args"])
    params = ctx.params
    job = load_job(params["job_spec"])
    assert job.name == "qoe"
    bindings = Bindings.for_job(job, params["binds"])
    assert bindings.sources == {"playback": "playback"}
    assert bindings.dead_letters.startswith(f"{params['group']}.")  # under the job's ACL prefix
    assert params["guarantee"] == "exactly_once"
    assert params["state"] == "rocksdb"
    assert params["engine"] == "native"
    # One worker per pod: the pod is the unit Kubernetes restarts and scales.
    assert params["workers"] == 1
    # The id comes from the pod's name, never from an argument shared by all pods.
    assert params["worker_id"] is None


def test_every_variable_a_pod_gets_is_one_shoal_reads(worker: dict[str, Any]) -> None:
    flink = find("FlinkDeployment")["spec"]["podTemplate"]["spec"]["containers"][0]
    run_variables = set()
    for param in run.params:
        envvar = getattr(param, "envvar", None)
        run_variables.update([envvar] if isinstance(envvar, str) else envvar or [])
    empty = load_settings({})
    for container, reads_cli in ((worker, True), (flink, False)):
        env = container_env(container, "shoal-qoe-0")
        for name, value in env.items():
            by_settings = load_settings({name: value}) != empty
            by_run = reads_cli and name in run_variables
            assert by_settings or by_run, f"{container['name']}: nothing in Shoal reads {name}"
    assert "SHOAL_HTTP_TOKEN" in run_variables


@pytest.mark.parametrize("pod", ["shoal-qoe-0", "shoal-qoe-11"])
def test_the_pod_name_is_the_worker_id_and_its_state_is_on_its_volume(
    statefulset: dict[str, Any], worker: dict[str, Any], pod: str
) -> None:
    assert pod.rpartition("-")[0] == statefulset["metadata"]["name"]
    settings = load_settings(container_env(worker, pod))
    params = parse_run(worker["args"]).params
    assert worker_id(settings, params["worker_id"]) == pod
    # No slot suffix: --http's port is not shifted as it is for --workers.
    assert slot_of(pod) is None
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    (state_mount,) = [m for m in worker["volumeMounts"] if m["name"] in claims]
    assert state_mount["mountPath"] == IMAGES["shoal"]["home"] == str(settings.home)
    # What RunConfig hands the RocksDB backend: the state folder, then the worker id.
    assert (settings.state_dir / pod).is_relative_to(state_mount["mountPath"])
    assert not state_mount.get("readOnly", False)


def test_http_port_probes_scrape_and_token_agree(
    statefulset: dict[str, Any], worker: dict[str, Any]
) -> None:
    params = parse_run(worker["args"]).params
    host, port = parse_address(params["http"])
    assert host == "0.0.0.0"  # reachable by the kubelet and Prometheus
    (http,) = [p for p in worker["ports"] if p["containerPort"] == port]
    assert port == IMAGES["shoal"]["http_port"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = worker[probe]["httpGet"]
        assert get["port"] in (http["name"], port) and get["path"] == "/health", probe
    service = find("Service", statefulset["spec"]["serviceName"])
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [http["name"]]
    (endpoint,) = find("PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == http["name"]
    assert endpoint["path"] == "/metrics"
    assert not endpoint.get("honorLabels")  # Shoal's own label is shoal_job, not job
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    assert (credentials["name"], credentials["key"]) == secret_ref(worker, "SHOAL_HTTP_TOKEN")
    # The placeholder cannot go live; a real token (openssl rand -hex 32) can.
    placeholder = container_env(worker, "shoal-qoe-0")["SHOAL_HTTP_TOKEN"]
    with pytest.raises(ConfigError, match="at least 32 are needed"):
        ServiceConfig(host=host, port=port, token=placeholder)
    assert ServiceConfig(host=host, port=port, token=TOKEN).token == TOKEN


def test_probe_and_scrape_paths_answer_on_the_worker_service(
    worker: dict[str, Any], live: LiveWorker
) -> None:
    port = parse_address(parse_run(worker["args"]).params["http"])[1]
    app = make_app(WorkerHandle(live.worker), CollectorRegistry(auto_describe=False), TOKEN)
    client = TestClient(app, base_url=f"http://10.1.2.3:{port}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # The kubelet sends no token.
        answer = client.get(worker[probe]["httpGet"]["path"])
        assert answer.status_code == 200, (probe, answer.text)
        assert answer.json() == {"status": "ok"}
    (endpoint,) = find("PodMonitor")["spec"]["podMetricsEndpoints"]
    assert client.get(endpoint["path"]).status_code == 401
    scraped = client.get(endpoint["path"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'shoal_records_read_total{shoal_job="clicks",worker=""}' in scraped.text


def test_kafka_settings_load_through_the_client_config_builder(
    pod_spec: dict[str, Any],
    worker: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mounts = mount_files(pod_spec, worker, tmp_path)
    params = parse_run(worker["args"]).params
    (config_arg,) = [a for a in worker["args"] if a.startswith("--kafka-config")]
    config_path = config_arg.partition("=")[2]
    properties = relocate(config_path, mounts).read_text()
    # The password is the Secret's `password` key alone (KEDA reads it too), never a copy.
    assert "password" not in properties
    env = container_env(worker, "shoal-qoe-0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = parse_run(with_kafka_config(worker["args"], relocate(config_path, mounts)))
    with ctx:
        client = resolve_client(params["bootstrap"])
    kafka = secret_data(secret_ref(worker, "SHOAL_KAFKA_SASL_PASSWORD")[0])
    assert client.bootstrap == env["SHOAL_BOOTSTRAP"]
    assert client.properties["security.protocol"] == "SASL_SSL"
    assert client.properties["sasl.username"] == kafka["username"]
    assert client.properties["sasl.password"] == kafka["password"]
    ca = client.properties["ssl.ca.location"]
    assert relocate(ca, mounts).read_text() == kafka["ca.pem"]
    assert client.secured


def test_the_scaler_watches_the_workers_group_and_input(
    statefulset: dict[str, Any], pod_spec: dict[str, Any], worker: dict[str, Any], tmp_path: Path
) -> None:
    scaled = find("ScaledObject")
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "StatefulSet",
        statefulset["metadata"]["name"],
    )
    assert target["envSourceContainerName"] == worker["name"]
    # The HPA owns the count: re-applying the StatefulSet must not reset it.
    assert "replicas" not in statefulset["spec"]

    params = parse_run(worker["args"]).params
    job = load_job(params["job_spec"])
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == (params["group"] or job.name)
    assert meta["topic"] in Bindings.for_job(job, params["binds"]).sources.values()
    env = container_env(worker, "shoal-qoe-0")
    address = meta["bootstrapServersFromEnv"]
    assert load_settings({address: env[address]}).bootstrap == env[address]

    partitions = int(scaled["metadata"]["annotations"]["shoal-input-partitions"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert meta["allowIdleConsumers"] == "false"
    assert int(meta["lagThreshold"]) > 0

    # SASL and TLS as the workers' client.properties say.
    mounts = mount_files(pod_spec, worker, tmp_path)
    (config_arg,) = [a for a in worker["args"] if a.startswith("--kafka-config")]
    config_path = config_arg.partition("=")[2]
    props = dict(
        line.split("=", 1)
        for line in relocate(config_path, mounts).read_text().splitlines()
        if line.strip()
    )
    mechanisms = {
        "PLAIN": "plaintext",
        "SCRAM-SHA-256": "scram_sha256",
        "SCRAM-SHA-512": "scram_sha512",
    }
    assert meta["sasl"] == mechanisms[props["sasl.mechanism"]]
    assert meta["tls"] == ("enable" if props["security.protocol"].endswith("SSL") else "disable")

    # One credential, read by the workers and by KEDA alike.
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"] == secret_ref(worker, "SHOAL_KAFKA_SASL_USERNAME")
    assert refs["password"] == secret_ref(worker, "SHOAL_KAFKA_SASL_PASSWORD")
    assert refs["ca"] == mounted_from(props["ssl.ca.location"], mounts)
    for name, key in refs.values():
        assert key in secret_data(name)


def test_names_selectors_and_references_agree(
    statefulset: dict[str, Any], pod_spec: dict[str, Any], worker: dict[str, Any]
) -> None:
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    service = find("Service", statefulset["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS name per pod
    assert labels_select(service["spec"]["selector"], pod_labels)
    selectors = {
        "StatefulSet": statefulset["spec"]["selector"],
        "PodDisruptionBudget": find("PodDisruptionBudget")["spec"]["selector"],
        "PodMonitor": find("PodMonitor")["spec"]["selector"],
    }
    for constraint in pod_spec["topologySpreadConstraints"]:
        selectors["topologySpread"] = constraint["labelSelector"]
    for what, selector in selectors.items():
        assert set(selector) == {"matchLabels"}, what
        assert labels_select(selector["matchLabels"], pod_labels), what
        # Selects this job's pods only, not every Shoal pod of the namespace.
        assert selector["matchLabels"]["app.kubernetes.io/instance"] == "shoal-qoe", what

    volumes = {v["name"] for v in pod_spec["volumes"]}
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    assert not volumes & claims
    for mount in worker["volumeMounts"]:
        assert mount["name"] in volumes | claims, mount["name"]
    for volume in pod_spec["volumes"]:
        if "secret" in volume:
            find("Secret", volume["secret"]["secretName"])
    for source in worker["envFrom"]:
        find("ConfigMap", source["configMapRef"]["name"])
    flink_pod = find("FlinkDeployment")["spec"]["podTemplate"]["spec"]
    for volume in flink_pod["volumes"]:
        if "persistentVolumeClaim" in volume:
            find("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        if "secret" in volume:
            find("Secret", volume["secret"]["secretName"])


def test_pods_run_unprivileged_and_stop_with_a_checkpoint(
    statefulset: dict[str, Any], pod_spec: dict[str, Any], worker: dict[str, Any]
) -> None:
    security = pod_spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == IMAGES["shoal"]["uid"]
    assert security["fsGroup"] == IMAGES["shoal"]["gid"]  # the state volume is writable
    container_security = worker["securityContext"]
    assert container_security["allowPrivilegeEscalation"] is False
    assert container_security["readOnlyRootFilesystem"] is True
    assert container_security["capabilities"]["drop"] == ["ALL"]
    for volume in pod_spec["volumes"]:
        if "secret" in volume:
            # root's files, readable by the worker through its group (fsGroup)
            assert volume["secret"]["defaultMode"] == 0o440
    # No SHOAL_<SERVICE>_PORT variables from Services named shoal-... (SHOAL_KAFKA_* are
    # Kafka client settings), and no API token the worker does not use.
    assert pod_spec["enableServiceLinks"] is False
    assert pod_spec["automountServiceAccountToken"] is False
    for kind in ("requests", "limits"):
        assert set(worker["resources"][kind]) >= {"cpu", "memory"}, kind

    # SIGTERM ends with a last checkpoint; the kubelet must wait for it.
    assert pod_spec["terminationGracePeriodSeconds"] >= 60
    params = parse_run(worker["args"]).params

    def window(probe: str) -> int:
        p = worker[probe]
        return int(p["periodSeconds"] * p["failureThreshold"])

    # The worker's own watchdog exits a stuck loop; the kubelet must not kill a worker
    # that is restoring state after a rebalance before that.
    assert window("livenessProbe") > params["stall_timeout"]
    assert window("startupProbe") >= 600  # a first start may restore a large state
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["timeoutSeconds"] > 3, probe  # /health waits up to 3 s for the loop
    pdb = find("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"


def test_flink_deployment_runs_the_launcher_on_the_shoal_flink_image(
    worker: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flink = find("FlinkDeployment")["spec"]
    image = IMAGES["shoal-flink"]
    conf = flink["flinkConfiguration"]
    assert conf["python.executable"] == conf["python.client.executable"] == image["python"]
    assert conf["pipeline.jars"] == (
        f"file://{image['kafka_connector_jar']};file://{image['steps_jar']}"
    )
    assert flink["job"]["jarURI"] == f"local://{image['flink_python_jar']}"
    pom = ET.parse(DEPLOY / "flink" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    flink_version = pom.findtext("m:properties/m:flink.version", namespaces=ns)
    connector = pom.findtext("m:properties/m:flink.kafka.connector.version", namespaces=ns)
    assert flink_version and connector
    connector = connector.replace("${flink.version}", flink_version)
    assert Path(image["kafka_connector_jar"]).name == f"flink-sql-connector-kafka-{connector}.jar"
    assert flink["flinkVersion"] == "v" + flink_version.replace(".", "_")
    assert re.search(
        rf"flink-python-{re.escape(flink_version)}\.\d+\.jar$", image["flink_python_jar"]
    )
    # The image installs apache-flink at the version of its lock, whose jar this names.
    lock = (DEPLOY / "docker" / "requirements-flink.lock").read_text()
    (installed,) = re.findall(r"^apache-flink==(\S+)$", lock, flags=re.MULTILINE)
    assert Path(image["flink_python_jar"]).name == f"flink-python-{installed}.jar"
    assert image["flink_python_jar"].startswith(image["flink_home"] + "/")
    assert image["kafka_connector_jar"].startswith(image["flink_home"] + "/usrlib/")
    assert image["steps_jar"] == image["flink_home"] + "/usrlib/shoal-flink-steps.jar"
    pod = flink["podTemplate"]["spec"]
    assert pod["securityContext"]["fsGroup"] == image["gid"]

    args = flink["job"]["args"]
    assert args[:2] == ["-pym", "runtime.flink.main"]
    parsed = flink_main.parser().parse_args(args[2:])
    job = load_job(parsed.job)
    workers = parse_run(worker["args"]).params
    # The same job, group and input as the native workers (run one engine or the other).
    assert (parsed.job, parsed.group) == (workers["job_spec"], workers["group"])
    assert Bindings.for_job(job, parsed.bind) == Bindings.for_job(job, workers["binds"])
    partitions = int(find("ScaledObject")["metadata"]["annotations"]["shoal-input-partitions"])
    assert flink["job"]["parallelism"] <= partitions

    # The launcher, run as the JobManager runs it: address from SHOAL_BOOTSTRAP, settings
    # from the mounted client.properties, user and password from the Secret.
    (container,) = pod["containers"]
    assert container["name"] == "flink-main-container"
    # The operator's native mode starts kubernetes.entry.path, by default Flink's
    # /docker-entrypoint.sh: the image's own entrypoint is there.
    assert "command" not in container and "args" not in container
    assert "kubernetes.entry.path" not in conf
    assert image["entrypoint"] == "/docker-entrypoint.sh"
    mounts = mount_files(pod, container, tmp_path)
    env = container_env(container, "shoal-qoe-flink-jobmanager")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ran: list[FlinkOptions] = []
    monkeypatch.setattr(
        "runtime.flink.submit.run_on_flink",
        lambda job, bindings, options, **_: ran.append(options),
    )
    flink_main.main(with_kafka_config(args[2:], relocate(parsed.kafka_config, mounts)))
    (options,) = ran
    kafka = secret_data(secret_ref(container, "SHOAL_KAFKA_SASL_PASSWORD")[0])
    assert options.bootstrap == env["SHOAL_BOOTSTRAP"]
    assert options.group == workers["group"]
    assert options.from_cluster
    props = options.kafka_properties
    assert props["security.protocol"] == "SASL_SSL"
    assert (props["sasl.username"], props["sasl.password"]) == (
        kafka["username"],
        kafka["password"],
    )
    assert relocate(props["ssl.ca.location"], mounts).read_text() == kafka["ca.pem"]


def test_the_flink_launcher_needs_an_address_from_somewhere() -> None:
    with pytest.raises(ConfigError, match="no Kafka address"):
        flink_main.main(["--job", "jobs.qoe:job"])
