"""Kueue's part played by the test against the real Job controller (docs/kueue.md): an execution labelled
kueue.x-k8s.io/queue-name gets a suspended Job with that label and is Queued (phase Pending) while it stays so;
the test admits it as Kueue does (spec.suspend=false) and the run then runs, with its run timeout and the
watchdog counted from admission; a run never admitted still ends at the sequence deadline.

Kueue itself does not run here: what it does on admission is checked against its documentation and code
(docs/kueue.md), and what it adds to the pod template is accepted by the adoption check (tests/unit/test_kueue.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from schedexec import manifests, models
from tests.cluster.test_operator import create, execution, jobs
from tests.cluster.test_planted_job import operators_pod_defaults
from tests.support import OVERDUE_GRACE_SECONDS, LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

QUEUE = "team-a"


def queued(name: str, **spec: Any) -> dict[str, Any]:
    body = execution(name, "sleep", **spec)
    body["metadata"]["labels"] = {models.KUEUE_QUEUE_LABEL: QUEUE}
    return body


def status(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.execution(namespace, name).get("status") or {}


def succeeded(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == "Succeeded")


def test_a_run_held_suspended_past_its_run_timeout_runs_once_admitted(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    run_timeout = 6
    create(cluster, namespace, queued("held", args={"seconds": 3}, runTimeoutSeconds=run_timeout, timeoutSeconds=120))
    job = wait_for("the run's Job", lambda: next(iter(jobs(cluster, namespace)), None))
    assert job.spec.suspend is True
    assert job.metadata.labels[models.KUEUE_QUEUE_LABEL] == QUEUE

    def queued_status() -> dict[str, Any] | None:
        seen = status(cluster, namespace, "held")
        return seen if seen.get("conditions") and succeeded(seen)["reason"] == "Queued" else None

    seen = wait_for("the execution to say Queued", queued_status)
    assert seen["phase"] == "Pending"
    assert f"in LocalQueue {QUEUE}" in succeeded(seen)["message"]
    assert seen["currentRun"]["suspended"] is True and "admittedAt" not in seen["currentRun"]
    # the Event is posted right after the status that says Queued: waited for, not read at once
    events = wait_for("the Queued Event", lambda: [e for e in cluster.events(namespace) if e.reason == "Queued"])
    assert len(events) == 1 and f"LocalQueue {QUEUE}" in events[0].message

    # held longer than the run timeout and the watchdog's grace together: neither may count yet
    time.sleep(run_timeout + OVERDUE_GRACE_SECONDS + 2)
    seen = status(cluster, namespace, "held")
    assert seen["phase"] == "Pending", seen
    assert not cluster.core.list_namespaced_pod(namespace).items, "a suspended Job has no pod"

    cluster.batch.patch_namespaced_job(job.metadata.name, namespace, {"spec": {"suspend": False}})  # Kueue admits

    def running() -> dict[str, Any] | None:
        seen = status(cluster, namespace, "held")
        return seen if seen.get("phase") == "Running" else None

    seen = wait_for("the run to be Running", running, timeout=30)
    assert seen["currentRun"]["admittedAt"] and not seen["currentRun"].get("suspended")
    assert succeeded(seen)["reason"] == "Running"
    done = cluster.wait_finished(namespace, "held", 60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["result"] == "slept"
    reasons = [e.reason for e in cluster.events(namespace)]
    assert reasons.count("Queued") == 1


def test_a_run_never_admitted_ends_at_the_sequence_deadline(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, queued("never", runTimeoutSeconds=2, timeoutSeconds=4))
    done = cluster.wait_finished(namespace, "never", 60)
    assert done["status"]["phase"] == "TimedOut"
    assert done["status"]["error"]["reason"] == "Timeout"
    assert done["status"]["history"][-1]["outcome"] == "Stopped"
    wait_for("the suspended Job to be deleted", lambda: not jobs(cluster, namespace))


def test_an_execution_without_the_label_makes_no_suspended_job(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, execution("plain", "sleep", args={"seconds": 1}))
    job = wait_for("the run's Job", lambda: next(iter(jobs(cluster, namespace)), None))
    assert not job.spec.suspend and models.KUEUE_QUEUE_LABEL not in (job.metadata.labels or {})
    assert cluster.wait_finished(namespace, "plain", 60)["status"]["phase"] == "Succeeded"


def test_the_job_as_kueue_admits_it_on_the_real_api_server_is_adopted(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    """What Kueue writes on admission, written through the real API server (a suspended Job's scheduling
    directives are mutable until it first starts), then read back: still the Job the operator made for the run
    (manifests.made_for), so an operator restarted before recording it adopts it."""
    create(cluster, namespace, queued("admitted", args={"seconds": 1}, runTimeoutSeconds=60, timeoutSeconds=120))
    job = wait_for("the run's Job", lambda: next(iter(jobs(cluster, namespace)), None))
    name = job.metadata.name
    template_patch = {
        "metadata": {"labels": {"kueue.x-k8s.io/podset": "main"}, "annotations": {"example.com/check": "passed"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
    cluster.batch.patch_namespaced_job(name, namespace, {"spec": {"template": template_patch}})  # podset.Merge
    cluster.batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": False}})  # then RunWithPodSetsInfo
    stored = cluster.batch.api_client.sanitize_for_serialization(cluster.batch.read_namespaced_job(name, namespace))
    execution_model = models.ScheduledExecution.model_validate(cluster.execution(namespace, "admitted"))
    expected = manifests.job_manifest(execution_model, 1, {"seconds": 1}, operators_pod_defaults(), name=name)
    assert manifests.made_for(stored, expected) is None
    stored["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    assert manifests.made_for(stored, expected) is not None
