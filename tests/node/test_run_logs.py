"""Logs that outlive the run, and async components, on a real node (issue 27, "Done when").

A component that logs through `ctx.logger` and then raises, with a credential in both: once the execution
finished, `kubectl logs -n NS job/<status.history[-1].job>` (the command the status names) shows the logger's
line and the whole traceback, the credential redacted, and the status holds neither the log nor the credential.
An `async def` command returns its result through the same real pod.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.node.support import execution, run
from tests.support import LocalCluster

pytestmark = pytest.mark.node

CANARY = "canary-tb-6f20a9d4"


def test_a_failed_runs_traceback_is_readable_with_kubectl_logs_after_the_execution_finished(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    node_cluster.kubectl(
        "create", "secret", "generic", "shop-key", "-n", node_namespace, f"--from-literal=apiKey={CANARY}"
    )
    body = execution(
        "raiser",
        node_namespace,
        method="log-and-raise",
        args={"shop": "acme"},
        credentialsSecretRef={"name": "shop-key"},
    )
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    assert status["error"] == {
        "reason": "ComponentError",
        "message": "ConnectionError: the shop refused the api key ***",
    }
    (record,) = status["history"]
    job = record["job"]
    assert record["logs"] == f"kubectl logs -n {node_namespace} job/{job}"
    assert datetime.fromisoformat(record["logsUntil"]) > datetime.now(UTC), "kept for the operator's retention"
    log = node_cluster.kubectl("logs", "-n", node_namespace, f"job/{job}").stdout
    assert "INFO schedexec.component: connecting to the shop acme with the api key ***" in log
    assert "Traceback (most recent call last):" in log
    assert "in _open_shop" in log and "ConnectionError: the shop refused the api key ***" in log
    assert CANARY not in log, "the credential is redacted from the pod's log"
    stored = json.dumps(node_cluster.execution(node_namespace, "raiser"))
    assert "Traceback" not in stored and CANARY not in stored, "the log stays out of the execution"


def test_an_async_command_returns_its_result_from_a_real_pod(node_cluster: LocalCluster, node_namespace: str) -> None:
    status = run(node_cluster, execution("adder", node_namespace, method="async-sum", args={"numbers": [1, 2, 39]}))
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"sum": 42, "async": True}
    (record,) = status["history"]
    log = node_cluster.kubectl("logs", "-n", node_namespace, f"job/{record['job']}").stdout
    assert "summing 3 numbers" in log, "a succeeded run's Job is kept for its log too"
