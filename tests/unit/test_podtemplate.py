"""A run's pod template (spec.podTemplate and the operator's SCHEDEXEC_RUN_POD_TEMPLATE, issue 27 item 1).

What users rely on: the merge order and rules of docs/run-pods.md (a table here, row for row); whatever
template the CRD admits, the run's pod keeps everything that makes it safe (non-root, read-only root
filesystem, no privilege escalation, every capability dropped, no API token unless asked, no label or annotation
in Kubernetes' reserved namespaces (an AppArmor or seccomp profile), no system-* priority, the run labels and
the args annotation); refused fields are refused by the operator with the API server's own message; and a Job
made with a template is still recognised as the operator's once the API server defaulted it (made_for).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schedexec import manifests, models, podtemplate
from schedexec.settings import OperatorSettings
from tests.unit import podtemplates
from tests.unit.builders import POD_DEFAULTS, DefaultSettings
from tests.unit.test_adoption import created

SPEC = {"component": {"image": "ghcr.io/acme/shop:1.2"}, "method": "sync", "args": {"page": 1}}
METADATA = {"name": "nightly", "namespace": "ns", "uid": "0d4c8f56-0000-4000-8000-000000000001"}


def execution(template: dict[str, Any] | None = None, **spec: Any) -> models.ScheduledExecution:
    body: dict[str, Any] = {**SPEC, **spec}
    if template is not None:
        body["podTemplate"] = template
    return models.ScheduledExecution.model_validate({"metadata": METADATA, "spec": body})


def defaults(template: dict[str, Any] | None) -> manifests.PodDefaults:
    parsed = None if template is None else models.RunPodTemplate.model_validate(template)
    return dataclasses.replace(POD_DEFAULTS, run_pod_template=parsed)


def job(template: dict[str, Any] | None = None, default: dict[str, Any] | None = None) -> dict[str, Any]:
    return manifests.job_manifest(execution(template), 1, {"page": 1}, defaults(default))


def pod_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]  # type: ignore[no-any-return]


# --- the merge: docs/run-pods.md's table, row for row ---------------------------------------------------------

MERGE_TABLE = [
    # (what, operator default, execution's, merged)
    ("nothing set", {}, {}, {}),
    ("the default alone", {"priorityClassName": "batch"}, {}, {"priorityClassName": "batch"}),
    ("the execution's alone", {}, {"priorityClassName": "urgent"}, {"priorityClassName": "urgent"}),
    (
        "a field: the execution's wins",
        {"priorityClassName": "batch"},
        {"priorityClassName": "urgent"},
        {"priorityClassName": "urgent"},
    ),
    (
        "nodeSelector: key by key, the execution's wins",
        {"nodeSelector": {"pool": "batch", "zone": "a"}},
        {"nodeSelector": {"zone": "b", "disk": "ssd"}},
        {"nodeSelector": {"pool": "batch", "zone": "b", "disk": "ssd"}},
    ),
    (
        "labels and annotations: key by key",
        {"metadata": {"labels": {"team": "platform", "tier": "batch"}, "annotations": {"a": "1"}}},
        {"metadata": {"labels": {"tier": "gold"}}},
        {"metadata": {"labels": {"team": "platform", "tier": "gold"}, "annotations": {"a": "1"}}},
    ),
    (
        "env: by name, the execution's wins in the default's place, new ones after",
        {"env": [{"name": "HTTP_PROXY", "value": "http://proxy:3128"}, {"name": "LOG", "value": "info"}]},
        {"env": [{"name": "LOG", "value": "debug"}, {"name": "EXTRA", "value": "1"}]},
        {
            "env": [
                {"name": "HTTP_PROXY", "value": "http://proxy:3128"},
                {"name": "LOG", "value": "debug"},
                {"name": "EXTRA", "value": "1"},
            ]
        },
    ),
    (
        "tolerations: a list, replaced whole",
        {"tolerations": [{"key": "batch", "operator": "Exists"}]},
        {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
    ),
    (
        "envFrom: a list, replaced whole",
        {"envFrom": [{"configMapRef": {"name": "platform"}}]},
        {"envFrom": [{"configMapRef": {"name": "mine"}}]},
        {"envFrom": [{"configMapRef": {"name": "mine"}}]},
    ),
    (
        "affinity: an object, replaced whole",
        {"affinity": {"nodeAffinity": {"a": 1}, "podAntiAffinity": {"b": 2}}},
        {"affinity": {"podAffinity": {"c": 3}}},
        {"affinity": {"podAffinity": {"c": 3}}},
    ),
    (
        "serviceAccountName: the execution's wins",
        {"serviceAccountName": "platform"},
        {"serviceAccountName": "mine"},
        {"serviceAccountName": "mine"},
    ),
    (
        "dnsConfig: replaced whole",
        {"dnsConfig": {"searches": ["corp"]}},
        {"dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}},
        {"dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}},
    ),
]


@pytest.mark.parametrize(
    ("default", "mine", "merged"), [row[1:] for row in MERGE_TABLE], ids=[row[0] for row in MERGE_TABLE]
)
def test_the_merge_follows_the_documented_table(
    default: dict[str, Any], mine: dict[str, Any], merged: dict[str, Any]
) -> None:
    assert podtemplate.merge(default, mine) == merged
    parsed_default = models.RunPodTemplate.model_validate(default) if default else None
    from_models = podtemplate.run_template(parsed_default, execution(mine or None))
    assert from_models == podtemplate.wire(models.RunPodTemplate.model_validate(merged)), "the same from the models"


def test_the_merge_leaves_its_inputs_alone() -> None:
    default = {"env": [{"name": "A", "value": "1"}], "nodeSelector": {"pool": "batch"}}
    mine = {"env": [{"name": "A", "value": "2"}], "nodeSelector": {"zone": "b"}}
    before = copy.deepcopy((default, mine))
    podtemplate.merge(default, mine)["env"][0]["value"] = "changed"
    assert (default, mine) == before


def test_the_table_in_the_docs_names_every_template_field() -> None:
    """docs/run-pods.md has a row for each field of spec.podTemplate (the merge table users read)."""
    docs = (podtemplates.strategies.CRD_DIR.parent / "docs" / "run-pods.md").read_text()
    missing = [field for field in podtemplates.template_schema()["properties"] if f"| `{field}` |" not in docs]
    assert missing == []


# --- applied to the run's pod ----------------------------------------------------------------------------------


def test_a_template_places_annotates_and_configures_the_run() -> None:
    made = job(
        {
            "metadata": {"labels": {"team": "shop"}, "annotations": {"sidecar.istio.io/inject": "false"}},
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "low",
            "runtimeClassName": "gvisor",
            "env": [{"name": "HTTP_PROXY", "value": "http://proxy:3128"}],
            "envFrom": [{"configMapRef": {"name": "shop-settings"}, "prefix": "SHOP_"}],
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["10.0.0.10"]},
            "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["erp.internal"]}],
        },
        default={"nodeSelector": {"zone": "a"}, "env": [{"name": "NO_PROXY", "value": ".svc"}]},
    )
    meta, pod = made["spec"]["template"]["metadata"], pod_of(made)
    assert meta["labels"]["team"] == "shop" and meta["labels"][manifests.RUN_LABEL] == "1"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    assert meta["annotations"][manifests.ARGS_ANNOTATION] == '{"page":1}'
    assert pod["nodeSelector"] == {"zone": "a", "pool": "batch"}
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert (pod["priorityClassName"], pod["runtimeClassName"], pod["dnsPolicy"]) == ("low", "gvisor", "None")
    assert pod["dnsConfig"] == {"nameservers": ["10.0.0.10"]}
    assert pod["hostAliases"] == [{"ip": "10.0.0.5", "hostnames": ["erp.internal"]}]
    container = pod["containers"][0]
    names = [env["name"] for env in container["env"]]
    assert names[-2:] == ["NO_PROXY", "HTTP_PROXY"], "the template's after the contract's: $(SCHEDEXEC_...) works"
    assert names.index("SCHEDEXEC_METHOD") < names.index("NO_PROXY")
    assert container["envFrom"] == [{"configMapRef": {"name": "shop-settings"}, "prefix": "SHOP_"}]
    assert pod["automountServiceAccountToken"] is False


def test_without_a_template_the_pod_is_as_before() -> None:
    assert job() == job({}) == job(None, default={})
    assert "serviceAccountName" not in pod_of(job()) and pod_of(job())["automountServiceAccountToken"] is False


def test_a_service_account_runs_the_pod_without_its_api_token_unless_asked() -> None:
    pod = pod_of(job({"serviceAccountName": "shop-identity"}))
    assert pod["serviceAccountName"] == "shop-identity"
    assert pod["automountServiceAccountToken"] is False, "workload identity, not API credentials"
    asked = pod_of(job({"serviceAccountName": "shop-identity", "automountServiceAccountToken": True}))
    assert asked["automountServiceAccountToken"] is True


def test_an_audience_bound_token_is_projected_read_only_and_its_path_given() -> None:
    pod = pod_of(job({"serviceAccountName": "shop", "serviceAccountToken": {"audience": "vault"}}))
    volume = next(v for v in pod["volumes"] if v["name"] == podtemplate.TOKEN_VOLUME)
    assert volume["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}}
    ]
    container = pod["containers"][0]
    assert {"name": podtemplate.TOKEN_VOLUME, "mountPath": podtemplate.TOKEN_DIR, "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {
        "name": podtemplate.SERVICE_ACCOUNT_TOKEN,
        "value": "/var/run/secrets/schedexec.io/serviceaccount/token",
    } in (container["env"])
    assert pod["automountServiceAccountToken"] is False, "only the audience-bound token, not the API token"


# --- refused: by the operator, with the API server's message --------------------------------------------------


@pytest.mark.parametrize(("template", "message"), podtemplates.REFUSED)
def test_a_refused_field_is_refused_by_the_model_with_the_crds_message(template: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        models.RunPodTemplate.model_validate(template)
    errors = refused.value.errors()
    assert message in errors[0]["msg"], errors
    assert errors[0]["msg"] in crd_messages(), "the model says what the API server says"


def crd_messages() -> set[str]:
    """Every CEL message under spec.podTemplate in the committed CRD."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(rule["message"] for rule in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(podtemplates.template_schema())
    return found


