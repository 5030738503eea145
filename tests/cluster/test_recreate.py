"""An execution deleted and made again under its name while its old run's Job is still being garbage-collected
(`kubectl replace --force`, GitOps "Replace"): the new one runs at once, with a Job of its own.

Before, a run's Job was named `<execution>-r<index>`: the new execution's run 1 met the old one's Job, owned by
another uid, and failed for good (JobNameTaken). A test finalizer holds the old Job in its draining state for
as long as the test needs (the garbage collector would otherwise delete it within seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from schedexec import manifests, models
from tests.support import LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

IMAGE = "ghcr.io/schedexec/test-component:dev"
HOLD = "schedexec.io/test-hold"
"""A finalizer no controller removes: the old Job stays, being deleted, until the test lets it go."""


def sleeper(seconds: int) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": "again"},
        "spec": {"component": {"image": IMAGE}, "method": "sleep", "args": {"seconds": seconds}},
    }


def current_job(cluster: LocalCluster, namespace: str, uid: str) -> str | None:
    """The Job the status of execution `again` (of uid `uid`) names for its current run."""
    try:
        body = cluster.execution(namespace, "again")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if body["metadata"]["uid"] != uid:
        return None
    status = body.get("status") or {}
    if status.get("phase") == models.Phase.FAILED:  # before: JobNameTaken, the old execution's Job in the way
        pytest.fail(f"execution again ended Failed: {status.get('error')}")
    return (status.get("currentRun") or {}).get("job")  # type: ignore[no-any-return]


def job(cluster: LocalCluster, namespace: str, name: str) -> Any:
    try:
        return cluster.batch.read_namespaced_job(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.mark.usefixtures("without_session_operator")
def test_an_execution_made_again_under_its_name_runs_while_its_predecessors_job_drains(
    cluster: LocalCluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an operator of its own, serving only this namespace: the old execution's run keeps one of its run slots while
    # its pod drains (by design), and runs that earlier tests left elsewhere (mid-run when their namespace went,
    # or waiting for a node) hold none of them (tests.support.MAX_RUNNING is 3)
    monkeypatch.setenv("SCHEDEXEC_NAMESPACES", json.dumps([namespace]))
    own = Operator(cluster, tmp_path)
    own.start()
    try:
        made_again_while_the_old_job_drains(cluster, namespace)
    finally:
        own.stop()


def made_again_while_the_old_job_drains(cluster: LocalCluster, namespace: str) -> None:
    first = sleeper(3600)
    cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, first)
    old_uid = cluster.execution(namespace, "again")["metadata"]["uid"]
    old_job = wait_for("the first execution's run", lambda: current_job(cluster, namespace, old_uid))
    cluster.batch.patch_namespaced_job(old_job, namespace, {"metadata": {"finalizers": [HOLD]}})
    try:
        cluster.kubectl("replace", "--force", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(sleeper(5)))
        new_uid = cluster.execution(namespace, "again")["metadata"]["uid"]
        assert new_uid != old_uid, "deleted and made again"
        new_job = wait_for("the new execution's run", lambda: current_job(cluster, namespace, new_uid))
        assert new_job == manifests.job_name("again", new_uid, 1) != old_job
        assert new_job.startswith("again-"), "kubectl get jobs still shows whose Job it is"
        created = job(cluster, namespace, new_job)
        assert created is not None and [o.uid for o in created.metadata.owner_references] == [new_uid]
        wait_for(
            "the garbage collector to delete the old execution's Job (held by the test's finalizer)",
            lambda: (held := job(cluster, namespace, old_job)) is not None and held.metadata.deletion_timestamp,
        )
        done = cluster.wait_finished(namespace, "again")
        status = done["status"]
        assert status["phase"] == "Succeeded", status.get("error")
        assert status["result"] == "slept" and status["runs"] == 1
        assert [r["outcome"] for r in status["history"]] == ["Done"]
        draining = job(cluster, namespace, old_job)
        assert draining is not None and draining.metadata.deletion_timestamp, "the old Job was still draining"
        assert [o.uid for o in draining.metadata.owner_references] == [old_uid], "never adopted"
    finally:
        cluster.batch.patch_namespaced_job(old_job, namespace, {"metadata": {"finalizers": None}})
    wait_for("the old Job to go once released", lambda: job(cluster, namespace, old_job) is None)
