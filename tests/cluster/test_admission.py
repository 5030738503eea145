"""Bad specs are refused by the API server itself, with a message naming the field."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from schedexec import models
from tests.support import LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

GOOD = {"component": {"image": "ghcr.io/schedexec/test-component:dev"}, "method": "countdown"}


def manifest(namespace: str, spec: dict[str, Any], name: str = "bad") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"method": "countdown"}, "spec.component: Required value"),
        ({"component": {"image": "x"}}, "spec.method: Required value"),
        ({**GOOD, "component": {"image": ""}}, "spec.component.image"),
        ({**GOOD, "method": "has spaces"}, "spec.method"),
        ({**GOOD, "method": "getMetaModel"}, "spec.module is required when method is getMetaModel"),
        ({**GOOD, "method": "selectModel"}, "spec.function (the select-model function) is required"),
        ({**GOOD, "timeoutSeconds": 0}, "spec.timeoutSeconds"),
        ({**GOOD, "timeoutSeconds": 10, "runTimeoutSeconds": 20}, "spec.runTimeoutSeconds must not exceed"),
        ({**GOOD, "retries": 11}, "spec.retries"),
        ({**GOOD, "maxRuns": 0}, "spec.maxRuns"),
        ({**GOOD, "args": [1, 2]}, "spec.args"),
        ({**GOOD, "credentialsSecretRef": {}}, "spec.credentialsSecretRef.name: Required value"),
        ({**GOOD, "ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
        (
            {**GOOD, "component": {**GOOD["component"], "resources": {"requests": {"cpu": "lots"}}}},
            "spec.component.resources.requests.cpu",
        ),
        (
            {**GOOD, "component": {**GOOD["component"], "resources": {"limits": {"memory": "1Gb"}}}},
            "spec.component.resources.limits.memory",
        ),
    ],
)
def test_an_invalid_spec_is_refused_by_kubectl_apply(
    cluster: LocalCluster, namespace: str, spec: dict[str, Any], message: str
) -> None:
    refused = cluster.apply(manifest(namespace, spec), check=False)
    assert refused.returncode != 0
    assert message in refused.stderr


def test_a_short_timeout_alone_is_admitted_and_its_run_gets_that_deadline(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    """runTimeoutSeconds unset (the README's first example sets only timeoutSeconds: 60): the API server adds no
    runTimeoutSeconds for the CEL rule to refuse, and the run's Job stops at the sequence's 60 s, not at 300."""
    short = {**GOOD, "method": "sleep", "args": {"seconds": 1}, "timeoutSeconds": 60}
    applied = cluster.apply(manifest(namespace, short, "short"), check=False)
    assert applied.returncode == 0, applied.stderr
    assert "runTimeoutSeconds" not in cluster.execution(namespace, "short")["spec"], "no server-side default"
    job = wait_for("the run's Job", lambda: next(iter(cluster.batch.list_namespaced_job(namespace).items), None))
    assert job.spec.active_deadline_seconds == 60
    explicit = {**GOOD, "timeoutSeconds": 60, "runTimeoutSeconds": 61}
    refused = cluster.apply(manifest(namespace, explicit, "explicit"), check=False)
    assert refused.returncode != 0 and "spec.runTimeoutSeconds must not exceed spec.timeoutSeconds" in refused.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "other"}, "spec.method is immutable"),
        ({"args": {"left": 9}}, "spec.args is immutable"),
        ({"component": {"image": "other"}}, "spec.component is immutable"),
        ({"module": "added"}, "spec.module is immutable"),
    ],
)
def test_the_spec_is_immutable_except_cancel(
    cluster: LocalCluster, namespace: str, change: dict[str, Any], message: str
) -> None:
    spec = {**GOOD, "method": "sleep", "args": {"left": 1}}
    cluster.apply(manifest(namespace, spec, name="fixed"))
    refused = cluster.apply(manifest(namespace, {**spec, **change}, name="fixed"), check=False)
    assert refused.returncode != 0 and message in refused.stderr
    cluster.apply(manifest(namespace, {**spec, "cancel": True}, name="fixed"))
    back = cluster.apply(manifest(namespace, {**spec, "cancel": False}, name="fixed"), check=False)
    assert back.returncode != 0 and "spec.cancel cannot be set back to false" in back.stderr


# --- crds/admission-policy.yaml: naming a Secret requires reading it (issue 13, part 5) ---------------------------


def test_the_admission_policy_is_served_as_v1_and_installed(cluster: LocalCluster) -> None:
    resources = cluster.kubectl("api-resources", "--api-group=admissionregistration.k8s.io", "-o", "name").stdout
    assert "validatingadmissionpolicies.admissionregistration.k8s.io" in resources.split()
    policy = yaml.safe_load(cluster.kubectl("get", "validatingadmissionpolicy", POLICY, "-o", "yaml").stdout)
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert not policy.get("status", {}).get("typeChecking", {}).get("expressionWarnings"), "its CEL type-checks"


POLICY = "schedexec-credentials-readable"


def account(cluster: LocalCluster, namespace: str, name: str, rules: list[dict[str, Any]]) -> str:
    """A ServiceAccount allowed `rules` in `namespace`; its user name, for `kubectl --as`."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        }
    )
    cluster.kubectl(
        "create", "rolebinding", name, "-n", namespace, f"--role={name}", f"--serviceaccount={namespace}:{name}"
    )
    return f"system:serviceaccount:{namespace}:{name}"


