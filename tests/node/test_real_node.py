"""schedexec on a real node: runs in containers from the repository's images, the chart's operator and API as pods."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schedexec import manifests
from schedexec_devcluster.__main__ import CHART_NAMESPACE
from tests.node.support import api_ca, api_pods, execution, operator_pods, run, running_operator_pod
from tests.support import REPO, LocalCluster, client_token, rest_countdown, wait_for

sys.path.insert(0, str(REPO / "tests" / "components"))
import testcomponent

pytestmark = pytest.mark.node
EXAMPLES = REPO / "examples"
RUN_AS_USER = 65532


def run_example(cluster: LocalCluster, namespace: str, path: Path, url: str, **overrides: Any) -> dict[str, Any]:
    """Apply an example manifest as written, pointed at this test's remote services."""
    body = yaml.safe_load(path.read_text().replace("http://127.0.0.1:18765", url))
    body["spec"]["args"].update(overrides)
    return run(cluster, {**body, "metadata": {**body["metadata"], "namespace": namespace}})


def test_the_node_is_ready_on_containerd_2(node_cluster: LocalCluster) -> None:
    (node,) = node_cluster.core.list_node().items
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
    assert not [t for t in node.spec.taints or [] if t.effect == "NoSchedule"], "the not-ready taint was lifted"


def test_the_operator_runs_as_a_pod_with_its_service_account(node_cluster: LocalCluster) -> None:
    pod = running_operator_pod(node_cluster)
    assert pod.spec.service_account_name == "schedexec"
    assert [c.name for c in pod.spec.containers] == ["operator"], "the REST API runs in a pod of its own"
    images = {c.image_id for c in pod.status.container_statuses}
    assert all(i for i in images), "the kubelet reports the images it ran"
    logs = node_cluster.kubectl("logs", "-n", CHART_NAMESPACE, pod.metadata.name, "-c", "operator").stdout
    assert logs.strip(), "kubectl logs reaches the kubelet (webhook authentication, serving certificate)"


def test_the_rest_api_runs_as_a_pod_with_its_own_service_account(node_cluster: LocalCluster) -> None:
    """Its own pod and identity: the kubelet mounts the API ServiceAccount's token, the operator's is out of
    reach; the API reads it in-cluster (its cache is ready, so its list/watch of executions works)."""
    pods = wait_for("a Ready API pod", lambda: [p for p in api_pods(node_cluster) if _ready(p)], timeout=120)
    (pod,) = pods
    assert pod.spec.service_account_name == "schedexec-api"
    assert [c.name for c in pod.spec.containers] == ["api"]
    whoami = node_cluster.kubectl(
        "exec",
        "-n",
        CHART_NAMESPACE,
        pod.metadata.name,
        "--",
        "python",
        "-c",
        "import base64, json; t = open('/var/run/secrets/kubernetes.io/serviceaccount/token').read();"
        " print(json.loads(base64.urlsafe_b64decode(t.split('.')[1] + '==').decode())['sub'])",
    )
    assert whoami.stdout.strip() == f"system:serviceaccount:{CHART_NAMESPACE}:schedexec-api"


def _ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and all(c.ready for c in pod.status.container_statuses or [])


@pytest.fixture
def shop(node_cluster: LocalCluster, node_namespace: str) -> str:
    node_cluster.kubectl("apply", "-n", node_namespace, "-f", str(EXAMPLES / "shop/credentials.yaml"))
    return node_namespace


def test_shop_select_model_and_get_meta_model_from_the_example_image(
    node_cluster: LocalCluster, shop: str, remote: str
) -> None:
    status = run_example(node_cluster, shop, EXAMPLES / "shop/select-model.yaml", remote)
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"books": "Books", "music": "Music", "garden": "Garden"}
    status = run_example(node_cluster, shop, EXAMPLES / "shop/get-meta-model.yaml", remote)
    assert status["result"]["out"]["properties"]["isbn"] == {"type": "string"}


def test_shop_verify_credentials_reads_the_mounted_secret(node_cluster: LocalCluster, shop: str, remote: str) -> None:
    status = run_example(node_cluster, shop, EXAMPLES / "shop/verify-credentials.yaml", remote)
    assert status["result"] == {"verified": True, "account": "demo-shop"}
    assert "demo-key" not in yaml.safe_dump(status)


def test_sandbox_polling_sequence_in_containers(node_cluster: LocalCluster, node_namespace: str, remote: str) -> None:
    status = run_example(node_cluster, node_namespace, EXAMPLES / "sandbox/detonate.yaml", remote, pollSeconds=1)
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"jobId": "det-1", "verdict": "benign", "score": 3}
    assert [r["outcome"] for r in status["history"]] == ["Scheduled", "Scheduled", "Done"]


