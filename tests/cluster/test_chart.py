"""The Helm chart: lint, render, apply; and the operator and API working with exactly its RBAC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schedexec import models
from schedexec_devcluster import binaries
from tests.support import REPO, LocalCluster, client_token, free_port, rest_countdown, wait_for

pytestmark = pytest.mark.cluster
CHART = REPO / "charts" / "schedexec"
RELEASE, NAMESPACE = "sx", "schedexec-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-schedexec"


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return binaries.ensure_helm()
    except binaries.BinariesUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"helm is needed for the chart checks: {exc}")
        pytest.skip(f"helm is needed for the chart checks: {exc}")


def render(helm: Path, *values: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [
        str(helm),
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--include-crds",
        "--kube-version",
        binaries.KUBERNETES_VERSION,
    ]
    for value in values:
        command += ["--set-json", value]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_helm_lint_passes(helm: Path) -> None:
    done = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_chart_ships_the_generated_crd(helm: Path) -> None:
    crds = [d for d in documents(render(helm).stdout) if d["kind"] == "CustomResourceDefinition"]
    ours = next(d for d in crds if d["metadata"]["name"] == f"{models.PLURAL}.{models.GROUP}")
    generated = yaml.safe_load((REPO / "crds" / f"{models.GROUP}_{models.PLURAL}.yaml").read_text())
    assert ours["spec"] == generated["spec"]
    assert ours["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_options_render_what_they_promise(helm: Path) -> None:
    default = {d["kind"] for d in documents(render(helm).stdout)}
    assert {"ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Deployment", "Service"} <= default
    with_api = documents(render(helm, "api.enabled=true", "metrics.serviceMonitor.enabled=true").stdout)
    deployment = next(d for d in with_api if d["kind"] == "Deployment")
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["operator", "api"]
    assert any(d["kind"] == "ServiceMonitor" for d in with_api)
    namespaced = documents(render(helm, "rbac.clusterWide=false", 'watchNamespaces=["a","b"]').stdout)
    served = [d for d in namespaced if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader")]
    assert sorted(d["metadata"]["namespace"] for d in served) == ["a", "b"]
    assert not any(d["kind"] == "ClusterRole" for d in namespaced)
    env = next(d for d in namespaced if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SCHEDEXEC_NAMESPACES", "value": '["a","b"]'} in env


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["api.enabled=true", "rbac.clusterWide=false", 'watchNamespaces=["a"]'], "api.enabled needs rbac.clusterWide"),
        (["replicas=2", "leaderElection.enabled=false"], "replicas > 1 needs leaderElection.enabled"),
        (["rbac.clusterWide=false"], "needs watchNamespaces"),
    ],
)
def test_inconsistent_values_are_refused_with_a_reason(helm: Path, values: list[str], message: str) -> None:
    done = render(helm, *values, check=False)
    assert done.returncode != 0 and message in done.stderr


def kubeconfig_for(cluster: LocalCluster, token: str, path: Path) -> Path:
    """A kubeconfig that authenticates with `token` only (no admin certificate)."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The chart (operator + API) applied as `helm install` would: CRDs first, then the rest,
    each a server-side dry run first, then for real."""
    rendered = documents(render(helm, "api.enabled=true", "replicas=2").stdout)
    folder = tmp_path_factory.mktemp("chart")
    crds, rest = folder / "crds.yaml", folder / "rest.yaml"
    crds.write_text(yaml.safe_dump_all([d for d in rendered if d["kind"] == "CustomResourceDefinition"]))
    rest.write_text(yaml.safe_dump_all([d for d in rendered if d["kind"] != "CustomResourceDefinition"]))
    cluster.kubectl("create", "namespace", NAMESPACE)
    for manifests in (crds, rest):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(manifests))
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifests))
        if manifests == crds:
            cluster.kubectl("wait", "--for=condition=Established", "-f", str(crds))
    token = cluster.kubectl("create", "token", f"{RELEASE}-schedexec", "-n", NAMESPACE, "--duration=2h").stdout.strip()
    yield kubeconfig_for(cluster, token, tmp_path_factory.mktemp("sa") / "kubeconfig")
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "pods"),
    ("create", "pods"),
    ("get", "pods"),
    ("patch", "pods"),
    ("update", "pods/status"),
    ("get", "pods/log"),
    ("watch", "events"),
    ("delete", "events"),
    ("update", "jobs"),
    ("create", "rolebindings"),
    ("patch", "scheduledexecutions.schedexec.io"),
    ("get", "configmaps"),
]
"""Verbs the operator does not need: the chart must not grant them."""
NEEDED = [
    ("list", "pods"),  # the pod watch (label-selected), and a finished Job's pods when the watch lags
    ("watch", "pods"),
    ("list", "events"),  # FailedMount events of a pod stuck before its volumes are mounted
    ("create", "events"),
]
"""Verbs the operator's pod watch and events need: the chart must grant them."""


