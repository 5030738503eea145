"""The Job of a run as the operator creates it (manifests.py): names, labels, the pod's restrictions."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schedexec import manifests, models
from schedexec_runner import contract
from tests.unit.builders import POD_DEFAULTS, pod_defaults
from tests.unit.test_decisions import execution


def test_job_names_are_deterministic_readable_and_fit_label_values() -> None:
    tag = manifests.execution_tag("u1")
    assert len(tag) == manifests.TAG_LENGTH and manifests.job_name("verify", "u1", 3) == f"verify-{tag}-r3"
    long = "x" * 200
    assert manifests.job_name(long, "u1", 12) == manifests.job_name(long, "u1", 12)
    assert manifests.job_name(long, "u1", 12) == f"{'x' * (63 - len(tag) - 5)}-{tag}-r12"
    cut = manifests.job_name("a" * 47 + "-.b", "u1", 1)
    assert cut == f"{'a' * 47}-{tag}-r1" and len(cut) <= 63, "a cut name ends with a letter or digit"


UIDS = st.uuids().map(str)
NAMES = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", fullmatch=True)
"""Execution names as Kubernetes allows them (DNS subdomains, up to 253 characters)."""


@given(name=NAMES, first=UIDS, second=UIDS, index=st.integers(1, 10_000))
def test_an_execution_made_again_under_its_name_gets_jobs_and_a_config_map_of_its_own(
    name: str, first: str, second: str, index: int
) -> None:
    """`kubectl replace --force` (GitOps "Replace") while the old Jobs drain: the new uid, new names."""
    assume(manifests.execution_tag(first) != manifests.execution_tag(second))
    old, new = manifests.job_name(name, first, index), manifests.job_name(name, second, index)
    assert old != new and len(old) <= 63 and len(new) <= 63
    assert old.startswith(name[:20].rstrip("-.")) and new.startswith(name[:20].rstrip("-.")), "still readable"
    assert manifests.owned_name(name, first, "result") != manifests.owned_name(name, second, "result")


@given(victim=NAMES, victim_uid=UIDS, attacker_uid=UIDS, index=st.integers(1, 10_000), data=st.data())
def test_no_name_chosen_to_collide_lands_on_another_executions_job(
    victim: str, victim_uid: str, attacker_uid: str, index: int, data: st.DataObject
) -> None:
    """Before, a long name's Job was its cut and hashed form + `-r<i>`: an execution named that form took its Job
    name. Now an attacker's names are made from its own uid, whatever name it picks (the victim's, its Job's
    name or any cut of it, its legacy Job name's prefix)."""
    assume(manifests.execution_tag(victim_uid) != manifests.execution_tag(attacker_uid))
    target = manifests.job_name(victim, victim_uid, index)
    legacy = manifests.legacy_job_name(victim, index)
    chosen = data.draw(
        st.sampled_from([victim, target, target.removesuffix(f"-r{index}"), legacy.removesuffix(f"-r{index}"), legacy])
        | st.integers(1, len(target)).map(lambda n: target[:n].rstrip("-.") or "x")
    )
    for attacker_index in {index, 1, index + 1}:
        assert manifests.job_name(chosen, attacker_uid, attacker_index) != target
    assert manifests.owned_name(chosen, attacker_uid, "result") != manifests.owned_name(victim, victim_uid, "result")


def test_a_job_of_a_run_in_progress_made_before_the_upgrade_keeps_its_legacy_name() -> None:
    """Operators before the uid tag named run i's Job `<name>-r<i>`: if the execution owns one, it is that run's."""
    assert manifests.legacy_job_name("nightly", 4) == "nightly-r4"
    assert manifests.run_job("nightly", "u1", 4, ["nightly-r4"]) == "nightly-r4"
    assert manifests.run_job("nightly", "u1", 4, ["nightly-r3"]) == manifests.job_name("nightly", "u1", 4)
    assert manifests.run_job("nightly", "u1", 4, []) == manifests.job_name("nightly", "u1", 4)
    assert manifests.run_job_names("nightly", "u1", 4) == (manifests.job_name("nightly", "u1", 4), "nightly-r4")
    long = "y" * 100
    assert manifests.run_job(long, "u1", 2, [manifests.legacy_job_name(long, 2)]) == manifests.legacy_job_name(long, 2)


def test_a_result_whose_name_is_taken_is_kept_under_a_name_the_api_server_draws() -> None:
    ours, _ = manifests.result_config_map(execution(), '{"x": 1}')
    drawn = manifests.unclaimed_name(ours)
    assert "name" not in drawn["metadata"] and drawn["metadata"]["generateName"] == ours["metadata"]["name"] + "-"
    assert drawn["metadata"]["ownerReferences"] == ours["metadata"]["ownerReferences"]
    assert drawn["data"] == ours["data"] and "name" in ours["metadata"], "the original is left as it was"


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
    assert job["metadata"]["name"] == manifests.job_name("sx1", "u1", 2)
    assert manifests.job_manifest(ex, 2, {}, POD_DEFAULTS, name="sx1-r2")["metadata"]["name"] == "sx1-r2"
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
