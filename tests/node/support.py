"""What the node tier's tests share: the test component's image and the chart's operator pod."""

from __future__ import annotations

from typing import Any

from schedexec_devcluster.__main__ import CHART_NAMESPACE
from tests.support import LocalCluster, wait_for

TEST_IMAGE = "ghcr.io/schedexec/test-component:dev"


def operator_pods(cluster: LocalCluster) -> list[Any]:
    pods = cluster.core.list_namespaced_pod(CHART_NAMESPACE, label_selector="app.kubernetes.io/name=schedexec")
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def running_operator_pod(cluster: LocalCluster) -> Any:
    def ready() -> Any:
        pods = [p for p in operator_pods(cluster) if all(c.ready for c in p.status.container_statuses or [False])]
        return pods[0] if len(pods) == 1 and pods[0].status.phase == "Running" else None

    return wait_for("one Running, Ready operator pod", ready, timeout=120)
