"""spec.podTemplate on a real API server (issue 27 item 1): refused fields answer `kubectl apply` with the reason,
the same cases the models refuse with the same message; naming a ServiceAccount or a ConfigMap requires the
creator to be allowed what the run would do for them (crds/admission-policy.yaml); and a Job made with a
template, as the API server keeps it, is still the operator's (manifests.made_for)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schedexec import manifests, models
from tests.cluster.test_admission import CREATE, GOOD, account, manifest
from tests.support import LocalCluster, Operator, wait_for
from tests.unit import podtemplates
from tests.unit.builders import POD_DEFAULTS
from tests.unit.test_podtemplate import ADOPTED

pytestmark = pytest.mark.cluster


def with_template(template: dict[str, Any]) -> dict[str, Any]:
    """A spec with `template`, cancelled from the start: these tests are about admission and storage, and a run of
    one (its pod waiting for a node no one labelled) would hold a run slot of the session's operator."""
    return {**GOOD, "podTemplate": template, "cancel": True}


@pytest.mark.parametrize(("template", "message"), podtemplates.REFUSED)
def test_a_refused_field_answers_kubectl_apply_with_the_reason_and_the_models_agree(
    cluster: LocalCluster, namespace: str, template: dict[str, Any], message: str
) -> None:
    refused = cluster.apply(manifest(namespace, with_template(template)), check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
    with pytest.raises(ValidationError) as by_model:
        models.ScheduledExecutionSpec.model_validate(with_template(template))
    said = by_model.value.errors()[0]["msg"]
    assert message in said and said in refused.stderr, "the operator refuses it with the API server's words"


ADMITTED = [
    {"hostNetwork": False},
    {"metadata": {"labels": {"team": "shop"}, "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "no"}}},
    {"nodeSelector": {"example.com/pool": "batch"}, "tolerations": [{"key": "batch", "operator": "Exists"}]},
    {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}},
    {"env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
    {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.10"]}},
    {"serviceAccountName": "shop", "serviceAccountToken": {"audience": "vault"}},
]


def test_what_is_safe_is_admitted_and_read_back_by_the_models(cluster: LocalCluster, namespace: str) -> None:
    for i, template in enumerate(ADMITTED):
        cluster.apply(manifest(namespace, with_template(template), name=f"ok{i}"))
        stored = cluster.execution(namespace, f"ok{i}")
        parsed = models.ScheduledExecution.model_validate(stored).spec.pod_template
        assert (
            parsed is not None and parsed.model_dump(by_alias=True, exclude_none=True) == stored["spec"]["podTemplate"]
        ), "nothing pruned, nothing the models drop"


def test_the_pod_template_is_immutable(cluster: LocalCluster, namespace: str) -> None:
    cluster.apply(manifest(namespace, with_template({"nodeSelector": {"pool": "a"}}), name="fixed"))
    changed = cluster.apply(
        manifest(namespace, with_template({"nodeSelector": {"pool": "b"}}), name="fixed"), check=False
    )
    assert changed.returncode != 0 and "spec.podTemplate is immutable" in changed.stderr


# --- the admission policy: an identity and ConfigMaps used on the creator's behalf ----------------------------


def as_user(cluster: LocalCluster, user: str, body: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", f"--as={user}", "-f", "-", stdin=body, check=False)


def test_naming_a_service_account_requires_being_allowed_to_mint_its_tokens(
    cluster: LocalCluster, namespace: str
) -> None:
    token_of_shop = {
        "apiGroups": [""],
        "resources": ["serviceaccounts/token"],
        "verbs": ["create"],
        "resourceNames": ["shop"],
    }
    writer = account(cluster, namespace, "sawriter", [CREATE])
    minter = account(cluster, namespace, "saminter", [CREATE, token_of_shop])
    body = manifest(namespace, with_template({"serviceAccountName": "shop"}), "sa1")
    refused = as_user(cluster, writer, body)
    assert refused.returncode != 0
    assert (
        f"you may not create tokens of ServiceAccount shop in namespace {namespace}, so you may not name it in "
        "spec.podTemplate.serviceAccountName" in refused.stderr
    ), refused.stderr
    assert as_user(cluster, minter, body).returncode == 0, "who may mint its tokens may run as it"
    other = manifest(namespace, with_template({"serviceAccountName": "admin"}), "sa2")
    assert as_user(cluster, minter, other).returncode != 0, "only that ServiceAccount"
    delegate = account(cluster, namespace, "sadelegate", [CREATE, {**CREATE, "verbs": ["use-any-credentials"]}])
    assert as_user(cluster, delegate, other).returncode == 0, "the REST API's exemption"


def test_naming_a_config_map_requires_being_allowed_to_read_it(cluster: LocalCluster, namespace: str) -> None:
    get_mine = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["mine"]}
    user = account(cluster, namespace, "cmuser", [CREATE, get_mine])
    from_key = {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "theirs", "key": "k"}}}
    refused_env = as_user(cluster, user, manifest(namespace, with_template({"env": [from_key]}), "cm1"))
    assert refused_env.returncode != 0
    assert (
        f"you may not read every ConfigMap of theirs in namespace {namespace}, so you may not name them in "
        "spec.podTemplate.env or spec.podTemplate.envFrom" in refused_env.stderr
    ), refused_env.stderr
    refused_from = as_user(
        cluster, user, manifest(namespace, with_template({"envFrom": [{"configMapRef": {"name": "theirs"}}]}), "cm2")
    )
    assert refused_from.returncode != 0 and "ConfigMap of theirs" in refused_from.stderr
    mine = {
        "envFrom": [{"configMapRef": {"name": "mine"}}],
        "env": [{**from_key, "valueFrom": {"configMapKeyRef": {"name": "mine", "key": "k"}}}],
    }
    assert as_user(cluster, user, manifest(namespace, with_template(mine), "cm3")).returncode == 0
    plain = {"env": [{"name": "X", "value": "1"}], "nodeSelector": {"pool": "batch"}}
    assert as_user(cluster, user, manifest(namespace, with_template(plain), "cm4")).returncode == 0


# --- adoption: a Job made with a template, as the real API server keeps it ----------------------------------


@pytest.mark.usefixtures("without_session_operator")  # its Job of run 1 is made by the test, not adopted
def test_a_job_made_with_a_template_is_the_operators_as_the_api_server_keeps_it(
    cluster: LocalCluster, namespace: str
) -> None:
    """No operator runs here: the Job is created as the operator creates it, read back, and judged."""
    template = {
        **ADOPTED,
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]},
                    }
                ]
            }
        },
        "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
        "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["erp.internal"]}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "tolerations": [
            {"key": "batch", "value": "yes"},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
        "dnsPolicy": "Default",
        "runtimeClassName": "gvisor",
        "metadata": {"labels": {"team": "shop"}, "annotations": {"example.com/owner": "shop"}},
    }
    cluster.apply(manifest(namespace, with_template(template), name="adopted"))
    execution = models.ScheduledExecution.model_validate(cluster.execution(namespace, "adopted"))
    own = manifests.job_manifest(execution, 1, {"page": 1}, POD_DEFAULTS)
    cluster.batch.create_namespaced_job(namespace, own)
    name = own["metadata"]["name"]
    kept = json.loads(cluster.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)
    assert manifests.made_for(kept, own) is None, json.dumps(kept["spec"]["template"], indent=1)
    kept["spec"]["template"]["spec"]["serviceAccountName"] = "admin"
    assert manifests.made_for(kept, own) == "spec.template.spec.serviceAccountName differs"


