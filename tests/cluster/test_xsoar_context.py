"""The XSOAR integration context between the runs of a sequence, on a real API server with the operator: a
run's context reaches the next run through the execution's context Secret (written by the operator, mounted
read-only into every run), and never shows in the execution, its events or the operator's log.

The integration is tests/components/xsoar/context_counter.py (XSOAR's demistomock and CommonServerPython, as
the runner provides them), run by the node agent as the pod's own command (image `local/exec`): it logs in
only when its context holds no token. The chart's fence of the operator's Secret writes is checked in
tests/cluster/test_chart.py (test_the_operator_may_write_only_xsoar_context_secrets_of_executions)."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest

from schedexec import manifests, models
from tests.support import REPO, LocalCluster, Operator

pytestmark = pytest.mark.cluster

INTEGRATION = REPO / "tests" / "components" / "xsoar" / "context_counter.py"
TOKEN = "ctx-token-5e1f0a9c7b3d"
"""context_counter.TOKEN."""


def integration(name: str, runs: int) -> dict[str, Any]:
    command = [
        "/usr/bin/env",
        f"SCHEDEXEC_XSOAR_INTEGRATION={INTEGRATION}",
        f"PYTHONPATH={REPO / 'runner-image'}",
        sys.executable,
        "-m",
        "schedexec_runner",
    ]
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name},
        "spec": {
            "component": {"image": "local/exec", "command": command},
            "method": "ctx-poll",
            "args": {"runs": str(runs)},
        },
    }


def test_the_context_one_run_leaves_is_the_next_runs_kept_in_a_secret_of_the_execution(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    body = integration("ctx", runs=3)
    cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)
    done = cluster.wait_finished(namespace, "ctx", timeout=120)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"runs": 3, "logins": 1}, "runs 2 and 3 found the token run 1 cached"
    assert [r["outcome"] for r in status["history"]] == ["Scheduled", "Scheduled", "Done"]

    uid = done["metadata"]["uid"]
    name = manifests.owned_name("ctx", uid, "xsoar-context")
    secret = json.loads(cluster.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
    assert secret["type"] == "schedexec.io/xsoar-context"
    assert [(r["kind"], r["uid"]) for r in secret["metadata"]["ownerReferences"]] == [(models.KIND, uid)]
    kept = json.loads(base64.b64decode(secret["data"]["context.json"]))
    assert kept == {"token": TOKEN, "logins": 1, "runs": 2}, "the last schedule's; the final run left none"

    shown = cluster.kubectl("get", models.PLURAL, "ctx", "-n", namespace, "-o", "json").stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert TOKEN not in shown and TOKEN not in events and TOKEN not in operator.logs()