def test_every_refusal_says_why() -> None:
    for refusal in models.TEMPLATE_REFUSALS:
        assert refusal.message.startswith(f"spec.podTemplate.{refusal.field} ")
        assert ":" in refusal.message, "what, then why"


@pytest.mark.parametrize(
    "template",
    [
        {"hostNetwork": False, "hostPID": False},
        {"env": [{"name": "LOG", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "log"}}}]},
        {"env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
        {"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}},
        {"metadata": {"labels": {"app.kubernetes.io/name": "shop", "app.kubernetes.io/part-of": "erp"}}},
        {"metadata": {"annotations": {"autoscaling.x-k8s.io/provisioning-class-name": "queued-provisioning.gke.io"}}},
        {"metadata": {"labels": {"notkubernetes.io/a": "a", "kubernetes.iox/b": "b", "team.k8s.io.example/c": "c"}}},
        {"nodeSelector": {"kubernetes.io/arch": "arm64"}},
        {"nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": "node-1"}},
        {"nodeSelector": {"node.kubernetes.io/instance-type": "m5.large", "topology.kubernetes.io/zone": "eu-west-1a"}},
        {"priorityClassName": "batch-low"},
        {"priorityClassName": "system"},
        {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}},
        {"serviceAccountName": "s", "serviceAccountToken": {"audience": "a"}, "automountServiceAccountToken": True},
    ],
)
def test_what_is_safe_is_admitted(template: dict[str, Any]) -> None:
    assert models.RunPodTemplate.model_validate(template)


