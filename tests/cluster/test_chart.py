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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schedexec import manifests, models
from schedexec.settings import OperatorSettings
from schedexec_devcluster.controlplane import SERVICE_ACCOUNT_ISSUER
from tests.chart_support import ALL_ON, CHART, NAMESPACE, RELEASE, documents, helm_binary, render
from tests.support import (
    REPO,
    LocalCluster,
    client_token,
    free_port,
    keep_large_result,
    new_namespace,
    rest_countdown,
    self_signed_cert,
    trusting,
    wait_for,
)

pytestmark = pytest.mark.cluster
OPERATOR_ACCOUNT = f"{RELEASE}-schedexec"
API_ACCOUNT = f"{RELEASE}-schedexec-api"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{OPERATOR_ACCOUNT}"
API_SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{API_ACCOUNT}"
TLS = 'api.tls.secretName="sx-api-tls"'
"""The API needs a certificate (or the development flag) to render."""


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


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
    scrape = 'networkPolicy.metricsFrom=[{"namespaceSelector": {}}]'
    with_api = documents(render(helm, "api.enabled=true", TLS, "metrics.serviceMonitor.enabled=true", scrape).stdout)
    operator = pod_spec(with_api, "sx-schedexec")
    assert [c["name"] for c in operator["containers"]] == ["operator"]
    assert any(d["kind"] == "ServiceMonitor" for d in with_api)
    namespaced = documents(render(helm, "rbac.clusterWide=false", 'watchNamespaces=["a","b"]').stdout)
    operator_roles = [d for d in namespaced if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    served = [d for d in operator_roles if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader")]
    assert sorted(d["metadata"]["namespace"] for d in served) == ["a", "b"]
    assert not any(d["kind"] == "ClusterRole" for d in operator_roles), "the operator holds no cluster-wide power"
    env = next(d for d in namespaced if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SCHEDEXEC_NAMESPACES", "value": '["a","b"]'} in env
    default_env = pod_spec(documents(render(helm).stdout), "sx-schedexec")["containers"][0]["env"]
    retention = OperatorSettings().run_retention_seconds
    assert {"name": "SCHEDEXEC_RUN_RETENTION_SECONDS", "value": str(retention)} in default_env, "the settings' default"
    kept = pod_spec(documents(render(helm, "operator.runRetentionSeconds=60").stdout), "sx-schedexec")
    assert {"name": "SCHEDEXEC_RUN_RETENTION_SECONDS", "value": "60"} in kept["containers"][0]["env"]


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
    secret = next(d for d in sidecar if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-token"))
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
    assert env["SCHEDEXEC_API_PLAIN_HTTP"] == "true" and "api-tls" not in [v["name"] for v in spec["volumes"]]


def test_large_results_set_the_operators_limits_and_permissions(helm: Path) -> None:
    def operator(*values: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        rendered = documents(render(helm, *values).stdout)
        env = {e["name"]: e.get("value") for e in pod_spec(rendered, "sx-schedexec")["containers"][0]["env"]}
        rules = next(d for d in rendered if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "sx-schedexec")
        return env, rules["rules"]

    env, rules = operator("largeResults.maxBytes=500000", "largeResults.inlineBytes=8192")
    assert (env["SCHEDEXEC_MAX_RESULT_BYTES"], env["SCHEDEXEC_INLINE_RESULT_BYTES"]) == ("500000", "8192")
    assert {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]} in rules
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]} in rules, "created, never read"
    env, rules = operator("largeResults.enabled=false")
    assert env["SCHEDEXEC_MAX_RESULT_BYTES"] == "0"
    assert not [r for r in rules if {"pods/log", "configmaps"} & set(r["resources"])]


def test_the_chart_ships_the_admission_policy_of_crds(helm: Path) -> None:
    shipped = [
        d
        for d in documents(render(helm).stdout)
        if d["kind"].startswith("ValidatingAdmissionPolicy") and d["metadata"]["name"].startswith("schedexec-")
    ]
    own = [d for d in yaml.safe_load_all((REPO / "crds" / "admission-policy.yaml").read_text()) if d]
    for document in shipped:
        document["metadata"].pop("labels")
    assert shipped == own and [d["kind"] for d in own] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    disabled = documents(render(helm, "admissionPolicy.enabled=false").stdout)
    assert not [d for d in disabled if "Policy" in d["kind"] and d["metadata"]["name"].startswith("schedexec-")]


def kinds(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered if d["kind"] == kind}


def test_network_policies_let_each_pod_reach_the_api_server_and_be_reached_only_where_it_serves(helm: Path) -> None:
    """Rendering only: NetworkPolicy is not enforced on the local node (no policy engine); docs/security.md
    states each policy's intent."""
    alone = documents(render(helm).stdout)
    (policy,) = kinds(alone, "NetworkPolicy").values()
    assert policy["spec"]["podSelector"]["matchLabels"] == pod_labels(alone, "sx-schedexec")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}], "probes only: no metrics"
    egress = policy["spec"]["egress"]
    assert [p["port"] for p in egress[0]["ports"]] == [443, 6443] and egress[0]["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0"}}
    ]
    assert {(p["protocol"], p["port"]) for p in egress[1]["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert len(egress) == 2, "nothing else leaves the pod"

    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    scraped = documents(
        render(helm, f"networkPolicy.metricsFrom={json.dumps(prometheus)}", "api.enabled=true", TLS).stdout
    )
    policies = kinds(scraped, "NetworkPolicy")
    assert {"ports": [{"protocol": "TCP", "port": 9090}], "from": prometheus} in policies["sx-schedexec"]["spec"][
        "ingress"
    ]
    api = policies["sx-schedexec-api"]["spec"]
    assert api["podSelector"]["matchLabels"] == api_labels(scraped)
    assert (
        api["ingress"]
        == [
            {"ports": [{"protocol": "TCP", "port": 8000}]},
            {
                "ports": [{"protocol": "TCP", "port": 9091}],
                "from": prometheus,
            },  # its metrics: monitoring.api.metricsPort
        ]
        and len(api["egress"]) == 2
    )

    sidecar = kinds(documents(render(helm, "api.enabled=true", TLS, 'api.mode="sidecar"').stdout), "NetworkPolicy")
    assert list(sidecar) == ["sx-schedexec"]
    assert {"ports": [{"protocol": "TCP", "port": 8000}]} in sidecar["sx-schedexec"]["spec"]["ingress"]
    assert not kinds(documents(render(helm, "networkPolicy.enabled=false").stdout), "NetworkPolicy")


def test_disruption_budgets_cover_the_operator_and_the_api(helm: Path) -> None:
    rendered = documents(render(helm, "api.enabled=true", TLS, "replicas=2").stdout)
    budgets = kinds(rendered, "PodDisruptionBudget")
    assert budgets["sx-schedexec"]["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": pod_labels(rendered, "sx-schedexec")},
    }
    assert budgets["sx-schedexec-api"]["spec"]["selector"]["matchLabels"] == api_labels(rendered)
    assert not kinds(documents(render(helm, "podDisruptionBudget.enabled=false").stdout), "PodDisruptionBudget")


IDEMPOTENCY_DIR = "/etc/schedexec/idempotency"


@pytest.mark.parametrize("mode", ["deployment", "sidecar"])
def test_the_api_reads_its_idempotency_key_from_a_secret_mounted_read_only(helm: Path, mode: str) -> None:
    rendered = documents(render(helm, "api.enabled=true", TLS, f'api.mode="{mode}"').stdout)
    secret = kinds(rendered, "Secret")["sx-schedexec-api-idempotency"]
    assert secret["type"] == "Opaque" and len(base64.b64decode(secret["data"]["key"])) == 64
    spec = pod_spec(rendered, "sx-schedexec-api" if mode == "deployment" else "sx-schedexec")
    containers = {c["name"]: c for c in spec["containers"]}
    env = {e["name"]: e.get("value") for e in containers["api"]["env"]}
    assert env["SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE"] == f"{IDEMPOTENCY_DIR}/key"
    (mount,) = [m for m in containers["api"]["volumeMounts"] if m["mountPath"] == IDEMPOTENCY_DIR]
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "sx-schedexec-api-idempotency"
    if mode == "sidecar":
        assert mount["name"] not in [m["name"] for m in containers["operator"]["volumeMounts"]], "the API's only"


def test_an_idempotency_key_secret_of_ones_own_replaces_the_charts(helm: Path) -> None:
    """For `helm template` and Argo CD, which cannot look the chart's key up and would draw a new one each time."""
    rendered = documents(render(helm, "api.enabled=true", TLS, 'api.idempotencyKeySecret="my-key"').stdout)
    assert "sx-schedexec-api-idempotency" not in kinds(rendered, "Secret")
    spec = pod_spec(rendered, "sx-schedexec-api")
    (volume,) = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "my-key"]
    assert volume["name"] == "api-idempotency"