CREATE = {"apiGroups": [models.GROUP], "resources": [models.PLURAL], "verbs": ["create", "get", "patch"]}


def test_naming_a_secret_you_may_not_read_is_refused_by_kubectl_apply(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("create", "secret", "generic", "db", "-n", namespace, "--from-literal=password=hunter2")
    writer = account(cluster, namespace, "writer", [CREATE])
    reader = account(
        cluster,
        namespace,
        "reader",
        [CREATE, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["db"]}],
    )
    with_secret = {**GOOD, "credentialsSecretRef": {"name": "db"}}
    refused = cluster.kubectl(
        "apply", f"--as={writer}", "-f", "-", stdin=manifest(namespace, with_secret, "w1"), check=False
    )
    assert refused.returncode != 0
    assert (
        f"you may not read Secret db in namespace {namespace}, so you may not name it in spec.credentialsSecretRef"
        in refused.stderr
    )
    assert cluster.kubectl("apply", f"--as={writer}", "-f", "-", stdin=manifest(namespace, GOOD, "w2")).returncode == 0
    allowed = cluster.kubectl("apply", f"--as={reader}", "-f", "-", stdin=manifest(namespace, with_secret, "r1"))
    assert allowed.returncode == 0, "who may read the Secret may name it"


def test_who_may_use_any_credentials_may_name_any_secret(cluster: LocalCluster, namespace: str) -> None:
    """The REST API's exemption: it asks the same question of its own callers before it creates."""
    delegate = account(cluster, namespace, "delegate", [CREATE, {**CREATE, "verbs": ["use-any-credentials"]}])
    body = manifest(namespace, {**GOOD, "credentialsSecretRef": {"name": "anything"}}, "d1")
    assert cluster.kubectl("apply", f"--as={delegate}", "-f", "-", stdin=body).returncode == 0


# --- imagePullSecrets: the kubelet pulls with them on the creator's behalf (issue 25, item 2) ---------------------


def with_pull_secrets(*names: str, credentials: str | None = None) -> dict[str, Any]:
    pull = [{"name": name} for name in names]
    spec: dict[str, Any] = {**GOOD, "component": {**GOOD["component"], "imagePullSecrets": pull}}
    if credentials is not None:
        spec["credentialsSecretRef"] = {"name": credentials}
    return spec


def test_naming_a_pull_secret_you_may_not_read_is_refused(cluster: LocalCluster, namespace: str) -> None:
    """Without the policy's second rule any creator could run the private images behind a registry Secret
    they may not read: the kubelet pulls with it for them."""
    for secret in ("registry", "mine"):
        cluster.kubectl("create", "secret", "generic", secret, "-n", namespace, "--from-literal=.dockerconfigjson={}")
    get_mine = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["mine"]}
    user = account(cluster, namespace, "puller", [CREATE, get_mine])

    def create(name: str, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("apply", f"--as={user}", "-f", "-", stdin=manifest(namespace, spec, name), check=False)

    refused = create("p1", with_pull_secrets("mine", "registry"))
    assert refused.returncode != 0
    assert (
        f"you may not read every Secret of mine, registry in namespace {namespace}, so you may not name them in "
        "spec.component.imagePullSecrets" in refused.stderr
    ), refused.stderr
    assert create("p2", with_pull_secrets("mine")).returncode == 0, "who may read the pull Secret may name it"
    both = create("p3", with_pull_secrets("mine", credentials="registry"))
    assert both.returncode != 0 and "so you may not name it in spec.credentialsSecretRef" in both.stderr
    assert "imagePullSecrets" not in both.stderr, "a readable pull Secret is not reported"


def test_who_may_use_any_credentials_may_name_any_pull_secret(cluster: LocalCluster, namespace: str) -> None:
    """The REST API's identity keeps working: it reviews its callers itself."""
    delegate = account(cluster, namespace, "pulldelegate", [CREATE, {**CREATE, "verbs": ["use-any-credentials"]}])
    body = manifest(namespace, with_pull_secrets("anything", "else", credentials="any"), "pd1")
    assert cluster.kubectl("apply", f"--as={delegate}", "-f", "-", stdin=body).returncode == 0