@given(key=podtemplates.label_keys())
def test_the_model_refuses_a_key_exactly_when_the_crds_rules_do(key: str) -> None:
    """models.key_problem against the CEL rules as tests/unit/podtemplates.py words them: labels' and
    annotations' keys (valid, not reserved) and nodeSelector's (valid only: node labels are Kubernetes' own)."""
    assert (models.key_problem(key) is None) == podtemplates.key_admitted(key)
    assert (models.key_problem(key, reserved=False) is None) == podtemplates.key_valid(key)


@pytest.mark.parametrize(
    "key",
    [
        "container.apparmor.security.beta.kubernetes.io/run",
        "seccomp.security.alpha.kubernetes.io/pod",
        "container.seccomp.security.alpha.kubernetes.io/run",
        "kubernetes.io/egress-bandwidth",
        "k8s.io/x",
        "sigs.k8s.io/x",
    ],
)
def test_kubernetes_reserved_keys_are_refused_in_metadata_but_not_in_node_selector(key: str) -> None:
    for part in ("labels", "annotations"):
        with pytest.raises(ValidationError) as refused:
            models.RunPodTemplate.model_validate({"metadata": {part: {key: "unconfined"}}})
        assert refused.value.errors()[0]["msg"] in crd_messages()
    assert models.RunPodTemplate.model_validate({"nodeSelector": {key: "x"}}).node_selector == {key: "x"}