def test_the_api_listener_limits_come_from_values(helm: Path) -> None:
    """The listener's settings (schedexec.settings.ApiSettings) as the API container's environment."""
    values = ['api.trustedProxies=["10.8.0.0/16"]', "api.headerTimeoutSeconds=7", "api.maxConnections=20"]
    spec = pod_spec(documents(render(helm, "api.enabled=true", TLS, *values).stdout), "sx-schedexec-api")
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SCHEDEXEC_API_TRUSTED_PROXIES"] == '["10.8.0.0/16"]'
    assert (env["SCHEDEXEC_API_HEADER_TIMEOUT_SECONDS"], env["SCHEDEXEC_API_MAX_CONNECTIONS"]) == ("7", "20")
    default = pod_spec(documents(render(helm, "api.enabled=true", TLS).stdout), "sx-schedexec-api")
    env = {e["name"]: e.get("value") for e in default["containers"][0]["env"]}
    assert env["SCHEDEXEC_API_TRUSTED_PROXIES"] == "[]", "no proxy is trusted unless listed"
    assert (env["SCHEDEXEC_API_BODY_TIMEOUT_SECONDS"], env["SCHEDEXEC_API_KEEP_ALIVE_TIMEOUT_SECONDS"]) == ("30", "5")


def api_create_bindings(*values: str, helm: Path) -> dict[str, list[str | None]]:
    """Kind → namespaces of the bindings of the API's create/use-any-credentials/secrets ClusterRole."""
    found: dict[str, list[str | None]] = {}
    for d in documents(render(helm, "api.enabled=true", TLS, *values).stdout):
        if d["kind"].endswith("Binding") and d.get("roleRef", {}).get("name") == "sx-schedexec-api-create":
            found.setdefault(d["kind"], []).append(d["metadata"].get("namespace"))
    return found


def test_the_api_creates_executions_and_secrets_only_in_its_namespaces(helm: Path) -> None:
    assert api_create_bindings(helm=helm) == {"ClusterRoleBinding": [None]}, "no list: every namespace"
    assert api_create_bindings('api.namespaces=["x", "y"]', helm=helm) == {"RoleBinding": ["x", "y"]}
    namespaced = ["rbac.clusterWide=false", 'watchNamespaces=["a", "b"]']
    assert api_create_bindings(*namespaced, helm=helm) == {"RoleBinding": ["a", "b"]}
    assert api_create_bindings(*namespaced, 'api.namespaces=["b"]', helm=helm) == {"RoleBinding": ["b"]}


def test_the_identity_policies_match_only_the_charts_service_accounts(helm: Path) -> None:
    rendered = documents(render(helm, "api.enabled=true", TLS).stdout)
    policies = kinds(rendered, "ValidatingAdmissionPolicy")
    jobs, secrets = policies["sx-schedexec-operator-jobs"]["spec"], policies["sx-schedexec-api-secrets"]["spec"]
    assert f"'{SERVICE_ACCOUNT}'" in jobs["matchConditions"][0]["expression"]
    assert f"'{API_SERVICE_ACCOUNT}'" in secrets["matchConditions"][0]["expression"]
    bindings = kinds(rendered, "ValidatingAdmissionPolicyBinding")
    assert bindings["sx-schedexec-operator-jobs"]["spec"] == {
        "policyName": "sx-schedexec-operator-jobs",
        "validationActions": ["Deny"],
    }
    off = ["admissionPolicy.operatorJobs=false", "admissionPolicy.apiSecrets=false"]
    off.append("admissionPolicy.onlyOperatorRunJobs=false")
    left = kinds(documents(render(helm, "api.enabled=true", TLS, *off).stdout), "ValidatingAdmissionPolicy")
    assert sorted(left) == ["schedexec-credentials-readable", "sx-schedexec-operator-secrets"], "its fence stays"
    fence = policies["sx-schedexec-operator-secrets"]["spec"]
    assert f"'{SERVICE_ACCOUNT}'" in fence["matchConditions"][0]["expression"]
    assert bindings["sx-schedexec-operator-secrets"]["spec"]["validationActions"] == ["Deny"]
    without = documents(render(helm, "rbac.create=false").stdout)
    assert "sx-schedexec-operator-secrets" not in kinds(without, "ValidatingAdmissionPolicy"), "no grant to fence"


