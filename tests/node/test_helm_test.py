"""`helm test` against the node tier's release, as an operator team runs it after an install or upgrade: the hook
pod (the operator image) creates one ScheduledExecution of the shop example image, answers its request itself, and
passes when the chart's operator ran it to Succeeded with that answer on the real kubelet. The hook objects are
gone afterwards; a test whose execution fails makes `helm test` fail; `helm get notes` tells the API's address and
how to get a token."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from schedexec import models
from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import CHART, CHART_NAMESPACE, CHART_RELEASE
from schedexec_devcluster.registry import REGISTRY_HOST
from tests.support import LocalCluster, wait_for

pytestmark = pytest.mark.node
TEST_POD = f"{CHART_RELEASE}-test"
"""The hook's objects: the release's full name (the release is named like the chart) and -test."""


def helm(cluster: LocalCluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [str(binaries.ensure_helm()), *args, "-n", CHART_NAMESPACE, "--kubeconfig", str(cluster.kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def hook_log(cluster: LocalCluster) -> str:
    """The hook pod's log (kept when it failed)."""
    done = cluster.kubectl("logs", f"pod/{TEST_POD}", "-n", CHART_NAMESPACE, check=False)
    return f"\n--- kubectl logs {TEST_POD}:\n{done.stdout}{done.stderr}"


def leftovers(cluster: LocalCluster) -> list[str]:
    """The hook's objects and executions still in the release namespace."""
    kinds = f"pods,serviceaccounts,roles,rolebindings,configmaps,{models.PLURAL}.{models.GROUP}"
    names = cluster.kubectl("get", kinds, "-n", CHART_NAMESPACE, "-o", "name").stdout.split()
    return [name for name in names if name.split("/", 1)[1].startswith(TEST_POD)]


def test_helm_test_runs_an_execution_to_succeeded_and_cleans_up(node_cluster: LocalCluster) -> None:
    # no --logs: the pod is deleted once it passed (hook-succeeded), and the script exits 0 only when the
    # execution Succeeded with the categories it served
    done = helm(node_cluster, "test", CHART_RELEASE, "--timeout", "240s")
    assert done.returncode == 0, done.stdout + done.stderr + hook_log(node_cluster)
    suite = done.stdout.split(f"TEST SUITE:     {TEST_POD}\n", 1)[1]
    assert "Phase:          Succeeded" in suite.split("TEST SUITE:", 1)[0], done.stdout
    wait_for("the hook's objects and its execution to be deleted", lambda: not leftovers(node_cluster), timeout=60)


def test_helm_test_fails_when_its_execution_fails(node_cluster: LocalCluster) -> None:
    """The runner image alone names no component: the run fails (ComponentNotFound), and so does `helm test`,
    leaving its pod for `kubectl logs` (deleted by the next `helm test`)."""
    runner = ["--set", f"tests.component.repository={REGISTRY_HOST}/schedexec/runner"]  # as the node pulls it
    upgraded = helm(node_cluster, "upgrade", CHART_RELEASE, str(CHART), "--reuse-values", *runner)
    assert upgraded.returncode == 0, upgraded.stderr
    try:
        done = helm(node_cluster, "test", CHART_RELEASE, "--logs", "--timeout", "240s")
        assert done.returncode != 0, done.stdout
        assert "did not succeed" in done.stdout and "ComponentNotFound" in done.stdout, done.stdout + done.stderr
        assert f"pod/{TEST_POD}" in leftovers(node_cluster), "kept for its log"
    finally:
        restored = helm(node_cluster, "upgrade", CHART_RELEASE, str(CHART), "--reuse-values", "--set", _default())
        assert restored.returncode == 0, restored.stderr
    passed = helm(node_cluster, "test", CHART_RELEASE, "--timeout", "240s")
    assert passed.returncode == 0, passed.stdout + passed.stderr + hook_log(node_cluster)
    wait_for("the failed test's pod to be replaced and deleted", lambda: not leftovers(node_cluster), timeout=60)


def _default() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return f"tests.component.repository={values['tests']['component']['repository']}"


def test_the_notes_tell_the_first_execution_the_apis_address_and_how_to_get_a_token(
    node_cluster: LocalCluster,
) -> None:
    notes = helm(node_cluster, "get", "notes", CHART_RELEASE).stdout
    assert f"kubectl -n {CHART_NAMESPACE} rollout status deployment/{CHART_RELEASE}" in notes
    assert "kind: ScheduledExecution" in notes and "kubectl -n default get scheduledexecutions" in notes
    assert f"https://{CHART_RELEASE}-api.{CHART_NAMESPACE}.svc:443" in notes
    assert "create token client --audience schedexec" in notes
    assert f"--clusterrole={CHART_RELEASE}-edit" in notes