def test_rate_limited_example(node_cluster: LocalCluster, node_namespace: str, remote: str) -> None:
    status = run_example(node_cluster, node_namespace, EXAMPLES / "ratelimited/fetch.yaml", remote, baseDelaySeconds=1)
    assert status["phase"] == "Succeeded", status
    assert status["result"]["attempts"] == 3


def test_a_run_is_confined_as_the_operator_promises(node_cluster: LocalCluster, node_namespace: str) -> None:
    """Seen from inside the container: non-root, read-only root, no API credentials, no capabilities."""
    status = run(node_cluster, execution("inspect", node_namespace, method="inspect"))
    assert status["phase"] == "Succeeded", status
    seen = status["result"]
    assert seen["uid"] == RUN_AS_USER and seen["gid"] == RUN_AS_USER
    assert seen["rootWritable"] is False, "the root filesystem is read-only"
    assert seen["tmpWritable"] is True
    assert seen["serviceAccountToken"] is False, "no API credentials are mounted"
    assert seen["capabilities"] == "0000000000000000"
    assert seen["noNewPrivileges"] is True
    assert seen["home"] == "/tmp"


def test_a_crash_says_where_its_log_is_and_its_job_is_kept_for_it(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    status = run(node_cluster, execution("crash", node_namespace, method="crash"))
    assert status["phase"] == "Failed", status
    assert "crashing on purpose" not in status["error"]["message"], "component output stays out of status"
    job = manifests.job_name("crash", node_cluster.execution(node_namespace, "crash")["metadata"]["uid"], 1)
    assert f"kubectl logs -n {node_namespace} job/{job}" in status["error"]["message"]
    logs = node_cluster.kubectl("logs", "-n", node_namespace, f"job/{job}").stdout
    assert "crashing on purpose" in logs, "the Job and its pod are kept, so the log is there"


CANARY = "canary-5e9a41c2d7"


def test_a_component_that_prints_its_credential_and_crashes_leaks_it_nowhere(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    """The canary, raw and base64-encoded, in the run's own log only: not in status, Events, the operator's
    logs or the REST API's answers."""
    encoded = base64.b64encode(CANARY.encode()).decode()
    node_cluster.kubectl(
        "create", "secret", "generic", "blurt", "-n", node_namespace, f"--from-literal=apiKey={CANARY}"
    )
    body = execution("blurt", node_namespace, method="blurt", credentialsSecretRef={"name": "blurt"})
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    job = manifests.job_name("blurt", node_cluster.execution(node_namespace, "blurt")["metadata"]["uid"], 1)
    assert CANARY in node_cluster.kubectl("logs", "-n", node_namespace, f"job/{job}").stdout, "it did print it"
    seen = {
        "status": json.dumps(node_cluster.execution(node_namespace, "blurt")),
        "events": node_cluster.kubectl("get", "events", "-n", node_namespace, "-o", "json").stdout,
        "operator logs": node_cluster.kubectl(
            "logs", "-n", CHART_NAMESPACE, running_operator_pod(node_cluster).metadata.name, "--all-containers"
        ).stdout,
        "REST API logs": "".join(
            node_cluster.kubectl("logs", "-n", CHART_NAMESPACE, pod.metadata.name, "--all-containers").stdout
            for pod in api_pods(node_cluster)
        ),
        "REST API": rest_result(node_cluster, node_namespace, node_cluster.execution(node_namespace, "blurt")),
    }
    for where, text in seen.items():
        assert CANARY not in text and encoded not in text, f"the credential leaked into {where}"


def test_a_run_past_its_deadline_is_killed(node_cluster: LocalCluster, node_namespace: str) -> None:
    started = time.monotonic()
    body = execution("slow", node_namespace, method="sleep", args={"seconds": 600}, runTimeoutSeconds=5)
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    assert status["error"]["reason"] == "RunTimedOut"
    assert time.monotonic() - started < 90


def test_a_wrong_image_fails_fast_and_names_the_image(node_cluster: LocalCluster, node_namespace: str) -> None:
    image = "ghcr.io/acme/does-not-exist:1.0"
    body = execution("wrong-image", node_namespace, method="anything", runTimeoutSeconds=600)
    body["spec"]["component"]["image"] = image
    started = time.monotonic()
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    assert status["error"]["reason"] == "ImagePullFailed"
    assert image in status["error"]["message"]
    assert time.monotonic() - started < 60, "after the grace (5 s here), not after runTimeoutSeconds (600 s)"


def test_a_missing_secret_fails_fast(node_cluster: LocalCluster, node_namespace: str) -> None:
    body = execution("no-secret", node_namespace, method="files", runTimeoutSeconds=600)
    body["spec"]["credentialsSecretRef"] = {"name": "not-there"}
    started = time.monotonic()
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    assert status["error"]["reason"] == "ConfigError"
    assert 'secret "not-there" not found' in status["error"]["message"], "the kubelet's own words"
    assert time.monotonic() - started < 60, "grace (5 s here) + the operator's event recheck, not runTimeoutSeconds"


def test_large_args_reach_the_container_intact(node_cluster: LocalCluster, node_namespace: str) -> None:
    """More than an environment variable can carry (128 KiB per string)."""
    args = {"blob": "x" * (150 * 1024)}
    status = run(node_cluster, execution("large-args", node_namespace, method="digest", args=args))
    assert status["phase"] == "Succeeded", status
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":")).encode()
    assert status["result"] == {
        "bytes": len(canonical),
        "sha256": hashlib.sha256(canonical).hexdigest(),
        "home": "/tmp",
    }


