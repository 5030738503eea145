"""The Helm chart: lint, render, apply; and the operator and API working with exactly their RBAC.

Two identities: the operator's ServiceAccount and the REST API's own. Each is proven sufficient (the
operator and the API, run as local processes authenticated only with that identity's token, through a
full flow) and minimal (the complete list of what each may do, from the API server's own rules review,
equals the expected list: every other verb on every resource is denied).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schedexec import models
from schedexec_devcluster import binaries
from tests.support import (
    REPO,
    LocalCluster,
    client_token,
    free_port,
    keep_large_result,
    rest_countdown,
    self_signed_cert,
    trusting,
    wait_for,
)

pytestmark = pytest.mark.cluster
CHART = REPO / "charts" / "schedexec"
RELEASE, NAMESPACE = "sx", "schedexec-system"
OPERATOR_ACCOUNT = f"{RELEASE}-schedexec"
API_ACCOUNT = f"{RELEASE}-schedexec-api"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{OPERATOR_ACCOUNT}"
API_SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{API_ACCOUNT}"
TLS = 'api.tls.secretName="sx-api-tls"'
"""The API needs a certificate (or the development flag) to render."""


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


def pod_spec(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    deployment = next(d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def token_volumes(spec: dict[str, Any]) -> dict[str, str | None]:
    """Container → the volume it has at the ServiceAccount token's path (None: no token)."""
    return {
        c["name"]: next((m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == TOKEN_PATH), None)
        for c in spec["containers"]
    }