def test_only_the_operator_may_make_run_jobs_where_it_serves(helm: Path) -> None:
    """onlyOperatorRunJobs (on by default): its policy exempts the operator's ServiceAccount and the identities
    runJobCreators names, nobody else; bound in every namespace cluster-wide, in watchNamespaces otherwise."""
    rendered = documents(render(helm).stdout)
    policy = kinds(rendered, "ValidatingAdmissionPolicy")["sx-schedexec-run-jobs"]["spec"]
    (exempt,) = policy["matchConditions"]
    assert f'request.userInfo.username in ["{SERVICE_ACCOUNT}"]' in exempt["expression"]
    assert "request.userInfo.groups.exists(g, g in [])" in exempt["expression"]
    assert policy["matchConstraints"]["resourceRules"] == [
        {"apiGroups": ["batch"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["jobs"]}
    ]
    assert [v["reason"] for v in policy["validations"]] == ["Forbidden", "Forbidden"]
    binding = kinds(rendered, "ValidatingAdmissionPolicyBinding")["sx-schedexec-run-jobs"]["spec"]
    assert binding == {"policyName": "sx-schedexec-run-jobs", "validationActions": ["Deny"]}, "every namespace"

    namespaced = ["rbac.clusterWide=false", 'watchNamespaces=["a", "b"]']
    also = 'admissionPolicy.runJobCreators={"users": ["system:serviceaccount:x:y"], "groups": ["ops"]}'
    rendered = documents(render(helm, *namespaced, also).stdout)
    policy = kinds(rendered, "ValidatingAdmissionPolicy")["sx-schedexec-run-jobs"]["spec"]
    expression = policy["matchConditions"][0]["expression"]
    assert f'["{SERVICE_ACCOUNT}","system:serviceaccount:x:y"]' in expression and '["ops"]' in expression
    binding = kinds(rendered, "ValidatingAdmissionPolicyBinding")["sx-schedexec-run-jobs"]["spec"]
    assert binding["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
    ]
    off = documents(render(helm, "admissionPolicy.onlyOperatorRunJobs=false").stdout)
    assert "sx-schedexec-run-jobs" not in kinds(off, "ValidatingAdmissionPolicy")
    assert "sx-schedexec-run-jobs" not in kinds(off, "ValidatingAdmissionPolicyBinding")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["api.enabled=true", TLS, "rbac.clusterWide=false", 'watchNamespaces=["a"]', 'api.namespaces=["b"]'],
            "api.namespaces names b, which is not in watchNamespaces",
        ),
        (["metrics.serviceMonitor.enabled=true"], "needs networkPolicy.metricsFrom"),
        (["api.enabled=true"], "api.enabled needs TLS"),
        (["api.enabled=true", TLS, 'api.mode="both"'], "at '/api/mode': value must be one of 'deployment', 'sidecar'"),
        (["api.enabled=true", "api.tls.certManager.enabled=true"], "needs api.tls.certManager.issuerRef.name"),
        (["replicas=2", "leaderElection.enabled=false"], "replicas > 1 needs leaderElection.enabled"),
        (["rbac.clusterWide=false"], "needs watchNamespaces"),
        (["admissionPolicy.kubernetesApiAudiences=[]"], "admissionPolicy.kubernetesApiAudiences must list"),
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
    release_namespace: str = NAMESPACE
    served: str | None = None
    """The one namespace the operator serves (rbac.clusterWide=false), None: every namespace."""


def install(
    cluster: LocalCluster,
    helm: Path,
    folder: Path,
    *values: str,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    served: str | None = None,
) -> Installed:
    """The chart applied as `helm install` would: CRDs first, then the rest, each a server-side dry run first,
    then for real; kubeconfigs of its two ServiceAccounts. Not the `helm test` hooks, which `helm install` leaves
    for `helm test` to create."""
    rendered = [
        d
        for d in documents(render(helm, *values, release=release, namespace=namespace).stdout)
        if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") != "test"
    ]
    crds, rest = folder / "crds.yaml", folder / "rest.yaml"
    crds.write_text(yaml.safe_dump_all([d for d in rendered if d["kind"] == "CustomResourceDefinition"]))
    rest.write_text(yaml.safe_dump_all([d for d in rendered if d["kind"] != "CustomResourceDefinition"]))
    cluster.kubectl("create", "namespace", namespace)
    for objects in (crds, rest) if any(d["kind"] == "CustomResourceDefinition" for d in rendered) else (rest,):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(objects))
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(objects))
        if objects == crds:
            cluster.kubectl("wait", "--for=condition=Established", "-f", str(crds))

    def kubeconfig(account: str) -> Path:
        token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
        (folder / account).mkdir()
        return kubeconfig_for(cluster, token, folder / account / "kubeconfig")

    fullname = f"{release}-schedexec"
    return Installed(kubeconfig(fullname), kubeconfig(f"{fullname}-api"), namespace, served)


NAMESPACED_RELEASE, NAMESPACED_NAMESPACE = "sn", "schedexec-namespaced"
NAMESPACED_OPERATOR = f"system:serviceaccount:{NAMESPACED_NAMESPACE}:{NAMESPACED_RELEASE}-schedexec"
NAMESPACED_API = f"system:serviceaccount:{NAMESPACED_NAMESPACE}:{NAMESPACED_RELEASE}-schedexec-api"
RUN_JOB_CREATORS = "admissionPolicy.runJobCreators=" + json.dumps(
    {"users": [NAMESPACED_OPERATOR], "groups": ["system:masters"]}
)
"""The cluster-wide release's onlyOperatorRunJobs policy binds every namespace: the namespaced release's operator
(beside it in this session) and the session's own operator and set-up (the admin, system:masters) may still
make run Jobs. The tests of the policy impersonate other users."""


def remove_run_jobs_policy(cluster: LocalCluster, release: str) -> None:
    """The onlyOperatorRunJobs policy is cluster-scoped and matches every identity: the tests after this module
    (their operator runs as the admin; tests/cluster/test_planted_job.py proves the operator's own check
    without it) must not meet it."""
    name = f"{release}-schedexec-run-jobs"
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        cluster.kubectl("delete", kind, name, "--ignore-not-found")