def test_the_operators_default_may_not_set_a_reserved_annotation_either() -> None:
    unconfined = {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/run": "unconfined"}}}
    with pytest.raises(ValidationError, match="may not use the prefixes"):
        defaults(unconfined)


def test_the_operators_default_is_checked_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDEXEC_RUN_POD_TEMPLATE", json.dumps({"nodeSelector": {"pool": "batch"}}))
    assert OperatorSettings().pod_defaults().run_pod_template == models.RunPodTemplate(node_selector={"pool": "batch"})
    monkeypatch.setenv("SCHEDEXEC_RUN_POD_TEMPLATE", json.dumps({"hostNetwork": True}))
    with pytest.raises(ValidationError) as refused:
        OperatorSettings()
    assert "run_pod_template" in str(refused.value)
    assert "spec.podTemplate.hostNetwork is refused" in str(refused.value)


def test_the_default_template_setting_reaches_the_pod_defaults() -> None:
    template = models.RunPodTemplate(priority_class_name="batch")
    assert DefaultSettings(run_pod_template=template).pod_defaults() == dataclasses.replace(
        POD_DEFAULTS, run_pod_template=template
    )


# --- whatever the CRD admits: the run stays safe, and its Job is adopted ----------------------------------------


def security_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """What makes a run safe, as the pod shows it."""
    pod = pod_of(manifest)
    meta = manifest["spec"]["template"]["metadata"]
    container = pod["containers"][0]
    return {
        "pod": pod["securityContext"],
        "container": container["securityContext"],
        "hostNamespaces": [pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")],
        "nodeName": pod.get("nodeName"),
        "containers": [c["name"] for c in pod["containers"]] + [c["name"] for c in pod.get("initContainers", [])],
        "volumes": [v for v in pod["volumes"] if v["name"] != podtemplate.TOKEN_VOLUME],
        "contract": [e for e in container["env"] if e["name"].startswith("SCHEDEXEC_") or e["name"] == "HOME"],
        "enableServiceLinks": pod["enableServiceLinks"],
        "kubernetesKeys": [k for k in {**meta.get("labels", {}), **meta.get("annotations", {})} if kubernetes_key(k)],
        "systemPriority": str(pod.get("priorityClassName", "")).startswith("system-"),
    }


def kubernetes_key(key: str) -> bool:
    """A key in Kubernetes' reserved namespaces (an AppArmor or seccomp profile among them) a template may not set."""
    return podtemplates.KUBERNETES_KEY.match(key) is not None and not key.startswith(podtemplates.KUBERNETES_ALLOWED)


BARE = job()


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(mine=podtemplates.admitted(), default=st.none() | podtemplates.admitted())
def test_whatever_template_is_admitted_the_run_keeps_every_security_field(
    mine: dict[str, Any], default: dict[str, Any] | None
) -> None:
    made = job(mine, default)  # the CRD admitted both: the models must read them
    expected = security_of(BARE)
    merged = podtemplate.merge(default or {}, mine)
    if "serviceAccountToken" in merged:
        expected["contract"] = [
            *expected["contract"],
            {"name": podtemplate.SERVICE_ACCOUNT_TOKEN, "value": podtemplate.TOKEN_PATH},
        ]
    assert security_of(made) == expected
    assert pod_of(made)["automountServiceAccountToken"] is (merged.get("automountServiceAccountToken") is True)
    meta = made["spec"]["template"]["metadata"]
    bare_meta = BARE["spec"]["template"]["metadata"]
    assert {k: meta["labels"][k] for k in bare_meta["labels"]} == bare_meta["labels"], "the run labels intact"
    assert meta["annotations"][manifests.ARGS_ANNOTATION] == bare_meta["annotations"][manifests.ARGS_ANNOTATION]
    assert made["metadata"] == BARE["metadata"], "the Job's own labels are the operator's alone"


def with_template_defaults(job: dict[str, Any]) -> dict[str, Any]:
    """`created(job)` plus what the API server defaults inside what a template adds."""
    kept = created(job)
    pod = kept["spec"]["template"]["spec"]
    pod["dnsPolicy"] = pod_of(job).get("dnsPolicy", "ClusterFirst")  # created() defaults it, an explicit one stays
    if "serviceAccountName" in pod:
        pod["serviceAccount"] = pod["serviceAccountName"]
    for env in pod["containers"][0]["env"]:
        source = env.get("valueFrom", {})
        if "fieldRef" in source:
            source["fieldRef"].setdefault("apiVersion", "v1")
        if "resourceFieldRef" in source:
            source["resourceFieldRef"].setdefault("divisor", "0")
    for volume in pod["volumes"]:
        if "projected" in volume:
            volume["projected"]["defaultMode"] = 420
    return kept


ADOPTED = {
    "serviceAccountName": "shop",
    "serviceAccountToken": {"audience": "vault"},
    "env": [
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ],
    "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
    "nodeSelector": {"pool": "batch"},
    "metadata": {"annotations": {"team": "shop"}},
}


def env_named(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(env for env in pod["containers"][0]["env"] if env["name"] == name)  # type: ignore[no-any-return]


def test_a_job_made_with_a_template_is_adopted_as_the_api_server_keeps_it() -> None:
    made = job(ADOPTED)
    assert manifests.made_for(with_template_defaults(made), made) is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda pod: pod.update(serviceAccount="other"), "spec.template.spec.serviceAccount differs"),
        (lambda pod: pod["volumes"][-1]["projected"].update(defaultMode=0o777), "defaultMode differs"),
        (
            lambda pod: pod["tolerations"].append({"operator": "Exists"}),
            "spec.template.spec.tolerations has other items",
        ),
        (lambda pod: pod.update(hostNetwork=True), "spec.template.spec.hostNetwork is set"),
        (
            lambda pod: env_named(pod, "NODE")["valueFrom"]["fieldRef"].update(apiVersion="v2"),
            "apiVersion differs",
        ),
    ],
)
def test_a_job_with_a_template_field_changed_is_not_adopted(change: Any, named: str) -> None:
    made = job(ADOPTED)
    forged = with_template_defaults(made)
    change(forged["spec"]["template"]["spec"])
    found = manifests.made_for(forged, made)
    assert found is not None and named in found, found


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(mine=podtemplates.admitted())
def test_any_admitted_template_makes_a_job_that_is_adopted(mine: dict[str, Any]) -> None:
    made = job(mine)
    assert manifests.made_for(with_template_defaults(made), made) is None
