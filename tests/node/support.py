"""What the node tier's tests share: the test component's image, the chart's operator and API pods, the API's
certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schedexec import models
from schedexec_devcluster.__main__ import CHART_NAMESPACE, CHART_RELEASE
from schedexec_devcluster.images import REGISTRY as PROJECT_IMAGES
from schedexec_devcluster.registry import local_reference
from tests.support import LocalCluster, self_signed_cert, wait_for

TEST_IMAGE = local_reference("ghcr.io/schedexec/test-component:dev")
"""The operator test suite's component, as the node pulls it: from the local registry (registry.py)."""


def operator_pods(cluster: LocalCluster) -> list[Any]:
    pods = cluster.core.list_namespaced_pod(CHART_NAMESPACE, label_selector="app.kubernetes.io/name=schedexec")
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def _all_ready(statuses: list[Any]) -> bool:
    """Every container ready; a pod whose containers have no status yet is not."""
    return bool(statuses) and all(status.ready for status in statuses)


def running_operator_pod(cluster: LocalCluster) -> Any:
    def ready() -> Any:
        pods = [p for p in operator_pods(cluster) if _all_ready(p.status.container_statuses or [])]
        return pods[0] if len(pods) == 1 and pods[0].status.phase == "Running" else None

    return wait_for("one Running, Ready operator pod", ready, timeout=120)


API_TLS_SECRET = "schedexec-api-tls"
"""The kubernetes.io/tls Secret the chart's REST API serves HTTPS with in this tier (api.tls.secretName)."""


def api_ca(cluster: LocalCluster) -> Path:
    """The REST API's self-signed certificate in this tier: what a client trusts."""
    return cluster.plane.state_dir / "api-tls" / "tls.crt"


def create_api_tls_secret(cluster: LocalCluster) -> None:
    """A self-signed serving certificate for the chart's API Service, in the Secret the chart mounts."""
    folder = api_ca(cluster).parent
    folder.mkdir(parents=True, exist_ok=True)
    service = f"{CHART_RELEASE}-api"
    hosts = (f"{service}.{CHART_NAMESPACE}.svc", service, f"{service}.{CHART_NAMESPACE}.svc.cluster.local")
    cert, key = self_signed_cert(folder, hosts)
    cluster.kubectl("create", "namespace", CHART_NAMESPACE)
    cluster.kubectl("create", "secret", "tls", API_TLS_SECRET, "-n", CHART_NAMESPACE, f"--cert={cert}", f"--key={key}")


def api_pods(cluster: LocalCluster) -> list[Any]:
    """The chart's REST API pods (api.mode=deployment: a Deployment of their own)."""
    pods = cluster.core.list_namespaced_pod(CHART_NAMESPACE, label_selector="app.kubernetes.io/name=schedexec-api")
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def execution(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An execution of the test component (TEST_IMAGE) with `spec`."""
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"component": {"image": TEST_IMAGE}, **spec},
    }


def run(cluster: LocalCluster, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Apply `body` and wait until it finished; its status.

    A project image named as users know it (`ghcr.io/schedexec/...`, e.g. in the examples' manifests) runs as the
    node pulls it: from the local registry, under the same path (registry.local_reference).
    """
    component = body["spec"]["component"]
    if component["image"].startswith(f"{PROJECT_IMAGES}/"):
        component["image"] = local_reference(component["image"])
    cluster.apply(body)
    finished = cluster.wait_finished(body["metadata"]["namespace"], body["metadata"]["name"], timeout=timeout)
    return finished["status"]  # type: ignore[no-any-return]