def operator_jobs_in_effect(cluster: LocalCluster, namespace: str) -> None:
    """Wait until the API server enforces the new operatorJobs policy: a policy takes effect some moments after
    it is created (the API server loads it asynchronously), and tests must not race that."""
    job = run_job(namespace)
    privileged(job)
    wait_for(
        "the operatorJobs admission policy to refuse a privileged Job of the operator's ServiceAccount",
        lambda: create_job(cluster, job, SERVICE_ACCOUNT).returncode != 0,
    )


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The chart in cluster-wide mode (operator + API, mode deployment, two operator replicas)."""
    folder = tmp_path_factory.mktemp("chart")
    chart = install(cluster, helm, folder, "api.enabled=true", TLS, "replicas=2", RUN_JOB_CREATORS)
    operator_jobs_in_effect(cluster, chart.release_namespace)
    yield chart
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    remove_run_jobs_policy(cluster, RELEASE)


@pytest.fixture(scope="module")
def installed_namespaced(
    cluster: LocalCluster, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """The chart in namespaced mode (rbac.clusterWide=false) serving one fresh namespace, with the API: another
    release in another namespace, beside the cluster-wide one."""
    served = new_namespace(cluster, "served")
    yield install(
        cluster,
        helm,
        tmp_path_factory.mktemp("namespaced"),
        "api.enabled=true",
        TLS,
        "rbac.clusterWide=false",
        f"watchNamespaces={json.dumps([served])}",
        "crds.install=false",
        release=NAMESPACED_RELEASE,
        namespace=NAMESPACED_NAMESPACE,
        served=served,
    )
    for namespace in (NAMESPACED_NAMESPACE, served):
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    remove_run_jobs_policy(cluster, NAMESPACED_RELEASE)


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
    ("configmaps", "[]", "create"),  # largeResults: a result over 16 KiB kept in a ConfigMap (never read back)
    ("secrets", "[]", "create"),  # an XSOAR integration context (reconciler.keep_context; never read back)
    ("secrets", "[]", "update"),  # the next context replaces it (fenced: the operator-secrets policy)
}
"""What the operator may do in a namespace it serves."""
LEADER_RULES = {
    ("leases.coordination.k8s.io", "[]", "create"),
    ("leases.coordination.k8s.io", "[schedexec-operator]", "get"),
    ("leases.coordination.k8s.io", "[schedexec-operator]", "update"),
}
"""And in the release namespace: its one Lease."""
API_READ_RULES = {
    *(("scheduledexecutions.schedexec.io", "[]", verb) for verb in ("get", "list", "watch")),  # its cache
    ("tokenreviews.authentication.k8s.io", "[]", "create"),
    ("subjectaccessreviews.authorization.k8s.io", "[]", "create"),
}
"""What the REST API may do everywhere, in both modes."""
API_CREATE_RULES = {
    ("scheduledexecutions.schedexec.io", "[]", "create"),
    ("scheduledexecutions.schedexec.io", "[]", "use-any-credentials"),  # the admission policy's exemption
    ("secrets", "[]", "create"),  # an elastic.io request's credentials, in a Secret owned by its execution
    ("configmaps", "[]", "get"),  # results kept outside the status
}
"""And in the namespaces it creates executions in (every one in cluster-wide mode without api.namespaces)."""
API_RULES = API_READ_RULES | API_CREATE_RULES
"""What the REST API may do, in every namespace (cluster-wide mode); nothing in the release namespace beyond it."""


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


@pytest.mark.parametrize(
    ("user", "where", "expected"),
    [
        (NAMESPACED_OPERATOR, "served", OPERATOR_RULES),
        (NAMESPACED_OPERATOR, NAMESPACED_NAMESPACE, LEADER_RULES),
        (NAMESPACED_OPERATOR, "other", set()),
        (NAMESPACED_API, "served", API_RULES),
        (NAMESPACED_API, NAMESPACED_NAMESPACE, API_READ_RULES),
        (NAMESPACED_API, "other", API_READ_RULES),
    ],
    ids=["operator", "operator-release", "operator-elsewhere", "api", "api-release", "api-elsewhere"],
)
def test_namespaced_each_identity_may_act_only_in_the_served_namespaces(
    cluster: LocalCluster, installed_namespaced: Installed, namespace: str, user: str, where: str, expected: set[Rule]
) -> None:
    """rbac.clusterWide=false: the operator holds nothing outside the namespaces it serves (and its Lease); the
    API creates executions and Secrets only there, and keeps only its cache's reads and its reviews elsewhere."""
    target = {"served": installed_namespaced.served, "other": namespace}.get(where, where)
    assert target is not None
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
    ("get", "configmaps"),  # the operator creates result ConfigMaps, it never reads one
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
    ("create", "secrets"),  # XSOAR integration contexts, fenced by the operator-secrets admission policy
    ("update", "secrets"),
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
    ("create", "secrets"),  # an elastic.io request's credentials, in a Secret owned by its execution
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
    (secret,) = [d for d in rendered if d["kind"] == "Secret" and d["type"] == "kubernetes.io/service-account-token"]
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
    """Cluster-wide mode, with the operator's reduced rules (no `get configmaps`, which it never used)."""
    full_flow(cluster, installed, namespace, tmp_path)


@pytest.mark.usefixtures("without_session_operator")
def test_namespaced_the_operator_and_api_work_with_exactly_the_charts_rbac(
    cluster: LocalCluster, installed_namespaced: Installed, tmp_path: Path
) -> None:
    """rbac.clusterWide=false: the operator serving its one namespace with only Roles there, the API creating
    executions there with only its namespaced powers."""
    assert installed_namespaced.served is not None
    full_flow(cluster, installed_namespaced, installed_namespaced.served, tmp_path)


def full_flow(cluster: LocalCluster, installed: Installed, namespace: str, tmp_path: Path) -> None:
    """The full flow, the operator and the API each authenticated only as its own ServiceAccount; the API
    serves TLS and answers a result kept in a ConfigMap (made as the operator makes it, while no operator runs:
    the fast tier's node agent serves no pod logs). The operator's liveness endpoint answers no counts."""
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
    kept, _ = keep_large_result(cluster, namespace, "wide", schema)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {
        **os.environ,
        "KUBECONFIG": str(installed.operator),
        "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
        "SCHEDEXEC_METRICS_PORT": "0",
        "SCHEDEXEC_LIVENESS_ENDPOINT": liveness,
        "SCHEDEXEC_LEADER_ELECTION_NAMESPACE": installed.release_namespace,
        "SCHEDEXEC_START_FAILURE_GRACE_SECONDS": "2",
    }
    if installed.served is not None:
        env["SCHEDEXEC_NAMESPACES"] = json.dumps([installed.served])
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
            # the authorizer's RBAC cache sees the new binding before the API asks (its answer is cached 30 s)
            wait_for("the binding to take effect", lambda: can_read_absent(cluster, namespace))
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
        # anyone who reaches the probe port learns that the operator reconciles, and nothing of its executions
        assert httpx.get(liveness, timeout=5).json() == {"schedexec": "reconciling"}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
    for name in ("operator", "api"):
        log = (tmp_path / f"{name}.log").read_text()
        assert "Forbidden" not in log and " 403" not in log, f"{name}: {log[-3000:]}"


def can_read_absent(cluster: LocalCluster, namespace: str) -> bool:
    user = f"--as=system:serviceaccount:{namespace}:client"
    answer = cluster.kubectl("auth", "can-i", "get", "secret/absent", "-n", namespace, user, check=False)
    return answer.stdout.strip() == "yes"


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


# --- what the chart's identities may create, bounded by its admission policies -----------------------------------


