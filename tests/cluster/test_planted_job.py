"""A Job planted under an execution's next run's name is never taken for that run (issue 25), on the real control
plane without the chart's policies (the cluster tier installs crds/ only): the operator's own check
(manifests.made_for, in kube.Cluster.create_job) is what refuses it.

The attacker is a second user of the namespace who may create Jobs and read executions, nothing more. From the
victim's execution (its name and uid) they work out the name of its next run's Job (manifests.job_name), and
make a Job of that name first, owned by the victim's execution, the way the operator would make it but with
args of their choosing: its pod reports a forged result. Before, the operator adopted it (the owner's uid was
all it checked) and the forged result became the victim's.

The other side: the operator's own Job, left by a crash before the status named it, is adopted as the real API
server keeps it (defaults, selector and controller labels added), and its run's real result is kept.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schedexec import manifests, models
from schedexec.settings import OperatorSettings
from tests.support import LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

IMAGE = "ghcr.io/schedexec/test-component:dev"
ATTACKER = "planter"


def create(cluster: LocalCluster, namespace: str, name: str, args: dict[str, Any]) -> None:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name},
        "spec": {"component": {"image": IMAGE}, "method": "countdown", "args": args},
    }
    cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)


def operators_pod_defaults() -> manifests.PodDefaults:
    """The pod defaults of the tier's operator (tests.support.Operator: results through the termination message
    only)."""
    return dataclasses.replace(OperatorSettings().pod_defaults(), max_result_bytes=0)


def attacker(cluster: LocalCluster, namespace: str) -> str:
    """A ServiceAccount of the namespace that may create Jobs and get executions; its username."""
    cluster.kubectl("create", "serviceaccount", ATTACKER, "-n", namespace)
    cluster.kubectl("create", "role", ATTACKER, "-n", namespace, "--verb=create", "--resource=jobs.batch")
    cluster.kubectl(
        "create",
        "role",
        f"{ATTACKER}-reads",
        "-n",
        namespace,
        "--verb=get",
        f"--resource={models.PLURAL}.{models.GROUP}",
    )
    for role in (ATTACKER, f"{ATTACKER}-reads"):
        cluster.kubectl(
            "create", "rolebinding", role, "-n", namespace, f"--role={role}", f"--serviceaccount={namespace}:{ATTACKER}"
        )
    return f"system:serviceaccount:{namespace}:{ATTACKER}"


def as_user(cluster: LocalCluster, user: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(*args, f"--as={user}", stdin=stdin, check=False)


def test_a_job_planted_under_the_next_runs_name_is_never_taken_for_the_run(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    user = attacker(cluster, namespace)
    assert "yes" in as_user(cluster, user, "auth", "can-i", "create", "jobs", "-n", namespace).stdout
    finalizers = ("auth", "can-i", "update", models.PLURAL, "--subresource=finalizers", "-n", namespace)
    assert "no" in as_user(cluster, user, *finalizers).stdout, "it cannot set blockOwnerDeletion where that is checked"
    policies = cluster.kubectl("get", "validatingadmissionpolicies", "-o", "name").stdout.split()
    assert not [p for p in policies if p.endswith("-run-jobs")], "no chart policy: the operator's check alone"

    create(cluster, namespace, "victim", {"left": 1, "every": 25})  # run 2 is due 25 s after run 1
    read = as_user(cluster, user, "get", models.PLURAL, "victim", "-n", namespace, "-o", "json")
    assert read.returncode == 0, read.stderr
    wait_for(
        "run 1 to schedule run 2",
        lambda: (cluster.execution(namespace, "victim").get("status") or {}).get("runs") == 1,
        timeout=90,
    )
    victim = models.ScheduledExecution.model_validate(
        json.loads(as_user(cluster, user, "get", models.PLURAL, "victim", "-n", namespace, "-o", "json").stdout)
    )
    assert victim.status.next_args == {"left": 0, "every": 25, "seen": [1]}
    # the attacker's Job: run 2's name and owner, the operator's shape, args of their own (the result they want)
    planted = manifests.job_manifest(victim, 2, {"left": 0, "seen": ["forged"]}, operators_pod_defaults())
    assert planted["metadata"]["name"] == manifests.job_name("victim", victim.metadata.uid, 2)
    # blockOwnerDeletion too: only the OwnerReferencesPermissionEnforcement plugin (off by default, as here)
    # would ask for `update` on the execution's finalizers, which this user lacks
    made = as_user(cluster, user, "create", "-n", namespace, "-f", "-", stdin=json.dumps(planted))
    assert made.returncode == 0, made.stderr

    done = cluster.wait_finished(namespace, "victim", timeout=120)
    status = done["status"]
    assert status.get("result") is None, f"the planted Job's result was taken: {status.get('result')}"
    assert status["phase"] == models.Phase.FAILED
    assert status["error"]["reason"] == models.Reason.JOB_NAME_TAKEN
    name = planted["metadata"]["name"]
    assert f"Job {namespace}/{name} exists and was not made by schedexec for this run" in status["error"]["message"]
    assert "annotations['schedexec.io/args'] differs" in status["error"]["message"], "it names what differs"
    assert status["partialResult"] == {"remoteJob": "job-42", "seen": [1]}, "run 1's own, nothing forged"
    assert [run["outcome"] for run in status["history"]][:1] == [models.RunOutcome.SCHEDULED]


@pytest.mark.usefixtures("without_session_operator")
def test_the_operators_own_job_left_by_a_crash_is_adopted_as_the_api_server_keeps_it(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """No operator runs while the execution's run 1 Job is made exactly as the operator makes it (as if the
    operator crashed after creating it, before the status named it), and the Job controller starts its pod.
    Read back, the real API server's Job is the operator's (made_for); an operator started then adopts it
    (its creation answers 409) and keeps the run's real result."""
    create(cluster, namespace, "crashed", {"left": 0})
    body = cluster.execution(namespace, "crashed")
    crashed = models.ScheduledExecution.model_validate(body)
    own = manifests.job_manifest(crashed, 1, {"left": 0}, operators_pod_defaults())
    cluster.batch.create_namespaced_job(namespace, own)
    name = own["metadata"]["name"]

    def started() -> dict[str, Any] | None:
        # kubectl's JSON, not the Python client's models: those drop the fields their version does not know
        job: dict[str, Any] = json.loads(cluster.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)
        return job if (job.get("status") or {}).get("startTime") else None

    kept: dict[str, Any] = wait_for("the Job controller to start the Job", started)
    assert manifests.made_for(kept, own) is None, json.dumps(kept, indent=1)
    forged = json.loads(json.dumps(kept))
    forged["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/forger:1"
    assert manifests.made_for(forged, own) == "spec.template.spec.containers[0].image differs"

    restarted = Operator(cluster, tmp_path)
    restarted.start()
    try:
        done = cluster.wait_finished(namespace, "crashed", timeout=120)
    finally:
        restarted.stop()
    assert done["status"]["phase"] == models.Phase.SUCCEEDED, done["status"]
    assert done["status"]["result"] == {"seen": [1]}
    assert [run["index"] for run in done["status"]["history"]] == [1], "adopted, not run again"
