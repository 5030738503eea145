"""What the chart renders for the conventions platform teams expect (issue 31): recommended labels on every object,
user roles that never grant use-any-credentials, the API's Ingress and HTTPRoute, pod priority and labels, the
`helm test` hook, Artifact Hub's annotations. `helm template` only: no cluster (tests/cluster/test_chart.py applies
the chart; tests/node/test_helm_test.py runs the hook on a real node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schedexec import models
from tests.chart_support import ALL_ON, CHART, NAMESPACE, documents, helm_binary, render

RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
COMPONENTS = {"operator", "api", "api-metrics", "admission", "crd", "user-roles", "test", "monitoring"}
SIDECAR = [v for v in ALL_ON if not v.startswith("api.replicas")] + ['api.mode="sidecar"']
NAMESPACED = ["rbac.clusterWide=false", 'watchNamespaces=["team-a", "team-b"]']


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def named(rendered: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name)


def pod_templates(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each Deployment's pod template, and the test Pod, by name."""
    found = {d["metadata"]["name"]: d["spec"]["template"] for d in rendered if d["kind"] == "Deployment"}
    found.update({d["metadata"]["name"]: d for d in rendered if d["kind"] == "Pod"})
    return found


@pytest.mark.parametrize(
    "values", [[], ALL_ON, SIDECAR, NAMESPACED], ids=["defaults", "all-on", "sidecar", "namespaced"]
)
def test_every_object_carries_the_recommended_labels_and_its_component(helm: Path, values: list[str]) -> None:
    rendered = documents(render(helm, *values).stdout)
    assert len(rendered) > 20
    for document in rendered:
        labels = document["metadata"].get("labels") or {}
        where = f"{document['kind']} {document['metadata']['name']}"
        assert all(labels.get(key) for key in RECOMMENDED), f"{where}: {labels}"
        assert labels["app.kubernetes.io/component"] in COMPONENTS, where
        assert labels["app.kubernetes.io/part-of"] == "schedexec"
    for name, template in pod_templates(rendered).items():
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] in COMPONENTS, name
    kinds = {d["kind"] for d in rendered}
    if values == ALL_ON:
        assert {"Ingress", "HTTPRoute", "ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy", "Pod"} <= kinds


def rules_of(role: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (group, resource, verb)
        for rule in role.get("rules", [])
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    ]


@pytest.mark.parametrize("values", [[], ALL_ON, NAMESPACED], ids=["defaults", "all-on", "namespaced"])
def test_users_get_executions_through_the_default_roles_never_use_any_credentials(
    helm: Path, values: list[str]
) -> None:
    rendered = documents(render(helm, *values).stdout)
    edit = named(rendered, "ClusterRole", "sx-schedexec-edit")
    view = named(rendered, "ClusterRole", "sx-schedexec-view")
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(aggregate) and v == "true"} == {
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert {k for k, v in view["metadata"]["labels"].items() if k.startswith(aggregate) and v == "true"} == {
        f"{aggregate}view",
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    executions = f"{models.PLURAL}"
    assert set(rules_of(edit)) == {
        (models.GROUP, executions, verb) for verb in ("create", "update", "patch", "delete", "deletecollection")
    }
    assert set(rules_of(view)) == {
        (models.GROUP, resource, verb)
        for resource in (executions, f"{executions}/status")
        for verb in ("get", "list", "watch")
    }
    for role in (d for d in rendered if d["kind"] in ("ClusterRole", "Role")):
        labels = role["metadata"]["labels"]
        if not any(key.startswith(aggregate) for key in labels):
            continue
        granted = rules_of(role)
        assert not any("*" in rule for rule in granted), role["metadata"]["name"]
        assert not any(verb == "use-any-credentials" for _, _, verb in granted), role["metadata"]["name"]
    off = documents(render(helm, "rbac.userRoles=false").stdout)
    assert not [d for d in off if d["metadata"]["labels"]["app.kubernetes.io/component"] == "user-roles"]


def test_only_the_rest_apis_role_may_use_any_credentials(helm: Path) -> None:
    """The admission policy's exemption stays the API's: no other role the chart makes grants it."""
    rendered = documents(render(helm, *ALL_ON).stdout)
    holders = {
        d["metadata"]["name"]
        for d in rendered
        if d["kind"] in ("ClusterRole", "Role") and any(v == "use-any-credentials" for _, _, v in rules_of(d))
    }
    assert holders == {"sx-schedexec-api-create"}


@pytest.mark.parametrize(("plain", "port"), [(False, 443), (True, 80)])
def test_the_api_is_routed_by_an_ingress_and_an_http_route_to_its_service(helm: Path, plain: bool, port: int) -> None:
    tls = "api.plainHttp=true" if plain else 'api.tls.secretName="sx-api-tls"'
    rendered = documents(render(helm, *ALL_ON, tls).stdout)
    service = named(rendered, "Service", "sx-schedexec-api")
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    ingress = named(rendered, "Ingress", "sx-schedexec-api")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "api-example-com", "hosts": ["api.example.com"]}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "api.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"] == {"service": {"name": "sx-schedexec-api", "port": {"number": port}}}
    route = named(rendered, "HTTPRoute", "sx-schedexec-api")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["api.example.com"]
    (route_rule,) = route["spec"]["rules"]
    assert route_rule["backendRefs"] == [{"name": "sx-schedexec-api", "port": port}]
    assert route_rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]