def run_job(namespace: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's Job exactly as the operator makes it (manifests.job_manifest), with a credentials Secret, and with
    `template` as spec.podTemplate if given."""
    execution = models.ScheduledExecution.model_validate(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": "shape", "namespace": namespace, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "spec": {
                "component": {"image": "ghcr.io/schedexec/test-component:dev", "imagePullSecrets": [{"name": "reg"}]},
                "method": "countdown",
                "credentialsSecretRef": {"name": "creds"},
                **({"podTemplate": template} if template else {}),
            },
        }
    )
    return manifests.job_manifest(execution, 1, {"left": 1}, OperatorSettings().pod_defaults())


def privileged(job: dict[str, Any]) -> None:
    context = job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["privileged"] = context["allowPrivilegeEscalation"] = True  # the one implies the other


def host_path(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})


def host_network(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["hostNetwork"] = True


def unowned(job: dict[str, Any]) -> None:
    del job["metadata"]["ownerReferences"]


def unlabelled(job: dict[str, Any]) -> None:
    job["spec"]["template"]["metadata"]["labels"] = {"app": "mine"}


def with_token(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["automountServiceAccountToken"] = True


def as_root(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["securityContext"] = {"runAsUser": 0}


def create_job(cluster: LocalCluster, job: dict[str, Any], user: str | None) -> subprocess.CompletedProcess[str]:
    """A server-side dry run of creating `job` as `user` (None: the admin): admission runs, nothing is kept."""
    who = [f"--as={user}"] if user else []
    return cluster.kubectl("create", "--dry-run=server", *who, "-f", "-", stdin=json.dumps(job), check=False)


def test_the_operator_may_create_a_run_job_exactly_as_it_makes_it(
    cluster: LocalCluster, installed: Installed, namespace: str
) -> None:
    made = create_job(cluster, run_job(namespace), SERVICE_ACCOUNT)
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (privileged, "one unprivileged container"),
        (host_path, "volumes are emptyDir, downwardAPI or secret (no hostPath"),
        (host_network, "with hostNetwork, hostPID, hostIPC or a nodeName"),
        (unowned, "only Jobs controlled by a ScheduledExecution"),
        (unlabelled, "labels app.kubernetes.io/managed-by=schedexec"),
        (with_token, "automountServiceAccountToken: false"),
        (as_root, "runs as non-root"),
    ],
)
def test_the_operator_may_create_no_other_job(
    cluster: LocalCluster, installed: Installed, namespace: str, change: Any, message: str
) -> None:
    """RBAC lets the operator's ServiceAccount create any Job where it serves; the operatorJobs policy refuses
    every shape but its own, while the same Job from anyone else is not its concern."""
    job = run_job(namespace)
    change(job)
    refused = create_job(cluster, job, SERVICE_ACCOUNT)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert create_job(cluster, job, None).returncode == 0, "only the operator's ServiceAccount is bound"


def elasticio_job(namespace: str) -> dict[str, Any]:
    """A run's Job of an elastic.io component exactly as the operator makes it: the component's sailor and the
    receiver sidecar from the runner image (manifests._elasticio_pod)."""
    execution = models.ScheduledExecution.model_validate(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": "sailor", "namespace": namespace, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "spec": {
                "component": {"image": "ghcr.io/acme/petstore:1.0", "runtime": "elasticio"},
                "method": "verifyCredentials",
                "credentialsSecretRef": {"name": "creds"},
            },
        }
    )
    return manifests.job_manifest(execution, 1, {}, OperatorSettings().pod_defaults())


def receiver(job: dict[str, Any]) -> dict[str, Any]:
    (sidecar,) = job["spec"]["template"]["spec"]["initContainers"]
    return sidecar  # type: ignore[no-any-return]


def test_the_operator_may_create_an_elasticio_run_job_exactly_as_it_makes_it(
    cluster: LocalCluster, installed: Installed, namespace: str
) -> None:
    made = create_job(cluster, elasticio_job(namespace), SERVICE_ACCOUNT)
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(
    "change",
    [
        lambda job: receiver(job).update(image="ghcr.io/acme/anything:1.0"),
        lambda job: receiver(job).update(lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "id"]}}}),
        lambda job: receiver(job).update(args=["--other"]),
        lambda job: receiver(job).update(command=["sh", "-c", "id"]),
        lambda job: job["spec"]["template"]["spec"]["initContainers"].append(dict(receiver(job), name="second")),
    ],
    ids=["other-image", "lifecycle-hook", "args", "other-command", "two-init-containers"],
)
def test_the_operator_may_add_no_init_container_but_the_receiver_as_it_makes_it(
    cluster: LocalCluster, installed: Installed, namespace: str, change: Any
) -> None:
    job = elasticio_job(namespace)
    change(job)
    refused = create_job(cluster, job, SERVICE_ACCOUNT)
    assert refused.returncode != 0 and "init container but the elastic.io receiver" in refused.stderr, refused.stderr


# --- tokens in runs: a token for another audience, not for the Kubernetes API (admissionPolicy.allowRunApiTokens) -

API_TOKEN_REFUSED = "projected ServiceAccount tokens are for an audience other than the Kubernetes API server's"
AUTOMOUNT_REFUSED = "automountServiceAccountToken: false"


def token_job(namespace: str, audience: str = "vault", **template: Any) -> dict[str, Any]:
    """A run's Job whose pod template names a ServiceAccount and asks for a token of it for `audience`."""
    return run_job(
        namespace,
        {"serviceAccountName": "workload", "serviceAccountToken": {"audience": audience}, **template},
    )


def token_sources(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources of the Job's one projected volume (the token's)."""
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if "projected" in v]
    return volume["projected"]["sources"]  # type: ignore[no-any-return]


def token_audience(job: dict[str, Any], audience: str) -> None:
    token_sources(job)[0]["serviceAccountToken"]["audience"] = audience


def untyped_audience(job: dict[str, Any]) -> None:
    """No audience: the kubelet asks for the API server's own."""
    del token_sources(job)[0]["serviceAccountToken"]["audience"]


def with_a_config_map(job: dict[str, Any]) -> None:
    """A projected volume that carries a ConfigMap beside the token."""
    token_sources(job).append({"configMap": {"name": "settings"}})


def api_audiences(cluster: LocalCluster) -> set[str]:
    """The audiences this API server gives its own tokens (a token requested without an audience)."""
    token = cluster.kubectl("create", "token", "default", "-n", "default").stdout.strip()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return set(claims["aud"])


def test_the_charts_default_api_audiences_cover_this_api_servers(cluster: LocalCluster, helm: Path) -> None:
    """The tiers' API server (hack/devcluster: --service-account-issuer, no --api-audiences) is refused tokens for
    by the chart as installed with its defaults, and the rendered rule lists exactly the value's audiences."""
    policy = kinds(documents(render(helm).stdout), "ValidatingAdmissionPolicy")["sx-schedexec-operator-jobs"]["spec"]
    (audiences,) = [v["expression"] for v in policy["variables"] if v["name"] == "apiAudiences"]
    assert api_audiences(cluster) <= set(json.loads(audiences))
    mine = 'admissionPolicy.kubernetesApiAudiences=["https://oidc.example/c1"]'
    policy = kinds(documents(render(helm, mine).stdout), "ValidatingAdmissionPolicy")["sx-schedexec-operator-jobs"]
    (audiences,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "apiAudiences"]
    assert json.loads(audiences) == ["https://oidc.example/c1"]
    messages = [v["message"] for v in policy["spec"]["validations"]]
    assert any(API_TOKEN_REFUSED in m and "https://oidc.example/c1" in m for m in messages), messages


def test_the_operator_may_give_a_run_a_token_for_another_audience(
    cluster: LocalCluster, installed: Installed, namespace: str
) -> None:
    """spec.podTemplate.serviceAccountToken as the operator makes it (a projected volume of one token)."""
    made = create_job(cluster, token_job(namespace), SERVICE_ACCOUNT)
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda job: token_audience(job, SERVICE_ACCOUNT_ISSUER), API_TOKEN_REFUSED),
        (lambda job: token_audience(job, "https://kubernetes.default.svc"), API_TOKEN_REFUSED),
        (lambda job: token_audience(job, ""), API_TOKEN_REFUSED),
        (untyped_audience, API_TOKEN_REFUSED),
        (with_a_config_map, "or projected ServiceAccount tokens"),
        (with_token, AUTOMOUNT_REFUSED),
    ],
    ids=["this-api-servers-issuer", "in-cluster-url", "empty-audience", "no-audience", "configmap-beside", "automount"],
)
def test_the_operator_may_give_a_run_no_kubernetes_api_token(
    cluster: LocalCluster, installed: Installed, namespace: str, change: Any, message: str
) -> None:
    """A stolen operator token must not yield the API token of a ServiceAccount it starts a run under: neither a
    projected token for the API server's audiences (this API server's issuer among them) nor the automounted one."""
    job = token_job(namespace)
    change(job)
    refused = create_job(cluster, job, SERVICE_ACCOUNT)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert create_job(cluster, job, None).returncode == 0, "only the operator's ServiceAccount is bound"


