"""The chart's maximum run resources (operator.runResources.maximum) answered at `kubectl apply` by a real API
server: the chart's ValidatingAdmissionPolicy refuses an execution whose spec.component.resources ask for more,
naming the field, its value and the maximum, and admits one within it (quantities compared as quantities:
1024Mi is 1Gi). The operator's own check before a run's first Job is unit-tested (tests/unit/test_run_resources.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from schedexec import models
from schedexec.settings import OperatorSettings
from schedexec_devcluster import binaries
from tests.support import REPO, LocalCluster, wait_for

pytestmark = pytest.mark.cluster

TEMPLATE = "templates/admission-policy-run-resources.yaml"
MAXIMUM = {"memory": "1Gi", "nvidia.com/gpu": 1}


def rendered(*values: str, template: str = TEMPLATE) -> list[dict[str, Any]]:
    command = [str(binaries.ensure_helm()), "template", "sx", str(REPO / "charts" / "schedexec")]
    command += ["--kube-version", binaries.KUBERNETES_VERSION, "--set", "api.tls.secretName=sx-api-tls"]
    for value in values:
        command += ["--set-json", value]
    done = subprocess.run([*command, "--show-only", template], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "could not find template" in done.stderr:
        return []  # rendered nothing
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_the_policy_is_rendered_only_with_a_maximum() -> None:
    assert rendered() == []
    assert rendered('operator.runResources.maximum={"cpu": "2"}', "admissionPolicy.enabled=false") == []
    kinds = [d["kind"] for d in rendered('operator.runResources.maximum={"cpu": "2"}')]
    assert kinds == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


def test_the_values_reach_the_operator_as_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    default = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    values = [
        f"operator.runResources.default={json.dumps(default)}",
        f"operator.runResources.maximum={json.dumps(MAXIMUM)}",
    ]
    (deployment,) = rendered(*values, template="templates/deployment.yaml")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("SCHEDEXEC_DEFAULT_RUN_RESOURCES", "SCHEDEXEC_MAX_RUN_RESOURCES"):
        monkeypatch.setenv(name, env[name])
    settings = OperatorSettings()
    assert settings.pod_defaults().default_run_resources == models.ResourceRequirements.model_validate(default)
    assert settings.policy().max_run_resources == {"memory": "1Gi", "nvidia.com/gpu": "1"}
    (plain,) = rendered(template="templates/deployment.yaml")
    names = {e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not names & {"SCHEDEXEC_DEFAULT_RUN_RESOURCES", "SCHEDEXEC_MAX_RUN_RESOURCES"}, "unset by default"


@pytest.fixture
def policy(cluster: LocalCluster) -> Iterator[str]:
    manifests = rendered(f"operator.runResources.maximum={json.dumps(MAXIMUM)}")
    for manifest in manifests:
        cluster.apply(manifest)
    name = manifests[0]["metadata"]["name"]
    yield name
    for manifest in reversed(manifests):
        cluster.kubectl("delete", manifest["kind"].lower(), manifest["metadata"]["name"], check=False)


def attempt(cluster: LocalCluster, namespace: str, name: str, resources: dict[str, Any] | None) -> str:
    """Create an execution with `resources` (server-side dry run); what the API server answered."""
    component: dict[str, Any] = {"image": "ghcr.io/acme/shop:1.2"}
    if resources is not None:
        component["resources"] = resources
    body = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"component": component, "method": "sync"},
    }
    text = yaml.safe_dump(body)
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    return done.stdout + done.stderr


def test_resources_above_the_maximum_are_refused_at_kubectl_apply(
    cluster: LocalCluster, namespace: str, policy: str
) -> None:
    over = {"limits": {"memory": "1025Mi"}}

    def refusal() -> str | None:
        answer = attempt(cluster, namespace, "big", over)
        return answer if "denied" in answer else None

    refused = wait_for("the policy to take effect", refusal)
    assert "spec.component.resources.limits.memory is 1025Mi, above the maximum of 1Gi" in refused
    gpus = attempt(cluster, namespace, "gpus", {"requests": {"nvidia.com/gpu": "2"}})
    assert "spec.component.resources.requests.nvidia.com/gpu is 2, above the maximum of 1" in gpus
    for name, within in [
        ("exact", {"limits": {"memory": "1024Mi"}, "requests": {"memory": "1Gi", "nvidia.com/gpu": "1"}}),
        ("other", {"requests": {"cpu": "64"}}),
        ("none", None),
    ]:
        answer = attempt(cluster, namespace, name, within)
        assert "created (server dry run)" in answer, answer
    status = yaml.safe_load(cluster.kubectl("get", "validatingadmissionpolicy", policy, "-o", "yaml").stdout)
    assert not (status.get("status") or {}).get("typeChecking", {}).get("expressionWarnings"), "its CEL type-checks"
