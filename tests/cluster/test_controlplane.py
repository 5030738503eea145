"""The local control plane behaves like Kubernetes where the operator relies on it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import LocalCluster, wait_for

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


def job_condition(cluster: LocalCluster, namespace: str, name: str, kind: str) -> bool:
    conditions = cluster.batch.read_namespaced_job(name, namespace).status.conditions or []
    return any(c.type == kind and c.status == "True" for c in conditions)


def pods_of(cluster: LocalCluster, namespace: str, job_name: str) -> list[Any]:
    return list(
        cluster.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items
    )


@pytest.fixture
def inputs(cluster: LocalCluster, namespace: str) -> str:
    cluster.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), data={"greeting": base64.b64encode(b"hello").decode()}),
    )
    cluster.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"target": "world"})
    )
    return namespace


def test_a_crd_with_a_status_subresource_is_created_patched_and_its_status_updated(
    cluster: LocalCluster, namespace: str
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


def test_a_job_running_a_local_command_completes_with_its_termination_message(
    cluster: LocalCluster, inputs: str
) -> None:
    script = 'echo "$GREETING $(cat $NODE_AGENT_POD_ROOT/etc/conf/target)" > $NODE_AGENT_POD_ROOT/dev/termination-log'
    cluster.batch.create_namespaced_job(inputs, job("ok", script))
    wait_for("Job ok to complete", lambda: job_condition(cluster, inputs, "ok", "Complete"))
    (pod,) = pods_of(cluster, inputs, "ok")
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded"
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert terminated.message.strip() == "hello world"
    assert terminated.started_at is not None and terminated.finished_at is not None


def test_a_failing_job_fails_after_its_backoff_limit(cluster: LocalCluster, inputs: str) -> None:
    cluster.batch.create_namespaced_job(inputs, job("bad", "echo dying >&2; exit 3", backoffLimit=1))
    wait_for("Job bad to fail", lambda: job_condition(cluster, inputs, "bad", "Failed"), timeout=90)
    pods = pods_of(cluster, inputs, "bad")
    assert len(pods) == 2, "backoffLimit 1 means one retry"
    for pod in pods:
        terminated = pod.status.container_statuses[0].state.terminated
        assert pod.status.phase == "Failed" and terminated.exit_code == 3 and terminated.reason == "Error"
    conditions = cluster.batch.read_namespaced_job("bad", inputs).status.conditions
    assert any(c.type == "Failed" and c.reason == "BackoffLimitExceeded" for c in conditions)


def test_a_termination_message_is_truncated_and_falls_back_to_logs(cluster: LocalCluster, inputs: str) -> None:
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


def test_deleting_an_owner_deletes_the_job_it_owns(cluster: LocalCluster, inputs: str) -> None:
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


def test_a_pod_past_its_active_deadline_is_killed_and_reported(cluster: LocalCluster, inputs: str) -> None:
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


def pod_named(name: str, image: str = "local/exec", **container: Any) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="main", image=image, command=["sleep", "300"], **container)],
        ),
    )


def waiting_reason(cluster: LocalCluster, namespace: str, name: str) -> str | None:
    statuses = cluster.core.read_namespaced_pod(name, namespace).status.container_statuses
    waiting = statuses[0].state.waiting if statuses else None
    return waiting.reason if waiting else None


def condition_of(cluster: LocalCluster, namespace: str, name: str, kind: str) -> Any:
    conditions = cluster.core.read_namespaced_pod(name, namespace).status.conditions or []
    return next((c for c in conditions if c.type == kind), None)


def test_an_unmapped_image_fails_to_pull_and_backs_off_like_a_kubelet(cluster: LocalCluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_named("nope", image="example.com/unknown:1"))
    seen = set()

    def backing_off() -> bool:
        seen.add(waiting_reason(cluster, namespace, "nope"))
        return "ImagePullBackOff" in seen

    wait_for("ImagePullBackOff", backing_off, timeout=30, interval=0.1)
    assert "ErrImagePull" in seen, "the pull fails first, then backs off"
    statuses = cluster.core.read_namespaced_pod("nope", namespace).status.container_statuses
    assert 'Back-off pulling image "example.com/unknown:1"' in statuses[0].state.waiting.message
    assert cluster.core.read_namespaced_pod("nope", namespace).status.phase == "Pending"


def test_an_image_reference_that_does_not_parse_waits_in_invalid_image_name(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_named("bad", image="example.com/Upper/Case:1"))
    wait_for("InvalidImageName", lambda: waiting_reason(cluster, namespace, "bad") == "InvalidImageName", timeout=30)


def test_a_missing_secret_volume_waits_in_container_creating_with_failed_mount_events_until_it_exists(
    cluster: LocalCluster, namespace: str
) -> None:
    pod = pod_named("mount", volume_mounts=[client.V1VolumeMount(name="creds", mount_path="/creds")])
    pod.spec.volumes = [client.V1Volume(name="creds", secret=client.V1SecretVolumeSource(secret_name="later"))]
    cluster.core.create_namespaced_pod(namespace, pod)

    def failed_mount() -> list[Any]:
        return [
            e
            for e in cluster.events(namespace)
            if e.reason == "FailedMount" and e.involved_object.name == "mount" and e.type == "Warning"
        ]

    (event,) = wait_for("a FailedMount event", failed_mount, timeout=30)
    assert event.message == 'MountVolume.SetUp failed for volume "creds" : secret "later" not found'
    assert event.involved_object.uid == cluster.core.read_namespaced_pod("mount", namespace).metadata.uid
    assert waiting_reason(cluster, namespace, "mount") == "ContainerCreating"
    assert condition_of(cluster, namespace, "mount", "PodReadyToStartContainers").status == "False"
    wait_for("the event to count repeats", lambda: (failed_mount()[0].count or 0) > 1, timeout=30)
    cluster.core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="later"), string_data={"k": "v"})
    )
    wait_for(
        "the pod to start once the Secret exists",
        lambda: cluster.core.read_namespaced_pod("mount", namespace).status.phase == "Running",
        timeout=30,
    )
    assert condition_of(cluster, namespace, "mount", "PodReadyToStartContainers").status == "True"


def test_a_missing_secret_key_in_the_environment_is_a_create_container_config_error(
    cluster: LocalCluster, inputs: str
) -> None:
    env = [
        client.V1EnvVar(
            name="X", value_from=client.V1EnvVarSource(secret_key_ref=client.V1SecretKeySelector(name="s", key="nokey"))
        )
    ]
    cluster.core.create_namespaced_pod(inputs, pod_named("cfg", env=env))
    wait_for(
        "CreateContainerConfigError",
        lambda: waiting_reason(cluster, inputs, "cfg") == "CreateContainerConfigError",
        timeout=30,
    )
    statuses = cluster.core.read_namespaced_pod("cfg", inputs).status.container_statuses
    assert statuses[0].state.waiting.message == f"couldn't find key nokey in Secret {inputs}/s"


def test_a_pod_that_fits_no_node_is_unschedulable(cluster: LocalCluster, namespace: str) -> None:
    big = client.V1ResourceRequirements(requests={"cpu": "100000"})
    cluster.core.create_namespaced_pod(namespace, pod_named("huge", resources=big))
    scheduled = wait_for(
        "PodScheduled=False",
        lambda: (
            (c := condition_of(cluster, namespace, "huge", "PodScheduled")) is not None and c.status == "False" and c
        ),
        timeout=30,
    )
    assert scheduled.reason == "Unschedulable" and "Insufficient cpu" in scheduled.message
    assert not cluster.core.read_namespaced_pod("huge", namespace).spec.node_name


def test_downward_api_files_and_paths_in_the_environment_are_under_the_pod_root(
    cluster: LocalCluster, namespace: str
) -> None:
    """An annotation projected as a file, and environment values that name paths inside mounts rewritten to the
    pod root, so a process finds its files without knowing about the agent."""
    script = 'printf "%s|%s|%s" "$(cat "$ARGS_FILE")" "$HOME" "$NODE_AGENT_POD_ROOT" > "$SCHEDEXEC_TERMINATION_LOG"'
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="downward", annotations={"example.com/args": '{"a":"é"}'}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="main",
                    image="local/exec",
                    command=["/bin/sh", "-c", script],
                    env=[
                        client.V1EnvVar(name="ARGS_FILE", value="/var/run/args/args.json"),
                        client.V1EnvVar(name="HOME", value="/tmp"),
                    ],
                    volume_mounts=[
                        client.V1VolumeMount(name="args", mount_path="/var/run/args"),
                        client.V1VolumeMount(name="tmp", mount_path="/tmp"),
                    ],
                )
            ],
            volumes=[
                client.V1Volume(
                    name="args",
                    downward_api=client.V1DownwardAPIVolumeSource(
                        items=[
                            client.V1DownwardAPIVolumeFile(
                                path="args.json",
                                field_ref=client.V1ObjectFieldSelector(
                                    field_path="metadata.annotations['example.com/args']"
                                ),
                            )
                        ]
                    ),
                ),
                client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource()),
            ],
        ),
    )
    cluster.core.create_namespaced_pod(namespace, pod)
    done = wait_for(
        "the pod to succeed",
        lambda: (p := cluster.core.read_namespaced_pod("downward", namespace)).status.phase == "Succeeded" and p,
        timeout=30,
    )
    args, home, root = done.status.container_statuses[0].state.terminated.message.split("|")
    assert args == '{"a":"é"}'
    assert home == f"{root}/tmp"
