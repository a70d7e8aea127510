"""A :class:`~runtime.chaos.faults.Target` on Kubernetes: delete a StatefulSet's pods.

Untested here: no cluster runs where Shoal's tests run. It is written against the
official ``kubernetes`` client (``pip install 'shoal[chaos]'``): the pods are those
the StatefulSet's label selector matches; a kill deletes one with a grace period of
0 (the kubelet sends SIGKILL), and the StatefulSet recreates it under the same name,
which is the worker's stable id.
"""

from __future__ import annotations

from typing import Any

from runtime.api.errors import ConfigError


class KubernetesTarget:
    """The pods of one StatefulSet (untested here: no cluster).

    Args:
        statefulset: the StatefulSet's name.
        namespace: its namespace.

    Raises:
        ConfigError: the ``kubernetes`` package is not installed, or no cluster
            configuration was found.
    """

    def __init__(self, statefulset: str, namespace: str = "default") -> None:
        try:
            from kubernetes import client, config
        except ImportError:
            raise ConfigError(
                "the Kubernetes target needs the kubernetes package: pip install 'shoal[chaos]'"
            ) from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as exc:
                raise ConfigError(f"no Kubernetes configuration: {exc}") from None
        self.name = statefulset
        self.namespace = namespace
        self.apps: Any = client.AppsV1Api()
        self.core: Any = client.CoreV1Api()
        self.delete_options: Any = client.V1DeleteOptions(grace_period_seconds=0)

    def describe(self) -> str:
        """The StatefulSet."""
        return f"statefulset {self.namespace}/{self.name}"

    def workers(self) -> list[str]:
        """Names of the StatefulSet's running pods."""
        sts = self.apps.read_namespaced_stateful_set(self.name, self.namespace)
        labels = sts.spec.selector.match_labels or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector)
        return sorted(
            p.metadata.name
            for p in pods.items
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
        )

    def kill(self, worker: str) -> None:
        """Delete the pod at once (grace period 0)."""
        self.core.delete_namespaced_pod(worker, self.namespace, body=self.delete_options)