@pytest.mark.parametrize(
    ("verb", "resource", "granted"),
    [(v, r, False) for v, r in DENIED] + [(v, r, True) for v, r in NEEDED],
)
def test_the_chart_grants_what_the_operator_needs_and_nothing_more(
    cluster: LocalCluster, installed: Path, verb: str, resource: str, granted: bool
) -> None:
    answer = cluster.kubectl(
        "auth", "can-i", verb, resource, "--all-namespaces", f"--as={SERVICE_ACCOUNT}", check=False
    )
    expected = "yes" if granted else "no"
    assert answer.stdout.strip() == expected, f"the chart's ServiceAccount: can-i {verb} {resource} → {answer.stdout}"


@pytest.mark.usefixtures("without_session_operator")
def test_the_operator_and_api_work_with_exactly_the_charts_rbac(
    cluster: LocalCluster, installed: Path, namespace: str, tmp_path: Path
) -> None:
    """The full flow, the operator and the API authenticated only as the chart's ServiceAccount."""
    env = {
        **os.environ,
        "KUBECONFIG": str(installed),
        "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
        "SCHEDEXEC_METRICS_PORT": "0",
        "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
        "SCHEDEXEC_LEADER_ELECTION_NAMESPACE": NAMESPACE,
        "SCHEDEXEC_START_FAILURE_GRACE_SECONDS": "2",
    }
    api_port = free_port()
    api_env = {
        **env,
        "SCHEDEXEC_API_PORT": str(api_port),
        "SCHEDEXEC_API_HOST": "127.0.0.1",
        "SCHEDEXEC_API_COMPONENTS": json.dumps({"test": {"image": "ghcr.io/schedexec/test-component:dev"}}),
    }
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("operator", "api")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", command],
            env=process_env,
            stdout=logs[command],
            stderr=subprocess.STDOUT,
        )
        for command, process_env in (("operator", env), ("api", api_env))
    ]
    try:
        token = client_token(cluster, namespace)
        url = f"http://127.0.0.1:{api_port}"
        wait_for("the API", lambda: _healthy(url), timeout=30)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            rest_countdown(http, namespace, timeout=90)
        # a run stuck before its volumes mount: the operator watches its pod and reads its FailedMount events
        cluster.apply(
            {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "metadata": {"name": "nosecret", "namespace": namespace},
                "spec": {
                    "component": {"image": "ghcr.io/schedexec/test-component:dev"},
                    "method": "verifyCredentials",
                    "credentialsSecretRef": {"name": "absent"},
                },
            }
        )
        failed = cluster.wait_finished(namespace, "nosecret", timeout=60)
        assert failed["status"]["error"]["reason"] == "ConfigError", failed["status"]
        described = cluster.kubectl("describe", "sx", "-n", namespace, "nosecret").stdout
        assert "ConfigError" in described.split("Events:")[-1], "the failure's Event was posted"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
    operator_log = (tmp_path / "operator.log").read_text()
    assert "Forbidden" not in operator_log and "403" not in operator_log, operator_log[-3000:]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.usefixtures("without_session_operator")
def test_with_two_replicas_one_leads_and_the_other_takes_over_when_it_dies(
    cluster: LocalCluster, installed: Path, namespace: str, tmp_path: Path
) -> None:
    """Leader election with the chart's RBAC: the lease holder runs the sequence; kill it, the other finishes."""
    lease = "schedexec-operator"  # the chart grants get/update on this one Lease only
    env = {
        **os.environ,
        "KUBECONFIG": str(installed),
        "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
        "SCHEDEXEC_METRICS_PORT": "0",
        "SCHEDEXEC_LEADER_ELECTION_NAMESPACE": NAMESPACE,
        "SCHEDEXEC_LEADER_ELECTION_LEASE": lease,
    }
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", "operator"],
            env={**env, "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz"},
            stdout=(tmp_path / f"replica-{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        spec = {
            "component": {"image": "ghcr.io/schedexec/test-component:dev"},
            "method": "countdown",
            "args": {"left": 6, "every": 1},
        }
        cluster.apply(
            {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "metadata": {"name": "ha", "namespace": namespace},
                "spec": spec,
            }
        )

        def holder() -> str:
            found = cluster.kubectl(
                "get", "lease", lease, "-n", NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}", check=False
            )
            return found.stdout.strip()

        pids = [f"-{p.pid}" for p in replicas]
        leader_identity = wait_for(
            "a leader", lambda: (h := holder()) and any(h.endswith(p) for p in pids) and h, timeout=60
        )
        leader = next(p for p in replicas if leader_identity.endswith(f"-{p.pid}"))
        wait_for("run 2", lambda: (cluster.execution(namespace, "ha").get("status") or {}).get("runs", 0) >= 2)
        leader.kill()
        done = cluster.wait_finished(namespace, "ha", timeout=120)
        assert done["status"]["phase"] == "Succeeded"
        assert done["status"]["result"] == {"seen": [1, 2, 3, 4, 5, 6, 7]}, "no run lost or repeated in the takeover"
        assert holder() != leader_identity
    finally:
        for process in replicas:
            process.kill()
            process.wait()