def test_no_route_to_the_api_unless_asked(helm: Path) -> None:
    rendered = documents(render(helm, "api.enabled=true", 'api.tls.secretName="sx-api-tls"').stdout)
    assert not {"Ingress", "HTTPRoute"} & {d["kind"] for d in rendered}
    without_api = [v for v in ALL_ON if not v.startswith("api.enabled")]
    assert not {"Ingress", "HTTPRoute"} & {d["kind"] for d in documents(render(helm, *without_api).stdout)}
    refused = render(helm, "api.enabled=true", "api.plainHttp=true", "api.httpRoute.enabled=true", check=False)
    assert refused.returncode != 0 and "needs api.httpRoute.parentRefs" in refused.stderr


@pytest.mark.parametrize("values", [ALL_ON, SIDECAR], ids=["deployment", "sidecar"])
def test_every_pod_gets_the_priority_class_labels_and_annotations(helm: Path, values: list[str]) -> None:
    rendered = documents(render(helm, *values, 'podLabels={"team": "platform", "app.kubernetes.io/name": "x"}').stdout)
    templates = pod_templates(rendered)
    expected = {"sx-schedexec", "sx-schedexec-test"} | ({"sx-schedexec-api"} if values == ALL_ON else set())
    assert set(templates) == expected
    for name, template in templates.items():
        assert template["spec"]["priorityClassName"] == "schedexec-critical", name
        assert template["spec"]["imagePullSecrets"] == [{"name": "registry"}], name
        assert template["metadata"]["labels"]["team"] == "platform", name
        assert template["metadata"]["annotations"]["example.com/owner"] == "platform", name
    for deployment in (d for d in rendered if d["kind"] == "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), "a podLabels entry never takes a pod out of its Deployment"
    default = documents(render(helm).stdout)
    assert "priorityClassName" not in named(default, "Deployment", "sx-schedexec")["spec"]["template"]["spec"]


def hook_objects(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in rendered if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]


@pytest.mark.parametrize(
    ("values", "where"), [([], NAMESPACE), (NAMESPACED, "team-a"), (['tests.namespace="probe"'], "probe")]
)
def test_the_helm_test_runs_one_execution_with_only_the_power_to_make_it(
    helm: Path, values: list[str], where: str
) -> None:
    rendered = documents(render(helm, *values).stdout)
    hooks = hook_objects(rendered)
    assert {d["kind"] for d in hooks} == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Pod"}
    for hook in hooks:
        policy = hook["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
        assert set(policy.split(",")) == {"before-hook-creation", "hook-succeeded"}, "kept for its log when it fails"
        assert hook["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    role = next(d for d in hooks if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == where
    assert set(rules_of(role)) == {(models.GROUP, models.PLURAL, v) for v in ("create", "get", "delete")}
    binding = next(d for d in hooks if d["kind"] == "RoleBinding")
    assert binding["metadata"]["namespace"] == where
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sx-schedexec-test", "namespace": NAMESPACE}]
    pod = next(d for d in hooks if d["kind"] == "Pod")
    assert pod["spec"]["serviceAccountName"] == "sx-schedexec-test" and pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/schedexec/operator:0.1.0", "the release's own image: nothing else to pull"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SCHEDEXEC_TEST_NAMESPACE"] == where
    assert env["SCHEDEXEC_TEST_IMAGE"] == "ghcr.io/schedexec/example-shop:0.1.0"
    script = next(d for d in hooks if d["kind"] == "ConfigMap")["data"]["helm_test.py"]
    assert script == (CHART / "scripts" / "helm_test.py").read_text().rstrip("\n")


def test_chart_yaml_carries_artifact_hubs_annotations() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    assert annotations["artifacthub.io/operator"] == "true"
    (crd,) = yaml.safe_load(annotations["artifacthub.io/crds"])
    assert (crd["kind"], crd["version"]) == (models.KIND, models.VERSION)
    assert crd["name"] == f"{models.PLURAL}.{models.GROUP}"
    (example,) = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    models.ScheduledExecution.model_validate(example)
    images = {i["image"] for i in yaml.safe_load(annotations["artifacthub.io/images"])}
    assert f"ghcr.io/schedexec/operator:{chart['appVersion']}" in images
    assert all(i.endswith(f":{chart['appVersion']}") for i in images), "the images of this chart version"
    for kind in ("links", "changes"):
        assert yaml.safe_load(annotations[f"artifacthub.io/{kind}"]), kind
    assert chart["kubeVersion"] and chart["home"] and chart["sources"]
