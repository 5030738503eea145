"""XSOAR integrations as they are, on the real node: two integrations from demisto/content, their .py
copied byte for byte into images FROM the runner (tests/components/xsoar/*.Dockerfile), run through the
chart's operator as scheduled sequences against a fake of their vendor's API that counts calls.

- Arcanna.AI: https://github.com/demisto/content, Packs/Arcanna/Integrations/ArcannaAI/ArcannaAI.py at
  commit ff65fac5b311698f34ba8235f2a266a1068a9c34 (its polling command `arcanna-get-event-status`,
  `polling_function` + `PollResult`);
- CAPE sandbox: https://github.com/demisto/content, Packs/CapeSandbox/Integrations/CapeSandbox/CapeSandbox.py
  at commit f69c5798837446f455438eb6fda89b0799313339 (`cape-url-submit` creates a task and schedules
  `cape-task-poll` with `ScheduledCommand`).

tests/thirdparty/demisto-content/PROVENANCE.md has the licence (MIT). Params come as the runtime reads them
(docs/runner-contract.md): `url` from a ConfigMap through spec.podTemplate.envFrom (prefix XSOAR_PARAM_),
the credentials from the credentials Secret (`credentials.password`, `api_token`). The fake listens on the
node's address, where pods reach the host (tests/node/conftest.py `remote`). The integration context (CAPE's
token) goes from run to run through the execution's context Secret, which the chart's operator writes
under its operator-secrets admission policy.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from schedexec import models
from schedexec_devcluster.certs import NODE_IP
from schedexec_devcluster.images import REGISTRY
from tests.node.support import run
from tests.support import REPO, LocalCluster

sys.path.insert(0, str(REPO / "tests" / "components" / "xsoar"))
import fakevendor

ARCANNA_IMAGE = f"{REGISTRY}/xsoar-arcanna:dev"
CAPE_IMAGE = f"{REGISTRY}/xsoar-cape:dev"


@pytest.fixture
def vendor() -> Iterator[tuple[str, fakevendor.Vendor]]:
    server, state = fakevendor.serve(0, host=NODE_IP)
    try:
        yield f"http://{NODE_IP}:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def integration(
    cluster: LocalCluster, namespace: str, name: str, image: str, url: str, secret: dict[str, str], **spec: Any
) -> dict[str, Any]:
    """An execution of `image` whose params are `url` (a ConfigMap, envFrom) and `secret` (its credentials)."""
    literals = [f"--from-literal={key}={value}" for key, value in secret.items()]
    cluster.kubectl("create", "secret", "generic", name, "-n", namespace, *literals)
    cluster.kubectl("create", "configmap", name, "-n", namespace, f"--from-literal=url={url}")
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "component": {"image": image},
            "credentialsSecretRef": {"name": name},
            "podTemplate": {"envFrom": [{"prefix": "XSOAR_PARAM_", "configMapRef": {"name": name}}]},
            **spec,
        },
    }


def test_arcanna_polls_an_event_to_its_inference(node_cluster: LocalCluster, node_namespace: str, vendor: Any) -> None:
    url, state = vendor
    args = {"job_id": "7", "event_id": "ev-node", "polling": "true", "interval": "1"}
    body = integration(
        node_cluster, node_namespace, "arcanna", ARCANNA_IMAGE, url,
        {"credentials.password": fakevendor.API_KEY}, method="arcanna-get-event-status", args=args,
    )  # fmt: skip
    status = run(node_cluster, body, timeout=240)
    assert status["phase"] == "Succeeded", status
    assert status["result"]["outputs"] == {
        "Arcanna.Event": {"event_id": "ev-node", "status": "OK", "result": "escalate_alert", "confidence_score": 0.93}
    }
    assert len(status["history"]) == fakevendor.READY_AFTER
    assert state.calls == {"GET arcanna-status": fakevendor.READY_AFTER}


def test_cape_creates_its_task_once_and_polls_it_until_reported(
    node_cluster: LocalCluster, node_namespace: str, vendor: Any
) -> None:
    url, state = vendor
    # interval_in_seconds: the runtime's override of polling_function's interval (60 s in CapeSandbox.py)
    args = {"url": "http://sample.example/x", "polling": "true", "pollingInterval": "1", "interval_in_seconds": 1}
    body = integration(
        node_cluster, node_namespace, "cape", CAPE_IMAGE, url,
        {"api_token": fakevendor.TOKEN}, method="cape-url-submit", args=args,
    )  # fmt: skip
    status = run(node_cluster, body, timeout=240)
    assert status["phase"] == "Succeeded", status
    report_file, view = status["result"]
    assert report_file["File"] == "cape_task_1_report.zip"
    assert view["outputs"] == {"id": 1, "target": "http://sample.example/x", "status": "reported"}
    assert len(status["history"]) == 1 + fakevendor.READY_AFTER  # the submit, then each poll
    assert state.calls == {
        "POST cape-create": 1,
        "GET cape-status": fakevendor.READY_AFTER,
        "GET cape-view": 1,
        "GET cape-report": 1,
    }


def test_cape_logs_in_once_per_sequence_its_token_kept_in_the_executions_context_secret(
    node_cluster: LocalCluster, node_namespace: str, vendor: Any
) -> None:
    """With a username and password CAPE trades them for a token and caches it in the integration context:
    the operator keeps that context in a Secret owned by the execution and mounts it into the next runs, so
    the token is asked for once over the whole sequence, and shows nowhere in the execution or its events."""
    url, state = vendor
    args = {"url": "http://sample.example/x", "polling": "true", "pollingInterval": "1", "interval_in_seconds": 1}
    credentials = {"credentials.identifier": fakevendor.USERNAME, "credentials.password": fakevendor.PASSWORD}
    body = integration(
        node_cluster, node_namespace, "cape-login", CAPE_IMAGE, url, credentials, method="cape-url-submit", args=args
    )
    status = run(node_cluster, body, timeout=240)
    assert status["phase"] == "Succeeded", status
    assert len(status["history"]) == 1 + fakevendor.READY_AFTER
    assert state.calls == {
        "POST cape-token": 1,
        "POST cape-create": 1,
        "GET cape-status": fakevendor.READY_AFTER,
        "GET cape-view": 1,
        "GET cape-report": 1,
    }
    found = node_cluster.kubectl("get", "secrets", "-n", node_namespace, "-o", "json").stdout
    (kept,) = [s for s in json.loads(found)["items"] if s["type"] == "schedexec.io/xsoar-context"]
    assert kept["metadata"]["name"].startswith("cape-login-") and kept["metadata"]["name"].endswith("-xsoar-context")
    context = json.loads(base64.b64decode(kept["data"]["context.json"]))
    assert context["auth_info"]["token"] == fakevendor.TOKEN
    shown = node_cluster.kubectl("get", models.PLURAL, "cape-login", "-n", node_namespace, "-o", "json").stdout
    events = node_cluster.kubectl("get", "events", "-n", node_namespace, "-o", "json").stdout
    assert fakevendor.TOKEN not in shown and fakevendor.TOKEN not in events


def test_the_sequences_timeout_ends_it(node_cluster: LocalCluster, node_namespace: str, vendor: Any) -> None:
    url, state = vendor
    args = {"job_id": "7", "event_id": "never-ready", "polling": "true", "interval": "2", "timeout": "8"}
    body = integration(
        node_cluster, node_namespace, "arcanna-slow", ARCANNA_IMAGE, url,
        {"credentials.password": fakevendor.API_KEY}, method="arcanna-get-event-status", args=args,
    )  # fmt: skip
    status = run(node_cluster, body, timeout=240)
    assert status["phase"] == "TimedOut", status
    assert status["error"]["reason"] == "Timeout"
    assert 1 <= state.calls["GET arcanna-status"] <= 5  # polls every 2 s for 8 s, then no more


def test_an_integration_error_fails_the_execution_with_xsoars_message(
    node_cluster: LocalCluster, node_namespace: str, vendor: Any
) -> None:
    url, state = vendor
    body = integration(
        node_cluster, node_namespace, "cape-refused", CAPE_IMAGE, url,
        {"api_token": fakevendor.TOKEN}, method="cape-url-submit", args={"url": "http://refused.example/"},
    )  # fmt: skip
    status = run(node_cluster, body, timeout=240)
    assert status["phase"] == "Failed", status
    assert status["error"] == {
        "reason": "ComponentError",
        "message": "Failed to execute command='cape-url-submit'. Error: CapeSandbox API call failed with error: "
        "URL http://refused.example/ refused by the sandbox policy",
    }
    assert state.calls == {"POST cape-create": 1}