TOKENS_RELEASE, TOKENS_NAMESPACE = "tk", "schedexec-tokens"
TOKENS_OPERATOR = f"system:serviceaccount:{TOKENS_NAMESPACE}:{TOKENS_RELEASE}-schedexec"


@pytest.fixture
def api_tokens_allowed(cluster: LocalCluster, helm: Path, tmp_path: Path, namespace: str) -> Iterator[str]:
    """Another release's operatorJobs policy with admissionPolicy.allowRunApiTokens, alone (its Deployment, RBAC
    and other policies left out); its operator's username, which the tests impersonate in group system:masters
    (RBAC lets it create Jobs; admission policies apply to every group)."""
    rendered = render(
        helm, "admissionPolicy.allowRunApiTokens=true", release=TOKENS_RELEASE, namespace=TOKENS_NAMESPACE
    ).stdout
    name = f"{TOKENS_RELEASE}-schedexec-operator-jobs"
    policy = [d for d in documents(rendered) if d["metadata"]["name"] == name]
    assert sorted(d["kind"] for d in policy) == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump_all(policy))
    cluster.kubectl("apply", "--server-side", "-f", str(tmp_path / "policy.yaml"))
    try:
        job = run_job(namespace)
        privileged(job)
        wait_for(
            "the allowRunApiTokens release's operatorJobs policy to refuse a privileged Job",
            lambda: create_tokens_job(cluster, job).returncode != 0,
        )
        yield TOKENS_OPERATOR
    finally:
        cluster.kubectl("delete", "-f", str(tmp_path / "policy.yaml"), "--ignore-not-found")


def create_tokens_job(cluster: LocalCluster, job: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    who = [f"--as={TOKENS_OPERATOR}", "--as-group=system:masters", "--as-group=system:authenticated"]
    return cluster.kubectl("create", "--dry-run=server", *who, "-f", "-", stdin=json.dumps(job), check=False)


@pytest.mark.parametrize(
    "change",
    [with_token, lambda job: token_audience(job, SERVICE_ACCOUNT_ISSUER), untyped_audience],
    ids=["automount", "this-api-servers-issuer", "no-audience"],
)
def test_allow_run_api_tokens_lets_the_operator_give_a_run_an_api_token(
    cluster: LocalCluster, installed: Installed, namespace: str, api_tokens_allowed: str, change: Any
) -> None:
    """With the value set, what the default refuses (test_the_operator_may_give_a_run_no_kubernetes_api_token) is
    admitted; the rest of the Job's shape is still checked (the fixture waits for a privileged Job's refusal)."""
    job = token_job(namespace)
    change(job)
    made = create_tokens_job(cluster, job)
    assert made.returncode == 0, made.stderr
    refused = create_job(cluster, job, SERVICE_ACCOUNT)
    assert refused.returncode != 0, "the default release still refuses it"
    with_a_config_map(job)
    assert "or projected ServiceAccount tokens" in create_tokens_job(cluster, job).stderr


TENANT = "tenant"
"""A user of the namespace who may create, get and update Jobs there, and nothing of schedexec's."""


def planted_job(namespace: str) -> dict[str, Any]:
    """A Job a tenant makes to be taken for an execution's run: the run's shape, its own command."""
    job = run_job(namespace)
    job["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "echo forged"]
    return job


def tenant_may_handle_jobs(cluster: LocalCluster, namespace: str) -> None:
    rbac = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "update", "patch"]}
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": TENANT, "namespace": namespace},
            "rules": [rbac],
        }
    )
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": TENANT, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TENANT},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
        }
    )


def owned_by_an_execution(job: dict[str, Any]) -> None:
    job["metadata"]["labels"] = {"app": "mine"}
    job["spec"]["template"]["metadata"]["labels"] = {"app": "mine"}


def labelled_only(job: dict[str, Any]) -> None:
    del job["metadata"]["ownerReferences"]
    job["metadata"]["labels"] = {"app": "mine"}


def pod_labelled_only(job: dict[str, Any]) -> None:
    labelled_only(job)
    job["spec"]["template"]["metadata"]["labels"] = {manifests.EXECUTION_LABEL: "victim"}


OWNER_REFUSED = "may give a Job an ownerReference to a ScheduledExecution"
LABELS_REFUSED = "may put the run labels (schedexec.io/execution"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda job: None, OWNER_REFUSED),
        (owned_by_an_execution, OWNER_REFUSED),
        (labelled_only, LABELS_REFUSED),
        (pod_labelled_only, LABELS_REFUSED),
    ],
)
def test_only_the_operator_may_create_a_job_that_looks_like_a_run(
    cluster: LocalCluster, installed: Installed, namespace: str, change: Any, message: str
) -> None:
    """onlyOperatorRunJobs: a user who may create Jobs cannot plant one owned by a ScheduledExecution or with the
    run labels (the operator would refuse to adopt it anyway: manifests.made_for); the operator's ServiceAccount
    may make it, and the tenant's own Jobs are not the policy's concern."""
    tenant_may_handle_jobs(cluster, namespace)
    job = planted_job(namespace)
    change(job)
    refused = create_job(cluster, job, TENANT)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert f"only the schedexec operator ({SERVICE_ACCOUNT})" in refused.stderr
    assert create_job(cluster, run_job(namespace), SERVICE_ACCOUNT).returncode == 0
    own = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "mine", "namespace": namespace}}
    own["spec"] = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    made = create_job(cluster, own, TENANT)
    assert made.returncode == 0, made.stderr