def test_options_render_what_they_promise(helm: Path) -> None:
    default = {d["kind"] for d in documents(render(helm).stdout)}
    assert {"ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Deployment", "Service"} <= default
    with_api = documents(render(helm, "api.enabled=true", TLS, "metrics.serviceMonitor.enabled=true").stdout)
    operator = pod_spec(with_api, "sx-schedexec")
    assert [c["name"] for c in operator["containers"]] == ["operator"]
    assert any(d["kind"] == "ServiceMonitor" for d in with_api)
    namespaced = documents(render(helm, "rbac.clusterWide=false", 'watchNamespaces=["a","b"]').stdout)
    served = [d for d in namespaced if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader")]
    assert sorted(d["metadata"]["namespace"] for d in served) == ["a", "b"]
    assert not any(d["kind"] == "ClusterRole" for d in namespaced)
    env = next(d for d in namespaced if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SCHEDEXEC_NAMESPACES", "value": '["a","b"]'} in env


def test_the_api_runs_with_its_own_service_account_in_both_modes(helm: Path) -> None:
    """deployment (default): a pod of its own, as the API's ServiceAccount. sidecar: one pod, whose token
    (the operator's) is projected into the operator container only; the API container mounts the API
    ServiceAccount's token Secret at the same path."""
    own = documents(render(helm, "api.enabled=true", TLS).stdout)
    api = pod_spec(own, "sx-schedexec-api")
    assert api["serviceAccountName"] == API_ACCOUNT and [c["name"] for c in api["containers"]] == ["api"]
    operator = pod_spec(own, "sx-schedexec")
    assert operator["serviceAccountName"] == OPERATOR_ACCOUNT and operator["automountServiceAccountToken"] is False
    assert token_volumes(operator) == {"operator": "operator-token"}
    service = next(d for d in own if d["kind"] == "Service" and d["metadata"]["name"] == "sx-schedexec-api")
    assert service["spec"]["selector"] == api_labels(own) and service["spec"]["ports"][0]["port"] == 443
    assert not set(api_labels(own).items()) >= set(pod_labels(own, "sx-schedexec").items()), "no overlap"

    sidecar = documents(render(helm, "api.enabled=true", TLS, 'api.mode="sidecar"').stdout)
    assert [d["metadata"]["name"] for d in sidecar if d["kind"] == "Deployment"] == ["sx-schedexec"]
    pod = pod_spec(sidecar, "sx-schedexec")
    assert pod["serviceAccountName"] == OPERATOR_ACCOUNT and pod["automountServiceAccountToken"] is False
    assert token_volumes(pod) == {"operator": "operator-token", "api": "api-token"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["operator-token"]["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token"
    secret = next(d for d in sidecar if d["kind"] == "Secret")
    assert volumes["api-token"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == API_ACCOUNT


def pod_labels(rendered: list[dict[str, Any]], name: str) -> dict[str, str]:
    deployment = next(d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    return deployment["spec"]["selector"]["matchLabels"]  # type: ignore[no-any-return]


def api_labels(rendered: list[dict[str, Any]]) -> dict[str, str]:
    return pod_labels(rendered, "sx-schedexec-api")


def test_the_api_serves_tls_from_a_secret_or_cert_manager_and_plain_http_only_when_asked(helm: Path) -> None:
    def api_container(*values: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rendered = documents(render(helm, "api.enabled=true", *values).stdout)
        spec = pod_spec(rendered, "sx-schedexec-api")
        return spec, rendered

    spec, _ = api_container(TLS)
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SCHEDEXEC_API_TLS_CERT_FILE"] == "/etc/schedexec/tls/tls.crt" and "SCHEDEXEC_API_PLAIN_HTTP" not in env
    assert {"name": "api-tls", "secret": {"secretName": "sx-api-tls"}} in spec["volumes"]
    assert spec["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert env["SCHEDEXEC_API_AUDIENCES"] == '["schedexec"]'
    spec, rendered = api_container(
        "api.tls.certManager.enabled=true", 'api.tls.certManager.issuerRef={"kind": "ClusterIssuer", "name": "ca"}'
    )
    (certificate,) = [d for d in rendered if d["kind"] == "Certificate"]
    assert certificate["spec"]["secretName"] == "sx-schedexec-api-tls"
    assert "sx-schedexec-api.schedexec-system.svc" in certificate["spec"]["dnsNames"]
    assert {"name": "api-tls", "secret": {"secretName": "sx-schedexec-api-tls"}} in spec["volumes"]
    spec, _ = api_container("api.plainHttp=true")
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SCHEDEXEC_API_PLAIN_HTTP"] == "true" and "volumes" not in spec


def test_large_results_set_the_operators_limits_and_permissions(helm: Path) -> None:
    def operator(*values: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        rendered = documents(render(helm, *values).stdout)
        env = {e["name"]: e.get("value") for e in pod_spec(rendered, "sx-schedexec")["containers"][0]["env"]}
        rules = next(d for d in rendered if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "sx-schedexec")
        return env, rules["rules"]

    env, rules = operator("largeResults.maxBytes=500000", "largeResults.inlineBytes=8192")
    assert (env["SCHEDEXEC_MAX_RESULT_BYTES"], env["SCHEDEXEC_INLINE_RESULT_BYTES"]) == ("500000", "8192")
    assert {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]} in rules
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]} in rules
    env, rules = operator("largeResults.enabled=false")
    assert env["SCHEDEXEC_MAX_RESULT_BYTES"] == "0"
    assert not [r for r in rules if {"pods/log", "configmaps"} & set(r["resources"])]


def test_the_chart_ships_the_admission_policy_of_crds(helm: Path) -> None:
    shipped = [d for d in documents(render(helm).stdout) if d["kind"].startswith("ValidatingAdmissionPolicy")]
    own = [d for d in yaml.safe_load_all((REPO / "crds" / "admission-policy.yaml").read_text()) if d]
    for document in shipped:
        document["metadata"].pop("labels")
    assert shipped == own and [d["kind"] for d in own] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert not [d for d in documents(render(helm, "admissionPolicy.enabled=false").stdout) if "Policy" in d["kind"]]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["api.enabled=true", "rbac.clusterWide=false", 'watchNamespaces=["a"]'], "api.enabled needs rbac.clusterWide"),
        (["api.enabled=true"], "api.enabled needs TLS"),
        (["api.enabled=true", TLS, 'api.mode="both"'], "api.mode must be deployment or sidecar"),
        (["api.enabled=true", "api.tls.certManager.enabled=true"], "needs api.tls.certManager.issuerRef.name"),
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


@dataclass(frozen=True)
class Installed:
    operator: Path
    """A kubeconfig that authenticates as the operator's ServiceAccount only."""
    api: Path
    """A kubeconfig that authenticates as the REST API's ServiceAccount only."""


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The chart (operator + API, mode deployment) applied as `helm install` would: CRDs first, then the
    rest, each a server-side dry run first, then for real."""
    rendered = documents(render(helm, "api.enabled=true", TLS, "replicas=2").stdout)
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

    def kubeconfig(account: str) -> Path:
        token = cluster.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=2h").stdout.strip()
        return kubeconfig_for(cluster, token, tmp_path_factory.mktemp(account) / "kubeconfig")

    yield Installed(operator=kubeconfig(OPERATOR_ACCOUNT), api=kubeconfig(API_ACCOUNT))
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


# --- minimal: exactly these permissions, from the API server's own review of each identity's rules ------------

Rule = tuple[str, str, str]
"""(resource or non-resource URL, resource names, verb) as `kubectl auth can-i --list` shows them."""

OPERATOR_RULES = {("scheduledexecutions.schedexec.io", "[]", verb) for verb in ("get", "list", "watch", "delete")} | {
    ("scheduledexecutions.schedexec.io/status", "[]", "update"),
    ("scheduledexecutions.schedexec.io/finalizers", "[]", "update"),
    *(("jobs.batch", "[]", verb) for verb in ("get", "list", "watch", "create", "delete")),
    ("pods", "[]", "list"),  # the pod watch (label-selected), and a finished Job's pods when the watch lags
    ("pods", "[]", "watch"),
    ("events", "[]", "create"),
    ("events", "[]", "list"),  # FailedMount events of a pod stuck before its volumes are mounted
    ("pods/log", "[]", "get"),  # largeResults: a result over 4 KiB through the run pod's log
    ("configmaps", "[]", "create"),  # largeResults: a result over 16 KiB kept in a ConfigMap
    ("configmaps", "[]", "get"),
}
"""What the operator may do in a namespace it serves."""
LEADER_RULES = {
    ("leases.coordination.k8s.io", "[]", "create"),
    ("leases.coordination.k8s.io", "[schedexec-operator]", "get"),
    ("leases.coordination.k8s.io", "[schedexec-operator]", "update"),
}
"""And in the release namespace: its one Lease."""
API_RULES = {
    *(("scheduledexecutions.schedexec.io", "[]", verb) for verb in ("create", "get", "list", "watch")),
    ("scheduledexecutions.schedexec.io", "[]", "use-any-credentials"),  # the admission policy's exemption
    ("configmaps", "[]", "get"),  # results kept outside the status
    ("tokenreviews.authentication.k8s.io", "[]", "create"),
    ("subjectaccessreviews.authorization.k8s.io", "[]", "create"),
}
"""What the REST API may do, in every namespace; nothing in the release namespace beyond it."""


def rules(cluster: LocalCluster, user: str, namespace: str) -> set[Rule]:
    """Everything `user` may do in `namespace`, as the API server reviews it (SelfSubjectRulesReview)."""
    table = cluster.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout.splitlines()
    header = table[0]
    starts = [header.index(title) for title in ("Resources", "Non-Resource URLs", "Resource Names", "Verbs")]
    found: set[Rule] = set()
    for line in table[1:]:
        resource, url, names, verbs = (
            line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)
        )
        for verb in verbs.strip("[]").split():
            found.add((resource or url, names, verb))
    return found


def granted_beyond_everyone(cluster: LocalCluster, user: str, namespace: str) -> set[Rule]:
    """What `user` may do in `namespace` that a ServiceAccount without any binding may not (discovery,
    self-reviews)."""
    return rules(cluster, user, namespace) - rules(cluster, f"system:serviceaccount:{namespace}:default", namespace)


@pytest.mark.parametrize(
    ("user", "where", "expected"),
    [
        (SERVICE_ACCOUNT, "served", OPERATOR_RULES),
        (SERVICE_ACCOUNT, NAMESPACE, OPERATOR_RULES | LEADER_RULES),
        (API_SERVICE_ACCOUNT, "served", API_RULES),
        (API_SERVICE_ACCOUNT, NAMESPACE, API_RULES),
    ],
    ids=["operator", "operator-release-namespace", "api", "api-release-namespace"],
)
def test_each_identity_may_do_exactly_what_it_needs_and_nothing_else(
    cluster: LocalCluster, installed: Installed, namespace: str, user: str, where: str, expected: set[Rule]
) -> None:
    """The complete list, so every other verb on every resource is denied; the flow test below proves the
    list sufficient."""
    target = namespace if where == "served" else where
    assert granted_beyond_everyone(cluster, user, target) == expected


DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "pods"),
    ("create", "pods"),
    ("get", "pods"),
    ("patch", "pods"),
    ("update", "pods/status"),
    ("watch", "events"),
    ("delete", "events"),
    ("update", "jobs"),
    ("create", "rolebindings"),
    ("patch", "scheduledexecutions.schedexec.io"),
    ("create", "scheduledexecutions.schedexec.io"),
    ("use-any-credentials", "scheduledexecutions.schedexec.io"),
    ("list", "configmaps"),
    ("update", "configmaps"),
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("impersonate", "serviceaccounts"),
]
"""Verbs the operator does not need: the chart must not grant them."""
NEEDED = [
    ("list", "pods"),  # the pod watch (label-selected), and a finished Job's pods when the watch lags
    ("watch", "pods"),
    ("list", "events"),  # FailedMount events of a pod stuck before its volumes are mounted
    ("create", "events"),
    ("get", "pods/log"),  # largeResults
    ("create", "configmaps"),
    ("get", "configmaps"),
]
"""Verbs the operator's pod watch, events and large results need: the chart must grant them."""
API_DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "jobs.batch"),
    ("create", "pods"),
    ("list", "pods"),
    ("get", "pods/log"),
    ("delete", "scheduledexecutions.schedexec.io"),
    ("patch", "scheduledexecutions.schedexec.io"),
    ("update", "scheduledexecutions.schedexec.io/status"),
    ("create", "configmaps"),
    ("list", "configmaps"),
    ("create", "events"),
    ("create", "leases.coordination.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("impersonate", "serviceaccounts"),
]
"""Verbs the REST API does not need."""
API_NEEDED = [
    ("create", "scheduledexecutions.schedexec.io"),
    ("get", "scheduledexecutions.schedexec.io"),
    ("list", "scheduledexecutions.schedexec.io"),  # the watch-fed cache
    ("watch", "scheduledexecutions.schedexec.io"),
    ("use-any-credentials", "scheduledexecutions.schedexec.io"),  # it reviews its callers' Secret access itself
    ("get", "configmaps"),  # results kept outside the status
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
]
"""Verbs the REST API needs."""


@pytest.mark.parametrize(
    ("user", "verb", "resource", "granted"),
    [(SERVICE_ACCOUNT, v, r, False) for v, r in DENIED]
    + [(SERVICE_ACCOUNT, v, r, True) for v, r in NEEDED]
    + [(API_SERVICE_ACCOUNT, v, r, False) for v, r in API_DENIED]
    + [(API_SERVICE_ACCOUNT, v, r, True) for v, r in API_NEEDED],
)
def test_the_chart_grants_what_each_identity_needs_and_nothing_more(
    cluster: LocalCluster, installed: Installed, user: str, verb: str, resource: str, granted: bool
) -> None:
    resource, _, subresource = resource.partition("/")  # `can-i get pods/log` would ask about a resource "pods/log"
    where = [f"--subresource={subresource}"] if subresource else []
    answer = cluster.kubectl("auth", "can-i", verb, resource, *where, "--all-namespaces", f"--as={user}", check=False)
    expected = "yes" if granted else "no"
    assert answer.stdout.strip() == expected, f"{user}: can-i {verb} {resource} → {answer.stdout}"


def test_the_sidecars_token_secret_is_the_api_service_accounts(
    cluster: LocalCluster, installed: Installed, helm: Path, tmp_path: Path
) -> None:
    """In sidecar mode the API container's credential is the token Kubernetes writes into the chart's
    Secret: the API's ServiceAccount, not the operator's."""
    rendered = documents(render(helm, "api.enabled=true", TLS, 'api.mode="sidecar"').stdout)
    (secret,) = [d for d in rendered if d["kind"] == "Secret"]
    cluster.apply(secret)
    name = secret["metadata"]["name"]

    def token() -> str:
        found = cluster.kubectl("get", "secret", name, "-n", NAMESPACE, "-o", "jsonpath={.data.token}").stdout
        return base64.b64decode(found).decode() if found else ""

    kubeconfig = kubeconfig_for(cluster, wait_for("the token controller to fill the Secret", token), tmp_path / "k")
    whoami = cluster.kubectl(
        "--kubeconfig", str(kubeconfig), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    )
    assert whoami.stdout == API_SERVICE_ACCOUNT


# --- sufficient: the operator and the API, each with its own identity, through a full flow ----------------------


@pytest.mark.usefixtures("without_session_operator")
def test_the_operator_and_api_work_with_exactly_the_charts_rbac(
    cluster: LocalCluster, installed: Installed, namespace: str, tmp_path: Path
) -> None:
    """The full flow, the operator and the API each authenticated only as its own ServiceAccount; the API
    serves TLS and answers a result kept in a ConfigMap (made as the operator makes it, while no operator runs:
    the fast tier's node agent serves no pod logs)."""
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
    kept, _ = keep_large_result(cluster, namespace, "wide", schema)
    env = {
        **os.environ,
        "KUBECONFIG": str(installed.operator),
        "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
        "SCHEDEXEC_METRICS_PORT": "0",
        "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
        "SCHEDEXEC_LEADER_ELECTION_NAMESPACE": NAMESPACE,
        "SCHEDEXEC_START_FAILURE_GRACE_SECONDS": "2",
    }
    api_port = free_port()
    cert, key = self_signed_cert(tmp_path)
    api_env = {
        **os.environ,
        "KUBECONFIG": str(installed.api),
        "SCHEDEXEC_API_PORT": str(api_port),
        "SCHEDEXEC_API_HOST": "127.0.0.1",
        "SCHEDEXEC_API_COMPONENTS": json.dumps({"test": {"image": "ghcr.io/schedexec/test-component:dev"}}),
        "SCHEDEXEC_API_TLS_CERT_FILE": str(cert),
        "SCHEDEXEC_API_TLS_KEY_FILE": str(key),
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
        url = f"https://127.0.0.1:{api_port}"
        wait_for("the API", lambda: _healthy(url, cert), timeout=30)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30, verify=trusting(cert)) as http:
            rest_countdown(http, namespace, timeout=90)
            whole = http.get(f"/v2/exec/result/{kept['metadata']['uid']}")
            assert whole.status_code == 200 and whole.json()["data"]["attributes"]["result"] == schema
            with_secret = {
                "data": {
                    "type": "execution",
                    "attributes": {"component": "test", "method": "countdown", "credential": "absent"},
                }
            }
            cluster.kubectl(
                "create",
                "role",
                "absent",
                "-n",
                namespace,
                "--verb=get",
                "--resource=secrets",
                "--resource-name=absent",
            )
            cluster.kubectl(
                "create",
                "rolebinding",
                "absent",
                "-n",
                namespace,
                "--role=absent",
                f"--serviceaccount={namespace}:client",
            )
            # the API names a Secret its caller may read: the admission policy lets the API's identity through
            accepted = http.post("/v2/executions", json=with_secret, params={"namespace": namespace})
            assert accepted.status_code == 202, accepted.text
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
    for name in ("operator", "api"):
        log = (tmp_path / f"{name}.log").read_text()
        assert "Forbidden" not in log and " 403" not in log, f"{name}: {log[-3000:]}"


def _healthy(url: str, ca: Path) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2, verify=trusting(ca)).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.usefixtures("without_session_operator")
def test_with_two_replicas_one_leads_and_the_other_takes_over_when_it_dies(
    cluster: LocalCluster, installed: Installed, namespace: str, tmp_path: Path
) -> None:
    """Leader election with the chart's RBAC: the lease holder runs the sequence; kill it, the other finishes."""
    lease = "schedexec-operator"  # the chart grants get/update on this one Lease only
    env = {
        **os.environ,
        "KUBECONFIG": str(installed.operator),
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
