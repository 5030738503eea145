"""The Job of a run and how a finished Job is read back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schedexec import models, runs
from schedexec.runs import RunState
from schedexec_runner import contract, envelope
from tests.unit.test_decisions import execution


def test_job_names_are_deterministic_and_fit_label_values() -> None:
    assert runs.job_name("verify", 3) == "verify-r3"
    long = "x" * 200
    assert runs.job_name(long, 12) == runs.job_name(long, 12)
    assert len(runs.job_name(long, 12)) <= 63 and runs.job_name(long, 12).endswith("-r12")
    assert runs.job_name(long, 1) != runs.job_name("x" * 199 + "y", 1)


def test_the_job_runs_restricted_with_the_contract_and_no_credentials_in_it() -> None:
    ex = execution(
        credentialsSecretRef={"name": "shop"},
        module="products",
        function="getCategories",
        retries=2,
        runTimeoutSeconds=30,
    )
    job = runs.job_manifest(ex, 2, {"cursor": 7}, runs.PodDefaults(run_as_user=1234))
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
    assert annotations[runs.ARGS_ANNOTATION] == json.dumps({"cursor": 7}, separators=(",", ":"))
    assert env[contract.ARGS_FILE] == contract.DEFAULT_ARGS_FILE and env["HOME"] == "/tmp"
    assert env[contract.RUN_INDEX] == "2" and env[contract.MODULE] == "products"
    assert env[contract.FUNCTION] == "getCategories" and env[contract.METHOD] == "poll"
    assert {"name": "credentials", "secret": {"secretName": "shop"}} in pod["volumes"]
    assert {"name": "credentials", "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True} in container[
        "volumeMounts"
    ]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": f"{r} happened"} for t, r in conditions
            ]
        }
    }


def pod(exit_code: int, message: str, finished: str = "2026-01-01T00:00:01Z") -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "containerStatuses": [
                {
                    "name": runs.CONTAINER,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "message": message,
                            "reason": "Error" if exit_code else "Completed",
                            "finishedAt": finished,
                        }
                    },
                }
            ]
        },
    }


def test_observing_jobs() -> None:
    assert runs.observe(None, []) == runs.MISSING
    assert runs.observe(job(), []).state is RunState.ACTIVE
    done = runs.observe(job(("Complete", "")), [pod(0, envelope.encode(envelope.done(5)))])
    assert done.state is RunState.SUCCEEDED and done.envelope == envelope.Done(5) and done.exit_code == 0
    garbage = runs.observe(job(("Complete", "")), [pod(0, "nope")])
    assert garbage.envelope is None and garbage.envelope_problem is not None


def test_a_failed_job_reports_the_newest_pods_message() -> None:
    failed = runs.observe(
        job(("Failed", "BackoffLimitExceeded"))
        | {"status": {**job(("Failed", "BackoffLimitExceeded"))["status"], "failed": 2}},
        [pod(1, "first try", "2026-01-01T00:00:01Z"), pod(2, "second try", "2026-01-01T00:00:09Z")],
    )
    assert failed.state is RunState.FAILED and failed.failure_reason == "BackoffLimitExceeded"
    assert failed.attempts == 2, "the Job controller's count of pods that ran"
    assert failed.exit_code == 2 and failed.log_tail == "second try", "the newest pod's output, kept apart"
    assert "second try" not in failed.failure_message, "component output is not in the failure message"


@pytest.mark.parametrize("name", ["a", "b" * 63])
def test_labels_stay_valid(name: str) -> None:
    ex = execution()
    ex.metadata.name = name
    labels = runs.job_manifest(ex, 1, {}, runs.PodDefaults())["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())
    assert labels["app.kubernetes.io/managed-by"] == "schedexec" and models.KIND
