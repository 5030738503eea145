"""elastic.io's documented requests, as an elastic.io client sends them, end to end on the real control plane.

The REST API runs as a real process (TLS, as `test_restapi` starts it) with
SCHEDEXEC_API_WORKSPACES mapping an elastic.io workspace to a namespace of
its own; the client's ServiceAccount may create only there and sends no
`?namespace=`: the workspace decides. Each of the three requests is
elastic.io's documented body (workspace and credential relationships), and
each answer is checked against the documented shape: 202 with Location,
poll 200, 303 with an empty document, result 200 with `{"data": ...}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import pytest
from kubernetes import client

from schedexec import models
from tests.cluster.test_restapi import COMPONENTS, service_account_token
from tests.support import Api, LocalCluster, Operator, new_namespace, serving_api

pytestmark = pytest.mark.cluster
WORKSPACE = "59d341e9037f7200184a408b"
CANARY = "canary-elasticio-7f3e"
PENDING = "Pending request, waiting other process"


@dataclass(frozen=True)
class Workspace:
    api: Api
    namespace: str
    """The namespace SCHEDEXEC_API_WORKSPACES maps WORKSPACE to."""


@pytest.fixture(scope="module")
def workspace(
    cluster: LocalCluster, operator: Operator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workspace]:
    namespace = new_namespace(cluster, "ws")
    settings = {
        "SCHEDEXEC_API_COMPONENTS": json.dumps(COMPONENTS),
        "SCHEDEXEC_API_WORKSPACES": json.dumps({WORKSPACE: namespace}),
    }
    try:
        with serving_api(cluster, tmp_path_factory.mktemp("elasticio-api"), settings) as api:
            yield Workspace(api, namespace)
    finally:
        cluster.core.delete_namespace(namespace)


def relationships(credential: str) -> dict[str, Any]:
    return {
        "workspace": {"data": {"id": WORKSPACE, "type": "workspace"}},
        "credential": {"data": {"id": credential, "type": "credential"}},
    }


def documented_requests(credential: str) -> list[tuple[str, dict[str, Any], Any]]:
    """(endpoint, elastic.io's documented body, the `data` its result carries) for each method."""
    fields = {"expectedSha256": sha256(CANARY.encode()).hexdigest()}
    return [
        (
            "verify-credential",
            {
                "data": {
                    "type": "verify-credential",
                    "attributes": {"fields": fields},
                    "relationships": relationships(credential),
                }
            },
            {"verified": True},
        ),
        (
            "dynamic-metadata",
            {
                "data": {
                    "type": "dynamic-metadata",
                    "attributes": {"module": "products", "fields": {"category": "books"}},
                    "relationships": relationships(credential),
                }
            },
            {
                "in": {"type": "object", "properties": {"category": {"type": "string"}}},
                "out": {"type": "object", "properties": {"sku": {"type": "string"}}},
            },
        ),
        (
            "select-model",
            {
                "data": {
                    "type": "select-model",
                    "attributes": {"module": "products", "method": "getCategories", "fields": {"shop": "demo"}},
                    "relationships": relationships(credential),
                }
            },
            {"1": "Books", "2": "Music", "module": "products"},
        ),
    ]


def test_the_three_documented_requests_schedule_in_the_workspace_poll_and_return_the_documented_shapes(
    cluster: LocalCluster, workspace: Workspace
) -> None:
    namespace = workspace.namespace
    cluster.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="shop-credentials"), string_data={"apiKey": CANARY}),
    )
    token = service_account_token(cluster, namespace, "client", ["create", "get"], secrets=("shop-credentials",))
    base = "/v2/components/test/versions/latest"
    with workspace.api.client(token) as http:
        scheduled: list[tuple[str, str, Any]] = []
        for endpoint, body, data in documented_requests("shop-credentials"):
            accepted = http.post(f"{base}/{endpoint}", json=body)  # no ?namespace=: the workspace decides
            assert accepted.status_code == 202, accepted.text
            uid = accepted.json()["data"]["id"]
            assert accepted.headers["Location"] == f"/v2/exec/poll/{uid}"
            pending = {"result": {}, "status": PENDING, "phase": "Pending", "runs": 0}
            assert accepted.json()["data"] == {
                "id": uid,
                "type": "execution-result",
                "links": {"self": f"/v2/exec/result/{uid}"},
                "attributes": pending,
            }
            polled = http.get(accepted.headers["Location"])
            assert polled.status_code == 200, "the run has not even started: the poll says pending"
            assert polled.json()["data"]["attributes"]["status"] == PENDING
            scheduled.append((endpoint, accepted.headers["Location"], data))

        for endpoint, location, data in scheduled:
            deadline = time.monotonic() + 90
            while (polled := http.get(location)).status_code == 200:
                assert polled.json()["data"]["attributes"]["status"] == PENDING
                assert time.monotonic() < deadline, f"{endpoint} did not finish"
                time.sleep(0.3)
            assert polled.status_code == 303, polled.text
            assert polled.json() == {"data": {}, "meta": {}}
            result = http.get(polled.headers["Location"])
            assert result.status_code == 200, result.text
            attributes = result.json()["data"]["attributes"]
            assert attributes["result"] == {"data": data}, endpoint
            assert "status" not in attributes and attributes["phase"] == "Succeeded"

    listed: dict[str, Any] = cluster.custom.list_namespaced_custom_object(  # type: ignore[assignment]
        models.GROUP, models.VERSION, namespace, models.PLURAL
    )
    created = listed["items"]
    assert sorted(item["spec"]["method"] for item in created) == ["getMetaModel", "selectModel", "verifyCredentials"]
    assert all(item["metadata"]["labels"]["schedexec.io/api-dialect"] == "elastic.io" for item in created)
    assert CANARY not in workspace.api.log.read_text()