# --- the operator's default template, merged by a real operator ------------------------------------------------

OPERATOR_DEFAULT = {
    "metadata": {"annotations": {"example.com/owner": "platform"}, "labels": {"tier": "batch"}},
    "env": [{"name": "HTTP_PROXY", "value": "http://proxy:3128"}, {"name": "LOG", "value": "info"}],
    "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
}


@pytest.mark.usefixtures("without_session_operator")
def test_the_operators_default_template_is_merged_under_the_executions(
    cluster: LocalCluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCHEDEXEC_RUN_POD_TEMPLATE reaches the run's Job through settings → PodDefaults → job_manifest, merged as
    docs/run-pods.md says: maps and env key by key (the execution's wins), other fields the execution's if set."""
    monkeypatch.setenv("SCHEDEXEC_RUN_POD_TEMPLATE", json.dumps(OPERATOR_DEFAULT))
    own = Operator(cluster, tmp_path)
    own.start()
    try:
        mine = {
            "metadata": {"labels": {"tier": "gold"}},
            "env": [{"name": "LOG", "value": "debug"}],
            "dnsConfig": {"searches": ["corp.example"]},
        }
        cluster.apply(
            manifest(
                namespace,
                {**with_template(mine), "method": "sleep", "args": {"seconds": 30}, "cancel": False},
                "merged",
            )
        )

        def job_name() -> str | None:
            current = cluster.execution(namespace, "merged").get("status", {}).get("currentRun") or {}
            return current.get("job")

        name = wait_for("the run's Job", job_name, timeout=60)
        job = json.loads(cluster.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)
    finally:
        own.stop()
    meta, pod = job["spec"]["template"]["metadata"], job["spec"]["template"]["spec"]
    assert meta["annotations"]["example.com/owner"] == "platform"
    assert meta["labels"]["tier"] == "gold", "the execution's value for a key both set"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["HTTP_PROXY"], env["LOG"]) == ("http://proxy:3128", "debug")
    assert pod["dnsConfig"] == {"searches": ["corp.example"]}, "an object: the execution's, whole"
    assert pod["automountServiceAccountToken"] is False


def test_an_operator_default_that_an_execution_would_be_refused_for_stops_the_operator_at_startup(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "SCHEDEXEC_RUN_POD_TEMPLATE", json.dumps({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]})
    )
    refused = Operator(cluster, tmp_path)
    refused.start()
    assert refused.process is not None and refused.process.wait(timeout=60) != 0
    assert "spec.podTemplate.volumes is refused" in refused.logs()
