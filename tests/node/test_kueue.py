"""A run queued by Kueue on the real node (docs/kueue.md): the chart's operator creates the run's Job suspended
with the execution's kueue.x-k8s.io/queue-name label; the test holds it suspended (as a LocalQueue without quota
would) longer than its runTimeoutSeconds and the chart's watchdog grace together, then admits it as Kueue does
(spec.suspend=false). The run reports Queued (phase Pending) then Running, and succeeds in its container: its run
timeout (the Job controller's activeDeadlineSeconds) and the watchdog counted from admission, not from the Job's
creation. Kueue itself does not run here."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from schedexec import models
from tests.node.support import TEST_IMAGE
from tests.support import REPO, LocalCluster, wait_for

pytestmark = pytest.mark.node

QUEUE = "team-a"
RUN_TIMEOUT_SECONDS = 30
"""Room for the pod to start on a busy node and sleep: a Job admitted and resumed gets all of it."""
SLEEP_SECONDS = 3


def overdue_grace_seconds() -> int:
    """The chart's watchdog grace (operator.overdueGraceSeconds): the node tier installs it unchanged."""
    values = yaml.safe_load((REPO / "charts" / "schedexec" / "values.yaml").read_text())
    return int(values["operator"]["overdueGraceSeconds"])


def status_of(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.execution(namespace, name).get("status") or {}


def reason_of(status: dict[str, Any]) -> str | None:
    return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Succeeded"), None)


def test_a_suspended_then_admitted_run_is_queued_then_running_with_its_timeouts_from_admission(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": "queued", "namespace": node_namespace, "labels": {models.KUEUE_QUEUE_LABEL: QUEUE}},
        "spec": {
            "component": {"image": TEST_IMAGE},
            "method": "sleep",
            "args": {"seconds": SLEEP_SECONDS},
            "runTimeoutSeconds": RUN_TIMEOUT_SECONDS,
            "timeoutSeconds": 600,
        },
    }
    node_cluster.apply(body)
    job = wait_for(
        "the run's Job", lambda: next(iter(node_cluster.batch.list_namespaced_job(node_namespace).items), None)
    )
    assert job.spec.suspend is True and job.metadata.labels[models.KUEUE_QUEUE_LABEL] == QUEUE

    def queued() -> dict[str, Any] | None:
        current = status_of(node_cluster, node_namespace, "queued")
        return current if reason_of(current) == "Queued" else None

    seen = wait_for("the execution to say Queued", queued)
    assert seen["phase"] == "Pending" and seen["currentRun"]["suspended"] is True

    held = RUN_TIMEOUT_SECONDS + overdue_grace_seconds() + 5
    deadline = time.monotonic() + held
    while time.monotonic() < deadline:  # held suspended: it must stay queued, with no pod, all along
        seen = status_of(node_cluster, node_namespace, "queued")
        assert (seen["phase"], reason_of(seen)) == ("Pending", "Queued"), seen
        assert not node_cluster.core.list_namespaced_pod(node_namespace).items, "a suspended Job has no pod"
        time.sleep(2)

    node_cluster.batch.patch_namespaced_job(job.metadata.name, node_namespace, {"spec": {"suspend": False}})

    def running() -> dict[str, Any] | None:
        current = status_of(node_cluster, node_namespace, "queued")
        return current if current.get("phase") == "Running" else None

    seen = wait_for("the admitted run to be Running", running, timeout=60)
    assert seen["currentRun"]["admittedAt"] and reason_of(seen) in ("Running", "ContainerCreating", "Scheduling")
    done = node_cluster.wait_finished(node_namespace, "queued", timeout=120)["status"]
    assert done["phase"] == "Succeeded", done
    assert done["result"] == "slept"
    events = [e for e in node_cluster.core.list_namespaced_event(node_namespace).items if e.reason == "Queued"]
    assert len(events) == 1 and f"LocalQueue {QUEUE}" in events[0].message
