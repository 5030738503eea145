"""The local control plane behaves like Kubernetes where the operator relies on it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.cluster

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.schedexec.io"},
    "spec": {
        "group": "test.schedexec.io",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "properties": {"seen": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}


def job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "local/exec",
                            "command": ["/bin/sh", "-c", script],
                            "env": [
                                {"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "s", "key": "greeting"}}}
                            ],
                            "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}],
                        }
                    ],
                    "volumes": [{"name": "conf", "configMap": {"name": "c"}}],
                }
            },
        },
    }


def job_condition(cluster: Cluster, namespace: str, name: str, kind: str) -> bool:
    conditions = cluster.batch.read_namespaced_job(name, namespace).status.conditions or []
    return any(c.type == kind and c.status == "True" for c in conditions)


def pods_of(cluster: Cluster, namespace: str, job_name: str) -> list[Any]:
    return list(
        cluster.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items
    )


@pytest.fixture
def inputs(cluster: Cluster, namespace: str) -> str:
    cluster.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), data={"greeting": base64.b64encode(b"hello").decode()}),
    )
    cluster.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"target": "world"})
    )
    return namespace


def test_a_crd_with_a_status_subresource_is_created_patched_and_its_status_updated(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.test.schedexec.io", "--timeout=30s")
    api = ("test.schedexec.io", "v1", namespace, "widgets")
    cluster.custom.create_namespaced_custom_object(
        *api, {"apiVersion": "test.schedexec.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    )
    cluster.custom.patch_namespaced_custom_object(*api, "w", {"spec": {"size": 2}})
    cluster.custom.patch_namespaced_custom_object_status(*api, "w", {"status": {"seen": 2}})
    widget = cluster.custom.get_namespaced_custom_object(*api, "w")
    assert widget["spec"]["size"] == 2 and widget["status"]["seen"] == 2
    cluster.custom.patch_namespaced_custom_object(*api, "w", {"status": {"seen": 99}})
    assert cluster.custom.get_namespaced_custom_object(*api, "w")["status"]["seen"] == 2, "status is a subresource"


def test_a_job_running_a_local_command_completes_with_its_termination_message(cluster: Cluster, inputs: str) -> None:
    script = 'echo "$GREETING $(cat $NODE_AGENT_POD_ROOT/etc/conf/target)" > $NODE_AGENT_POD_ROOT/dev/termination-log'
    cluster.batch.create_namespaced_job(inputs, job("ok", script))
    wait_for("Job ok to complete", lambda: job_condition(cluster, inputs, "ok", "Complete"))
    (pod,) = pods_of(cluster, inputs, "ok")
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded"
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert terminated.message.strip() == "hello world"
    assert terminated.started_at is not None and terminated.finished_at is not None


def test_a_failing_job_fails_after_its_backoff_limit(cluster: Cluster, inputs: str) -> None:
    cluster.batch.create_namespaced_job(inputs, job("bad", "echo dying >&2; exit 3", backoffLimit=1))
    wait_for("Job bad to fail", lambda: job_condition(cluster, inputs, "bad", "Failed"), timeout=90)
    pods = pods_of(cluster, inputs, "bad")
    assert len(pods) == 2, "backoffLimit 1 means one retry"
    for pod in pods:
        terminated = pod.status.container_statuses[0].state.terminated
        assert pod.status.phase == "Failed" and terminated.exit_code == 3 and terminated.reason == "Error"
    conditions = cluster.batch.read_namespaced_job("bad", inputs).status.conditions
    assert any(c.type == "Failed" and c.reason == "BackoffLimitExceeded" for c in conditions)


def test_a_termination_message_is_truncated_and_falls_back_to_logs(cluster: Cluster, inputs: str) -> None:
    script = "head -c 5000 /dev/zero | tr '\\0' x > $NODE_AGENT_POD_ROOT/dev/termination-log"
    cluster.batch.create_namespaced_job(inputs, job("long", script))
    manifest = job("logs", "echo last words; exit 1")
    manifest["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    cluster.batch.create_namespaced_job(inputs, manifest)
    wait_for("Job long", lambda: job_condition(cluster, inputs, "long", "Complete"))
    wait_for("Job logs", lambda: job_condition(cluster, inputs, "logs", "Failed"))
    (long_pod,) = pods_of(cluster, inputs, "long")
    assert len(long_pod.status.container_statuses[0].state.terminated.message) == 4096
    (logs_pod,) = pods_of(cluster, inputs, "logs")
    assert logs_pod.status.container_statuses[0].state.terminated.message.strip() == "last words"


def test_deleting_an_owner_deletes_the_job_it_owns(cluster: Cluster, inputs: str) -> None:
    owner = cluster.core.create_namespaced_config_map(
        inputs, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    manifest = job("owned", "sleep 300")
    manifest["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    cluster.batch.create_namespaced_job(inputs, manifest)
    wait_for("the pod to run", lambda: [p for p in pods_of(cluster, inputs, "owned") if p.status.phase == "Running"])
    cluster.core.delete_namespaced_config_map("owner", inputs)

    def gone() -> bool:
        try:
            cluster.batch.read_namespaced_job("owned", inputs)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for("the garbage collector to delete the Job", gone)
    wait_for("the pod to be killed and deleted", lambda: not pods_of(cluster, inputs, "owned"))


def test_a_pod_past_its_active_deadline_is_killed_and_reported(cluster: Cluster, inputs: str) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="slow"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            active_deadline_seconds=2,
            containers=[client.V1Container(name="main", image="local/exec", command=["sleep", "300"])],
        ),
    )
    cluster.core.create_namespaced_pod(inputs, pod)
    killed = wait_for(
        "the pod to be killed",
        lambda: (p := cluster.core.read_namespaced_pod("slow", inputs)).status.phase == "Failed" and p,
        timeout=30,
    )
    assert killed.status.reason == "DeadlineExceeded"
    assert killed.status.container_statuses[0].state.terminated is not None


def test_an_unmapped_image_leaves_the_pod_pending_with_err_image_pull(cluster: Cluster, namespace: str) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="nope"),
        spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="main", image="example.com/unknown:1")]
        ),
    )
    cluster.core.create_namespaced_pod(namespace, pod)
    waiting = wait_for(
        "ErrImagePull",
        lambda: (
            (s := cluster.core.read_namespaced_pod("nope", namespace).status.container_statuses) and s[0].state.waiting
        ),
        timeout=30,
    )
    assert waiting.reason == "ErrImagePull"