def test_no_user_may_give_a_job_of_theirs_an_execution_as_owner_afterwards(
    cluster: LocalCluster, installed: Installed, namespace: str
) -> None:
    """The same for an update that adds the owner: a tenant's plain Job cannot become a run later."""
    tenant_may_handle_jobs(cluster, namespace)
    plain = planted_job(namespace)
    owner = plain["metadata"].pop("ownerReferences")
    plain["metadata"]["labels"] = {"app": "mine"}
    plain["spec"]["template"]["metadata"]["labels"] = {"app": "mine"}
    cluster.kubectl("create", f"--as={TENANT}", "-f", "-", stdin=json.dumps(plain))
    name = plain["metadata"]["name"]
    patch = json.dumps({"metadata": {"ownerReferences": owner}})
    refused = cluster.kubectl(
        "patch", "job", name, "-n", namespace, f"--as={TENANT}", "--type=merge", "-p", patch, check=False
    )
    assert refused.returncode != 0 and OWNER_REFUSED in refused.stderr, refused.stderr
    labels = json.dumps({"metadata": {"labels": {manifests.EXECUTION_LABEL: "victim"}}})
    refused = cluster.kubectl(
        "patch", "job", name, "-n", namespace, f"--as={TENANT}", "--type=merge", "-p", labels, check=False
    )
    assert refused.returncode != 0 and LABELS_REFUSED in refused.stderr, refused.stderr
    kept = cluster.kubectl(
        "patch",
        "job",
        name,
        "-n",
        namespace,
        f"--as={TENANT}",
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"annotations": {"note": "mine"}}}),
        check=False,
    )
    assert kept.returncode == 0, kept.stderr


def test_the_api_may_create_opaque_secrets_only(cluster: LocalCluster, installed: Installed, namespace: str) -> None:
    """`create secrets` (an elastic.io request's credentials) must not mint ServiceAccount tokens: a token
    Secret names any ServiceAccount of the namespace and Kubernetes fills it in."""

    def create(secret: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": namespace}, **secret}
        return cluster.kubectl(
            "create", "--dry-run=server", f"--as={API_SERVICE_ACCOUNT}", "-f", "-", stdin=json.dumps(body), check=False
        )

    token = {"type": "kubernetes.io/service-account-token", "metadata": {"name": "t", "namespace": namespace}}
    token["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}  # type: ignore[index]
    refused = create(token)
    assert refused.returncode != 0
    assert "the REST API may create only Opaque Secrets, not kubernetes.io/service-account-token" in refused.stderr
    assert create({"type": "Opaque", "stringData": {"password": "x"}}).returncode == 0
    assert create({"stringData": {"password": "x"}}).returncode == 0, "Opaque is the default type"


def test_the_operator_may_write_only_xsoar_context_secrets_of_executions(
    cluster: LocalCluster, installed: Installed, namespace: str
) -> None:
    """`create`/`update secrets` (an XSOAR integration context, reconciler.keep_context) fenced by the chart's
    operator-secrets policy: never an Opaque Secret, a service-account-token Secret Kubernetes would fill, a
    Secret under another name or owned by something else, nor a replacement of a Secret that is not one."""
    name = "cape-0123456789-xsoar-context"

    def execution_owner(execution: str) -> dict[str, str]:
        """An ownerReference to a real (cancelled) execution: the garbage collector deletes at once a Secret
        whose owner does not exist, which would race the replacements below."""
        body = {
            "apiVersion": "schedexec.io/v1alpha1",
            "kind": "ScheduledExecution",
            "metadata": {"name": execution, "namespace": namespace},
            "spec": {"component": {"image": "ghcr.io/schedexec/test-component:dev"}, "method": "poll", "cancel": True},
        }
        made = json.loads(cluster.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(body)).stdout)
        return {
            "apiVersion": "schedexec.io/v1alpha1",
            "kind": "ScheduledExecution",
            "name": execution,
            "uid": made["metadata"]["uid"],
        }

    owner, other = execution_owner("cape"), execution_owner("cape-other")

    def secret(**changes: Any) -> dict[str, Any]:
        meta = {"name": name, "namespace": namespace, "ownerReferences": [owner]}
        body = {"apiVersion": "v1", "kind": "Secret", "type": "schedexec.io/xsoar-context", "metadata": meta}
        body["data"] = {"context.json": base64.b64encode(b'{"token":"t"}').decode()}
        for key, value in changes.items():
            (meta if key in ("name", "ownerReferences", "annotations") else body)[key] = value
        return {k: v for k, v in body.items() if v is not None}

    def write(verb: str, body: dict[str, Any], user: str = SERVICE_ACCOUNT) -> subprocess.CompletedProcess[str]:
        extra = ["--dry-run=server"] if verb == "create" else []
        return cluster.kubectl(verb, *extra, f"--as={user}", "-f", "-", stdin=json.dumps(body), check=False)

    wait_for(
        "the operator-secrets admission policy to refuse an Opaque Secret of the operator's ServiceAccount",
        lambda: write("create", secret(type="Opaque")).returncode != 0,
    )
    refusals = [
        (secret(type="Opaque"), "only Secrets of type schedexec.io/xsoar-context, not Opaque"),
        (secret(type=None), "only Secrets of type schedexec.io/xsoar-context, not Opaque"),
        (
            secret(
                type="kubernetes.io/service-account-token",
                data=None,
                annotations={"kubernetes.io/service-account.name": "default"},
            ),
            "not kubernetes.io/service-account-token",
        ),
        (secret(name="credentials"), "only Secrets named <execution>-<tag>-xsoar-context"),
        (secret(ownerReferences=None), "owned by one ScheduledExecution"),
        (secret(ownerReferences=[owner | {"kind": "Deployment", "apiVersion": "apps/v1"}]), "owned by one"),
    ]
    for body, complaint in refusals:
        refused = write("create", body)
        assert refused.returncode != 0 and complaint in refused.stderr, (body, refused.stderr)
    assert write("create", secret()).returncode == 0, "the operator's own shape is admitted"
    # replace: an Opaque Secret someone keeps under the name is never overwritten; its own context Secret is
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(secret(type="Opaque", ownerReferences=None)))
    refused = write("replace", secret())
    assert refused.returncode != 0 and "field is immutable" in refused.stderr, refused.stderr  # its type
    cluster.kubectl("delete", "secret", name, "-n", namespace)
    # one of this type and name, but another execution's (or nobody's): not the operator's to replace
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(secret(ownerReferences=[other])))
    refused = write("replace", secret())
    assert refused.returncode != 0, "never overwritten"
    assert "an XSOAR context Secret of the same ScheduledExecution" in refused.stderr, refused.stderr
    cluster.kubectl("delete", "secret", name, "-n", namespace)
    cluster.kubectl("create", f"--as={SERVICE_ACCOUNT}", "-f", "-", stdin=json.dumps(secret()))
    assert write("replace", secret(data={"context.json": base64.b64encode(b"{}").decode()})).returncode == 0
    stolen = write("replace", secret(ownerReferences=[other]))
    assert stolen.returncode != 0 and "of the same ScheduledExecution" in stolen.stderr, stolen.stderr