def test_the_operator_pod_deleted_mid_sequence_loses_and_repeats_nothing(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    before = running_operator_pod(node_cluster)
    body = execution("survivor", node_namespace, method="countdown", args={"left": 5, "every": 1})
    node_cluster.apply(body)
    wait_for(
        "run 2", lambda: (node_cluster.execution(node_namespace, "survivor").get("status") or {}).get("runs", 0) >= 2
    )
    node_cluster.core.delete_namespaced_pod(before.metadata.name, CHART_NAMESPACE, grace_period_seconds=0)
    after = running_operator_pod(node_cluster)
    assert after.metadata.name != before.metadata.name, "the Deployment replaced the pod"
    status = node_cluster.wait_finished(node_namespace, "survivor", timeout=180)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"seen": [1, 2, 3, 4, 5, 6]}
    assert [r["index"] for r in status["history"]] == [1, 2, 3, 4, 5, 6]
    assert len(operator_pods(node_cluster)) == 1


def test_the_rest_api_through_the_charts_service(node_cluster: LocalCluster, node_namespace: str) -> None:
    running_operator_pod(node_cluster)
    with rest_client(node_cluster, node_namespace) as http:
        rest_countdown(http, node_namespace)


@contextlib.contextmanager
def rest_client(cluster: LocalCluster, namespace: str) -> Iterator[httpx.Client]:
    """A client of the chart's REST API through its Service (HTTPS, the tier's certificate), with a token for
    the API's audience that may use `namespace`."""
    services = cluster.core.list_namespaced_service(CHART_NAMESPACE).items
    (service,) = [s for s in services if s.metadata.name.endswith("-api")]
    (port,) = [p.port for p in service.spec.ports]
    url = f"https://{service.spec.cluster_ip}:{port}"  # kube-proxy's rules carry it to the pod
    trusted = ssl.create_default_context(cafile=str(api_ca(cluster)))
    trusted.check_hostname = False  # the certificate names the Service's DNS names, the client dials its IP
    token = client_token(cluster, namespace)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, verify=trusted) as http:
        wait_for("the API behind its Service", lambda: _healthy(http), timeout=60)
        yield http


def rest_result(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> str:
    """The REST API's answer for the result of execution `body`, through the chart's Service."""
    with rest_client(cluster, namespace) as http:
        answer = http.get(f"/v2/exec/result/{body['metadata']['uid']}")
        assert answer.status_code == 400, answer.text
        return answer.text


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_a_900_kib_schema_is_returned_whole_through_the_pods_log(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    """getMetaModel of a wide table: far over the 4 KiB termination message, under the 1 MiB default limit."""
    body = execution("wide", node_namespace, method="getMetaModel", module="wide", args={"kib": 900})
    status = run(node_cluster, body)
    assert status["phase"] == "Succeeded", status
    assert "result" not in status, "the status stays small"
    ref = status["resultRef"]
    expected = json.dumps(testcomponent.wide_schema(900), separators=(",", ":"))
    assert ref["bytes"] == len(expected) and ref["sha256"] == hashlib.sha256(expected.encode()).hexdigest()
    path = "{.data.result\\.json}"
    shown = node_cluster.kubectl("get", "configmap", ref["configMap"], "-n", node_namespace, "-o", f"jsonpath={path}")
    assert json.loads(shown.stdout) == testcomponent.wide_schema(900), "kubectl reads the whole result"
    node_cluster.kubectl("delete", "scheduledexecution", "wide", "-n", node_namespace, "--wait=true")
    wait_for(
        "the result's ConfigMap to be deleted with its execution",
        lambda: (
            node_cluster.kubectl("get", "configmap", ref["configMap"], "-n", node_namespace, check=False).returncode
            != 0
        ),
        timeout=60,
    )


def test_a_result_over_the_limit_fails_result_too_large_and_says_the_limit(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    body = execution("wider", node_namespace, method="getMetaModel", module="wide", args={"kib": 1200})
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    assert status["error"]["reason"] == "ResultTooLarge"
    assert "the limit is 1048576 bytes" in status["error"]["message"]
