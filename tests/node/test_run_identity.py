"""A run's workload identity on a real node under the chart's default policies (issue 27 item 1): a run whose
pod template names a ServiceAccount and asks for a token of it for another audience gets that token from the
kubelet (its claims read back by the component: audience and subject, never the token itself); a run asking for
a token the Kubernetes API server would accept fails JobRejected with the chart's operatorJobs message.

The chart is installed as the tier installs it (tests/node/conftest.py: admissionPolicy defaults), on the dev
cluster's API server, whose audience is its --service-account-issuer (hack/devcluster controlplane.py)."""

from __future__ import annotations

from typing import Any

import pytest

from schedexec import models
from schedexec_devcluster.controlplane import SERVICE_ACCOUNT_ISSUER
from tests.node.support import TEST_IMAGE
from tests.support import LocalCluster

pytestmark = pytest.mark.node

ACCOUNT = "workload"
AUDIENCE = "schedexec-test"


def execution(name: str, namespace: str, audience: str) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "component": {"image": TEST_IMAGE},
            "method": "token-claims",
            "podTemplate": {"serviceAccountName": ACCOUNT, "serviceAccountToken": {"audience": audience}},
        },
    }


def test_a_run_gets_a_token_of_its_service_account_for_its_audience(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    node_cluster.kubectl("create", "serviceaccount", ACCOUNT, "-n", node_namespace)
    node_cluster.apply(execution("identified", node_namespace, AUDIENCE))

    status = node_cluster.wait_finished(node_namespace, "identified", timeout=120)["status"]
    assert status["phase"] == models.Phase.SUCCEEDED, status
    assert status["result"] == {"aud": [AUDIENCE], "sub": f"system:serviceaccount:{node_namespace}:{ACCOUNT}"}


def test_a_run_asking_for_a_kubernetes_api_token_is_refused_by_the_charts_policy(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    node_cluster.kubectl("create", "serviceaccount", ACCOUNT, "-n", node_namespace)
    node_cluster.apply(execution("api-token", node_namespace, SERVICE_ACCOUNT_ISSUER))

    status = node_cluster.wait_finished(node_namespace, "api-token", timeout=120)["status"]
    assert status["phase"] == models.Phase.FAILED, status
    assert status["error"]["reason"] == "JobRejected", status
    assert (
        "projected ServiceAccount tokens are for an audience other than the Kubernetes API server's"
        in (status["error"]["message"])
    )
    assert SERVICE_ACCOUNT_ISSUER in status["error"]["message"], "the message lists the refused audiences"