def test_an_unknown_workspace_is_404_and_an_undocumented_relationship_422(
    cluster: LocalCluster, workspace: Workspace
) -> None:
    namespace = workspace.namespace
    token = service_account_token(cluster, namespace, "other-client", ["create", "get"])
    endpoint, body, _ = documented_requests("shop-credentials")[1]
    body["data"]["relationships"].pop("credential")
    body["data"]["attributes"].pop("fields")  # a cfg without a credential is sealed: `create secrets`, not tested here
    with workspace.api.client(token) as http:
        unknown = json.loads(json.dumps(body))
        unknown["data"]["relationships"]["workspace"]["data"]["id"] = "000000000000000000000000"
        answer = http.post(f"/v2/components/test/versions/latest/{endpoint}", json=unknown)
        assert answer.status_code == 404, answer.text
        assert answer.json()["errors"][0]["detail"] == "unknown workspace '000000000000000000000000'"
        flow = json.loads(json.dumps(body))
        flow["data"]["relationships"]["flow"] = {"data": {"id": "5aaf", "type": "flow"}}
        answer = http.post(f"/v2/components/test/versions/latest/{endpoint}", json=flow)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["source"] == {"pointer": "/data/relationships/flow"}
        with_agent = json.loads(json.dumps(body))
        with_agent["data"]["relationships"]["vpn_agent"] = {"data": {"id": "5b1e6a2a", "type": "vpn-agent"}}
        answer = http.post(f"/v2/components/test/versions/latest/{endpoint}", json=with_agent)
        assert answer.status_code == 202, answer.text
    assert answer.json()["meta"]["namespace"] == namespace
    assert cluster.execution(namespace, answer.json()["meta"]["name"])["spec"]["method"] == "getMetaModel"


# --- spec.component.runtime elasticio: the API server's own rules (issue 29) ------------------------------------

ELASTICIO_COMPONENT = {"image": "ghcr.io/schedexec/test-elasticio-petstore:dev", "runtime": "elasticio"}


def elasticio_manifest(namespace: str, spec: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cancel": True, **spec},  # cancelled at once: the rules are the API server's, no run is wanted
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"component": ELASTICIO_COMPONENT, "method": "process"}, models.ELASTICIO_METHOD_MESSAGE),
        (
            {"component": {**ELASTICIO_COMPONENT, "command": ["node", "x.js"]}, "method": "verifyCredentials"},
            models.COMPONENT_RULES[0]["message"],
        ),
        (
            {"component": {"image": "x", "elasticio": {"componentPath": "/app"}}, "method": "verifyCredentials"},
            models.COMPONENT_RULES[1]["message"],
        ),
        ({"component": {**ELASTICIO_COMPONENT, "runtime": "lambda"}, "method": "verifyCredentials"}, "runtime"),
        (
            {"component": {**ELASTICIO_COMPONENT, "elasticio": {"componentPath": "a"}}, "method": "verifyCredentials"},
            "componentPath",
        ),
    ],
)
def test_the_elasticio_runtime_rules_are_the_api_servers(
    cluster: LocalCluster, namespace: str, spec: dict[str, Any], message: str
) -> None:
    refused = cluster.apply(elasticio_manifest(namespace, spec, "refused"), check=False)
    assert refused.returncode != 0 and message in refused.stderr


def test_an_elasticio_execution_is_admitted_and_its_runtime_immutable(cluster: LocalCluster, namespace: str) -> None:
    spec = {
        "component": {**ELASTICIO_COMPONENT, "elasticio": {"componentPath": "/home/node"}},
        "method": "selectModel",
        "module": "getPetsByStatus",
        "function": "getStatusModel",
    }
    cluster.apply(elasticio_manifest(namespace, spec, "pets"))
    changed = {**spec, "component": {"image": ELASTICIO_COMPONENT["image"]}}
    refused = cluster.apply(elasticio_manifest(namespace, changed, "pets"), check=False)
    assert refused.returncode != 0 and "spec.component is immutable" in refused.stderr