def test_the_idempotency_key_is_made_once_and_kept_by_upgrades(cluster: LocalCluster, helm: Path) -> None:
    """`helm upgrade --install` twice for real (lookup needs a cluster): the same key both times."""
    release, namespace = "keep", "schedexec-keep"
    values = ["api.enabled=true", "api.plainHttp=true", "crds.install=false", "admissionPolicy.enabled=false"]
    values += ["replicas=0", "api.replicas=0"]

    def upgrade() -> str:
        command = [str(helm), "upgrade", "--install", release, str(CHART), "-n", namespace, "--create-namespace"]
        command += ["--kubeconfig", str(cluster.kubeconfig)]
        for value in values:
            command += ["--set-json", value]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        name = f"{release}-schedexec-api-idempotency"
        return cluster.kubectl("get", "secret", name, "-n", namespace, "-o", "jsonpath={.data.key}").stdout

    try:
        first = upgrade()
        assert len(base64.b64decode(first)) == 64
        assert upgrade() == first
    finally:
        subprocess.run(
            [str(helm), "uninstall", release, "-n", namespace, "--kubeconfig", str(cluster.kubeconfig)],
            capture_output=True,
            timeout=120,
        )
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_users_bound_to_edit_run_executions_and_view_reads_them_never_use_any_credentials(
    cluster: LocalCluster, installed: Installed
) -> None:
    """The chart's user roles: a user holding the edit role in a namespace creates (and cancels, deletes) executions
    there, one holding view reads them, and neither may use-any-credentials: an edit user who names a Secret they
    cannot read is refused by the credentials admission policy. Kubernetes' own edit, admin and view select the
    roles by their labels (their aggregationRule); this cluster runs no aggregation controller, so users are bound
    to the chart's roles directly (what aggregation adds to edit/view)."""
    aggregated_into = {"edit": {"edit", "admin"}, "view": {"view", "edit", "admin"}}
    for suffix, defaults in aggregated_into.items():
        ours = json.loads(cluster.kubectl("get", "clusterrole", f"{RELEASE}-schedexec-{suffix}", "-o", "json").stdout)
        labels = ours["metadata"]["labels"]
        for default in ("edit", "admin", "view"):
            role = json.loads(cluster.kubectl("get", "clusterrole", default, "-o", "json").stdout)
            selectors = role["aggregationRule"]["clusterRoleSelectors"]
            selected = any(s["matchLabels"].items() <= labels.items() for s in selectors)
            assert selected == (default in defaults), (suffix, default)
    namespace = new_namespace(cluster, "users")
    edit, view = f"{RELEASE}-schedexec-edit", f"{RELEASE}-schedexec-view"
    for user, roles in {"alice": (edit, view), "bob": (view,), "carol": (edit, view)}.items():
        for role in roles:
            binding = ["rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}"]
            cluster.kubectl("create", *binding, "-n", namespace)
    executions = f"{models.PLURAL}.{models.GROUP}"

    def can(user: str, verb: str, resource: str = executions) -> bool:
        done = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False)
        return done.stdout.strip() == "yes"

    for verb in ("create", "get", "list", "watch", "patch", "update", "delete"):
        assert can("alice", verb), verb
    for verb in ("get", "list", "watch"):
        assert can("bob", verb) and can("bob", verb, f"{executions}/status"), verb
    for verb in ("create", "patch", "update", "delete"):
        assert not can("bob", verb), verb
    assert not any(can(user, "use-any-credentials") for user in ("alice", "bob", "carol"))

    def create(user: str, name: str, **spec: Any) -> subprocess.CompletedProcess[str]:
        body = {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": name, "namespace": namespace},
            # cancelled: admission is what is tested, and no run holds the session operator's slots
            "spec": {"component": {"image": "ghcr.io/schedexec/example-shop:0.1.0"}, "method": "m", "cancel": True}
            | spec,
        }
        return cluster.kubectl("create", "-f", "-", f"--as={user}", stdin=yaml.safe_dump(body), check=False)

    assert create("alice", "by-alice").returncode == 0
    assert create("bob", "by-bob").returncode != 0
    cluster.kubectl("create", "secret", "generic", "shop", "--from-literal=apiKey=x", "-n", namespace)
    refused = create("alice", "with-a-secret", credentialsSecretRef={"name": "shop"})
    assert refused.returncode != 0 and "shop" in refused.stderr, refused.stderr
    read_shop = ["--verb=get", "--resource=secrets", "--resource-name=shop"]
    cluster.kubectl("create", "role", "shop", *read_shop, "-n", namespace)
    cluster.kubectl("create", "rolebinding", "carol-shop", "--role=shop", "--user=carol", "-n", namespace)
    allowed = create("carol", "with-a-secret", credentialsSecretRef={"name": "shop"})
    assert allowed.returncode == 0, f"a Secret she may read: {allowed.stderr}"
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_the_chart_with_every_feature_on_is_accepted_by_the_api_server(
    cluster: LocalCluster, helm: Path, installed: Installed, tmp_path: Path
) -> None:
    """Every object of a render with every optional feature on, the schema applied, through a server-side dry run
    (the API server's own validation of Ingress, PodDisruptionBudget, NetworkPolicy, ...): but the kinds whose
    CRDs this cluster lacks (Gateway API, Prometheus Operator) and the `helm test` hooks."""
    release, namespace = "all", "schedexec-all"
    rendered = documents(render(helm, *ALL_ON, "crds.install=false", release=release, namespace=namespace).stdout)
    absent = {"HTTPRoute", "ServiceMonitor", "PrometheusRule"}
    assert absent <= {d["kind"] for d in rendered}
    applied = [
        d
        for d in rendered
        if d["kind"] not in absent and (d["metadata"].get("annotations") or {}).get("helm.sh/hook") != "test"
    ]
    assert {"Ingress", "PodDisruptionBudget", "NetworkPolicy", "ClusterRole"} <= {d["kind"] for d in applied}
    objects = tmp_path / "all.yaml"
    objects.write_text(yaml.safe_dump_all(applied))
    cluster.kubectl("create", "namespace", namespace)
    try:
        done = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(objects), check=False)
        assert done.returncode == 0, done.stderr
        annotations = yaml.safe_load((CHART / "Chart.yaml").read_text())["annotations"]
        (example,) = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
        shown = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(example))
        assert shown.returncode == 0, "Artifact Hub's example is a valid execution"
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
