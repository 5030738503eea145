"""A run placed by its pod template on a real node (issue 27 item 1, "Done when"): the chart's operator runs an
execution whose spec.podTemplate has a nodeSelector, a toleration, an annotation and env; the run lands on the
labelled, tainted node, tolerates the taint, carries the annotation (its pod read back through the API while it
runs), and the component sees the env (its result). Without the toleration the same run is unschedulable.

The node is shared with the other tests of the tier: its label and taint have keys of this test's own and are
removed in a finally."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from schedexec import manifests, models
from tests.node.support import TEST_IMAGE
from tests.support import LocalCluster, wait_for

pytestmark = pytest.mark.node


@pytest.fixture
def placement(node_cluster: LocalCluster) -> Iterator[tuple[str, str, str]]:
    """The node, labelled `<key>=batch` and tainted `<key>=batch:NoSchedule` (a unique key); both removed after."""
    (node,) = node_cluster.core.list_node().items
    name, key = node.metadata.name, f"placement.schedexec.test/{uuid.uuid4().hex[:8]}"
    node_cluster.kubectl("label", "node", name, f"{key}=batch")
    node_cluster.kubectl("taint", "node", name, f"{key}=batch:NoSchedule")
    try:
        yield name, key, "batch"
    finally:
        node_cluster.kubectl("taint", "node", name, f"{key}:NoSchedule-", check=False)
        node_cluster.kubectl("label", "node", name, f"{key}-", check=False)


def execution(name: str, namespace: str, template: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"component": {"image": TEST_IMAGE}, "podTemplate": template, **spec},
    }


def run_pod(cluster: LocalCluster, namespace: str, name: str) -> Any:
    def running() -> Any:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"{manifests.EXECUTION_LABEL}={name}").items
        return next((p for p in pods if p.spec.node_name and p.status.phase == "Running"), None)

    return wait_for("the run's pod running on a node", running, timeout=120)


def test_a_run_lands_on_the_labelled_tainted_node_with_the_templates_annotation_and_env(
    node_cluster: LocalCluster, node_namespace: str, placement: tuple[str, str, str]
) -> None:
    node, key, value = placement
    template = {
        "metadata": {"annotations": {"example.com/cost-center": "shop-42"}, "labels": {"team": "shop"}},
        "nodeSelector": {key: value},
        "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}],
        "env": [
            {"name": "GREETING", "value": "hello from the pod template"},
            {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
    }
    args = {"names": ["GREETING", "MY_NODE", "HOME"], "seconds": 4}
    node_cluster.apply(execution("placed", node_namespace, template, method="environment", args=args))

    pod = run_pod(node_cluster, node_namespace, "placed")
    assert pod.spec.node_name == node
    assert pod.spec.node_selector == {key: value}
    assert any(t.key == key and t.effect == "NoSchedule" for t in pod.spec.tolerations)
    assert pod.metadata.annotations["example.com/cost-center"] == "shop-42"
    assert manifests.ARGS_ANNOTATION in pod.metadata.annotations, "the args annotation is still there"
    assert pod.metadata.labels["team"] == "shop" and pod.metadata.labels[manifests.RUN_LABEL] == "1"
    assert pod.spec.automount_service_account_token is False
    container = pod.spec.containers[0].security_context
    assert (
        container.read_only_root_filesystem and container.run_as_non_root and not container.allow_privilege_escalation
    )

    status = node_cluster.wait_finished(node_namespace, "placed", timeout=120)["status"]
    assert status["phase"] == models.Phase.SUCCEEDED, status
    assert status["result"] == {"GREETING": "hello from the pod template", "MY_NODE": node, "HOME": "/tmp"}


def test_without_the_toleration_the_same_run_is_unschedulable(
    node_cluster: LocalCluster, node_namespace: str, placement: tuple[str, str, str]
) -> None:
    """The control: the taint is what the toleration overcame."""
    _, key, value = placement
    body = execution("untolerated", node_namespace, {"nodeSelector": {key: value}}, method="environment")
    node_cluster.apply(body)

    def waiting() -> Any:
        current = node_cluster.execution(node_namespace, "untolerated").get("status", {}).get("currentRun") or {}
        reason = (current.get("waiting") or {}).get("reason")
        return reason if reason == "Unschedulable" else None

    wait_for("the run to wait as Unschedulable", waiting, timeout=90)
    body["spec"]["cancel"] = True
    node_cluster.apply(body)
    assert node_cluster.wait_finished(node_namespace, "untolerated")["status"]["phase"] == models.Phase.CANCELLED
