"""The Job of a run as the operator creates it (manifests.py): names, labels, the pod's restrictions."""

from __future__ import annotations

import json

import pytest

from schedexec import manifests, models
from schedexec_runner import contract
from tests.unit.builders import POD_DEFAULTS, pod_defaults
from tests.unit.test_decisions import execution


def test_job_names_are_deterministic_and_fit_label_values() -> None:
    assert manifests.job_name("verify", 3) == "verify-r3"
    long = "x" * 200
    assert manifests.job_name(long, 12) == manifests.job_name(long, 12)
    assert len(manifests.job_name(long, 12)) <= 63 and manifests.job_name(long, 12).endswith("-r12")
    assert manifests.job_name(long, 1) != manifests.job_name("x" * 199 + "y", 1)


def test_the_job_runs_restricted_with_the_contract_and_no_credentials_in_it() -> None:
    ex = execution(
        credentialsSecretRef={"name": "shop"},
        module="products",
        function="getCategories",
        retries=2,
        runTimeoutSeconds=30,
    )
    job = manifests.job_manifest(ex, 2, {"cursor": 7}, pod_defaults(run_as_user=1234))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert job["metadata"]["name"] == "sx1-r2"
    assert (
        job["metadata"]["ownerReferences"][0] | {"uid": "u1", "controller": True}
        == job["metadata"]["ownerReferences"][0]
    )
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 30
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1234
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations[manifests.ARGS_ANNOTATION] == json.dumps({"cursor": 7}, separators=(",", ":"))
    assert env[contract.ARGS_FILE] == contract.DEFAULT_ARGS_FILE and env["HOME"] == "/tmp"
    assert env[contract.RUN_INDEX] == "2" and env[contract.MODULE] == "products"
    assert env[contract.FUNCTION] == "getCategories" and env[contract.METHOD] == "poll"
    assert {"name": "credentials", "secret": {"secretName": "shop"}} in pod["volumes"]
    assert {"name": "credentials", "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True} in container[
        "volumeMounts"
    ]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize("name", ["a", "b" * 63])
def test_labels_stay_valid(name: str) -> None:
    ex = execution()
    ex.metadata.name = name
    labels = manifests.job_manifest(ex, 1, {}, POD_DEFAULTS)["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())
    assert labels["app.kubernetes.io/managed-by"] == "schedexec" and models.KIND
