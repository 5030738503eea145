"""elastic.io's component endpoints answer requests exactly as elastic.io documents them (issue 16, part 1).

The bodies are elastic.io's own examples (api-docs, "Scheduled Executions"),
with a workspace mapped to a namespace; the answers are compared with the
documented ones key by key. No cluster: FastAPI's TestClient on the
in-memory Kubernetes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from schedexec.api import sealing
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec.settings import ApiSettings
from tests.unit.api_fake import FakeKube

WORKSPACE = "59d341e9037f7200184a408b"
WS_NAMESPACE = "acme"
TOKEN = {"Authorization": "Bearer alice-token"}
SETTINGS = ApiSettings(
    components={"shop": {"image": "reg/shop:{revision}", "default_revision": "1.4.0"}},
    namespace="default",
    workspaces={WORKSPACE: WS_NAMESPACE, "5aaf90a2d0516d00077556cf": "beta"},
    insecure=False,
    default_timeout_seconds=600,
    default_run_timeout_seconds=300,
    ttl_seconds_after_finished=3600,
)
BASE = "/v2/components/shop/versions/latest"

# elastic.io's documented request bodies, word for word but for the placeholders (each names a credential, so
# its fields are the rest of the cfg and stay in the args; fields without a credential are sealed: see
# test_api_credentials.py)
VERIFY_CREDENTIAL = {
    "data": {
        "type": "verify-credential",
        "attributes": {"fields": {"apiKey": "api_secret"}},
        "relationships": {
            "workspace": {"data": {"id": WORKSPACE, "type": "workspace"}},
            "credential": {"data": {"id": "shop-credentials", "type": "credential"}},
        },
    }
}
DYNAMIC_METADATA = {
    "data": {
        "type": "dynamic-metadata",
        "attributes": {"module": "products", "fields": {"some_field": "value", "another_field": "another_value"}},
        "relationships": {
            "workspace": {"data": {"id": WORKSPACE, "type": "workspace"}},
            "credential": {"data": {"id": "shop-credentials", "type": "credential"}},
        },
    }
}
SELECT_MODEL = {
    "data": {
        "type": "select-model",
        "attributes": {
            "module": "products",
            "method": "getCategories",
            "fields": {"some_field": "value", "another_field": "another_value"},
        },
        "relationships": {
            "workspace": {"data": {"id": WORKSPACE, "type": "workspace"}},
            "credential": {"data": {"id": "shop-credentials", "type": "credential"}},
        },
    }
}


class Sealed:
    """Equal to a reference to a Secret the API made to hold a request's fields (`sealing.seal`)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and str(other.get("name", "")).startswith(sealing.CONFIG_SECRET_PREFIX)


SEALED = Sealed()
DOCUMENTED = [
    pytest.param(
        "verify-credential",
        VERIFY_CREDENTIAL,
        {"method": "verifyCredentials", "args": {"apiKey": "api_secret"}},
        {"verified": True},
        id="verify-credential",
    ),
    pytest.param(
        "dynamic-metadata",
        DYNAMIC_METADATA,
        {
            "method": "getMetaModel",
            "module": "products",
            "args": {"some_field": "value", "another_field": "another_value"},
        },
        {"in": {"type": "object"}, "out": {"type": "object"}},
        id="dynamic-metadata",
    ),
    pytest.param(
        "select-model",
        SELECT_MODEL,
        {
            "method": "selectModel",
            "module": "products",
            "function": "getCategories",
            "args": {"some_field": "value", "another_field": "another_value"},
        },
        {"1": "Books", "2": "Music"},
        id="select-model",
    ),
]


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    kube.user("alice-token", "alice")  # may schedule in the workspace's namespace only
    for verb in ("create", "get"):
        kube.grant("alice", verb, WS_NAMESPACE)
    kube.grant("alice", "get", WS_NAMESPACE, resource="secrets", name="shop-credentials")
    kube.grant("alice", "create", WS_NAMESPACE, resource="secrets")  # fields without a credential are sealed
    kube.user("bob-token", "bob")  # may read executions somewhere else, create nothing
    kube.grant("bob", "get", "elsewhere")
    kube.user("dora-token", "dora")  # may schedule in the default namespace only
    kube.grant("dora", "create", "default")
    kube.grant("dora", "create", "default", resource="secrets")
    return kube


@pytest.fixture
def cache(kube: FakeKube) -> ExecutionCache:
    return ExecutionCache(kube)


def serve(kube: FakeKube, cache: ExecutionCache, settings: ApiSettings = SETTINGS) -> TestClient:
    return TestClient(create_app(settings, kube, cache), headers=TOKEN, follow_redirects=False)


@pytest.fixture
def http(kube: FakeKube, cache: ExecutionCache) -> Iterator[TestClient]:
    with serve(kube, cache) as client:
        yield client


def with_relationships(body: dict[str, Any], **relationships: Any) -> dict[str, Any]:
    """`body` with relationships set (None: removed)."""
    changed = copy.deepcopy(body)
    for name, value in relationships.items():
        if value is None:
            changed["data"]["relationships"].pop(name, None)
        else:
            changed["data"]["relationships"][name] = value
    return changed


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The one JSON:API error of a refusal."""
    assert response.status_code == status, response.text
    (problem,) = response.json()["errors"]
    assert problem["status"] == str(status)
    return problem  # type: ignore[no-any-return]


def created_in(kube: FakeKube, uid: str) -> str:
    return next(ns for (ns, _), body in kube.executions.items() if body["metadata"]["uid"] == uid)


# --- the documented requests, end to end -------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "spec", "returned"), DOCUMENTED)
def test_a_documented_request_schedules_in_its_workspaces_namespace_and_answers_the_documented_shapes(
    http: TestClient, kube: FakeKube, path: str, body: dict[str, Any], spec: dict[str, Any], returned: Any
) -> None:
    accepted = http.post(f"{BASE}/{path}", json=body)  # no ?namespace=: the workspace says where
    assert accepted.status_code == 202, accepted.text
    document = accepted.json()
    uid = document["data"]["id"]
    assert accepted.headers["Location"] == f"/v2/exec/poll/{uid}"
    # elastic.io's 202 document, key by key; `phase` and `runs` are schedexec's, `meta` names the object
    assert document["data"] == {
        "id": uid,
        "type": "execution-result",
        "links": {"self": f"/v2/exec/result/{uid}"},
        "attributes": {"result": {}, "status": "Pending request, waiting other process", "phase": "Pending", "runs": 0},
    }
    assert set(document) == {"data", "meta"}
    assert created_in(kube, uid) == WS_NAMESPACE
    (created,) = kube.created
    delivered = {**created["spec"], "args": kube.delivered_args(WS_NAMESPACE, created["spec"])}
    assert delivered == {
        "component": {"image": "reg/shop:1.4.0"},
        "credentialsSecretRef": {"name": "shop-credentials"},
        "timeoutSeconds": 600,
        "runTimeoutSeconds": 300,
        "ttlSecondsAfterFinished": 3600,
        **spec,
    }

    polled = http.get(f"/v2/exec/poll/{uid}")
    assert polled.status_code == 200 and polled.json()["data"] == document["data"]

    kube.set_status(uid, phase="Succeeded", runs=1, result=returned)
    done = http.get(f"/v2/exec/poll/{uid}")
    assert done.status_code == 303 and done.headers["Location"] == f"/v2/exec/result/{uid}"
    assert done.json() == {"data": {}, "meta": {}}

    result = http.get(done.headers["Location"])
    assert result.status_code == 200
    assert result.json()["data"] == {
        "id": uid,
        "type": "execution-result",
        "links": {"self": f"/v2/exec/result/{uid}"},
        "attributes": {"result": {"data": returned}, "phase": "Succeeded", "runs": 1},
    }


def test_the_result_of_a_generic_execution_is_not_wrapped(http: TestClient, kube: FakeKube) -> None:
    """`{"data": ...}` is elastic.io's shape for its three methods; `/v2/executions` answers the result as is."""
    body = {"data": {"type": "execution", "attributes": {"component": "shop", "method": "countdown"}}}
    accepted = http.post("/v2/executions", json=body, params={"namespace": WS_NAMESPACE})
    uid = accepted.json()["data"]["id"]
    assert "schedexec.io/api-dialect" not in kube.created[0]["metadata"]["labels"]
    kube.set_status(uid, phase="Succeeded", runs=3, result={"seen": [1, 2, 3]})
    assert http.get(f"/v2/exec/result/{uid}").json()["data"]["attributes"]["result"] == {"seen": [1, 2, 3]}


def test_a_failed_method_is_400_rejected_with_the_reason(http: TestClient, kube: FakeKube) -> None:
    uid = http.post(f"{BASE}/dynamic-metadata", json=DYNAMIC_METADATA).json()["data"]["id"]
    kube.set_status(uid, phase="Failed", runs=1, error={"reason": "ComponentError", "message": "no such table"})
    assert http.get(f"/v2/exec/poll/{uid}").status_code == 303
    rejected = error(http.get(f"/v2/exec/result/{uid}"), 400)
    assert (rejected["title"], rejected["detail"], rejected["meta"]["reason"]) == (
        "Rejected.",
        "no such table",
        "ComponentError",
    )


# --- where a request creates: workspace, then ?namespace=, then the default -----------------------


def test_a_workspace_and_an_agreeing_namespace_parameter_are_accepted(http: TestClient, kube: FakeKube) -> None:
    accepted = http.post(f"{BASE}/verify-credential", json=VERIFY_CREDENTIAL, params={"namespace": WS_NAMESPACE})
    assert accepted.status_code == 202 and created_in(kube, accepted.json()["data"]["id"]) == WS_NAMESPACE


def test_a_namespace_parameter_that_contradicts_the_workspace_is_422_at_the_workspace(
    http: TestClient, kube: FakeKube
) -> None:
    kube.grant("alice", "create", "other")
    problem = error(http.post(f"{BASE}/verify-credential", json=VERIFY_CREDENTIAL, params={"namespace": "other"}), 422)
    assert problem["source"] == {"pointer": "/data/relationships/workspace/data/id"}
    assert "?namespace=" in problem["detail"] and WS_NAMESPACE not in problem["detail"]
    assert kube.created == []


def test_an_unknown_workspace_is_404_naming_it_and_not_the_configured_ones(http: TestClient, kube: FakeKube) -> None:
    body = with_relationships(
        VERIFY_CREDENTIAL, workspace={"data": {"id": "000000000000000000000000", "type": "workspace"}}
    )
    problem = error(http.post(f"{BASE}/verify-credential", json=body), 404)
    assert problem["detail"] == "unknown workspace '000000000000000000000000'"
    assert problem["source"] == {"pointer": "/data/relationships/workspace/data/id"}
    assert WORKSPACE not in json.dumps(problem) and WS_NAMESPACE not in json.dumps(problem)
    assert kube.created == []


def test_an_unknown_workspace_is_only_told_to_a_caller_who_passed_authentication_and_authorization(
    http: TestClient, kube: FakeKube
) -> None:
    body = with_relationships(VERIFY_CREDENTIAL, workspace={"data": {"id": "unknown", "type": "workspace"}})
    http.headers.pop("Authorization")
    error(http.post(f"{BASE}/verify-credential", json=body), 401)
    refused = error(
        http.post(f"{BASE}/verify-credential", json=body, headers={"Authorization": "Bearer bob-token"}), 403
    )
    assert "unknown" not in refused["detail"]
    assert refused["detail"] == (
        "you may not create scheduledexecutions in namespace default nor in any workspace's namespace"
    )
    assert error(http.post(f"{BASE}/verify-credential", json=body, headers=TOKEN), 404)["detail"].startswith(
        "unknown workspace"
    )


def test_the_guard_refuses_before_reading_the_body_a_caller_who_may_create_in_no_possible_namespace(
    http: TestClient, kube: FakeKube
) -> None:
    bob = {"Authorization": "Bearer bob-token", "Content-Type": "application/json"}
    error(http.post(f"{BASE}/select-model", content=b"{not json", headers=bob), 403)
    asked = {a["namespace"] for a in kube.access_reviews if a["verb"] == "create"}
    assert asked == {"default", WS_NAMESPACE, "beta"}, "the API's namespace and every workspace's"


def test_a_caller_allowed_in_the_default_namespace_only_is_403_for_a_workspace_elsewhere(
    http: TestClient, kube: FakeKube
) -> None:
    refused = error(
        http.post(f"{BASE}/dynamic-metadata", json=DYNAMIC_METADATA, headers={"Authorization": "Bearer dora-token"}),
        403,
    )
    assert refused["detail"] == f"you may not create scheduledexecutions in namespace {WS_NAMESPACE}"
    assert kube.created == []


def test_without_a_workspace_the_namespace_parameter_and_then_the_default_decide(
    http: TestClient, kube: FakeKube
) -> None:
    """Requests written before workspaces were accepted keep working."""
    body = with_relationships(VERIFY_CREDENTIAL, workspace=None, credential=None)
    uid = http.post(f"{BASE}/verify-credential", json=body, params={"namespace": WS_NAMESPACE}).json()["data"]["id"]
    assert created_in(kube, uid) == WS_NAMESPACE
    dora = {"Authorization": "Bearer dora-token"}
    accepted = http.post(f"{BASE}/verify-credential", json=body, headers=dora)
    assert accepted.status_code == 202 and created_in(kube, accepted.json()["data"]["id"]) == "default"


def test_with_no_workspaces_configured_a_workspace_is_accepted_and_ignored(
    kube: FakeKube, cache: ExecutionCache
) -> None:
    with serve(kube, cache, SETTINGS.model_copy(update={"workspaces": {}})) as http:
        accepted = http.post(f"{BASE}/verify-credential", json=VERIFY_CREDENTIAL, params={"namespace": WS_NAMESPACE})
        assert accepted.status_code == 202 and created_in(kube, accepted.json()["data"]["id"]) == WS_NAMESPACE
        dora = {"Authorization": "Bearer dora-token"}
        body = with_relationships(VERIFY_CREDENTIAL, credential=None)
        accepted = http.post(
            f"{BASE}/select-model", json=with_relationships(SELECT_MODEL, credential=None), headers=dora
        )
        assert accepted.status_code == 202 and created_in(kube, accepted.json()["data"]["id"]) == "default"
        assert http.post(f"{BASE}/verify-credential", json=body, headers=dora).status_code == 202
    assert {a["namespace"] for a in kube.access_reviews if a["verb"] == "create"} == {WS_NAMESPACE, "default"}


# --- the other relationships ---------------------------------------------------------------------


def test_a_vpn_agent_is_accepted_and_changes_nothing(http: TestClient, kube: FakeKube) -> None:
    with_agent = with_relationships(
        SELECT_MODEL, vpn_agent={"data": {"id": "5b1e6a2a59e6f70011f7e9ae", "type": "vpn-agent"}}
    )
    for body in (SELECT_MODEL, with_agent):
        assert http.post(f"{BASE}/select-model", json=body).status_code == 202
    plain, with_vpn = kube.created
    assert plain["spec"] == with_vpn["spec"] and plain["metadata"] == with_vpn["metadata"]


@pytest.mark.parametrize(
    ("relationships", "pointer", "detail"),
    [
        (
            {"flow": {"data": {"id": "5aaf", "type": "flow"}}},
            "/data/relationships/flow",
            "data.relationships.flow is not supported: elastic.io's component endpoints take workspace, "
            "credential and vpn_agent",
        ),
        (
            {"workspace": {"data": {"id": WORKSPACE, "type": "workspaces"}}},
            "/data/relationships/workspace/data/type",
            "Input should be 'workspace'",
        ),
        (
            {"vpn_agent": {"data": {"id": "5b1e", "type": "vpn_agent"}}},
            "/data/relationships/vpn_agent/data/type",
            "Input should be 'vpn-agent'",
        ),
        (
            {"credential": {"data": {"id": "shop-credentials", "type": "secret"}}},
            "/data/relationships/credential/data/type",
            "Input should be 'credential'",
        ),
    ],
    ids=["undocumented", "workspace-type", "vpn-agent-type", "credential-type"],
)
def test_a_relationship_these_endpoints_do_not_take_is_422_naming_it(
    http: TestClient, kube: FakeKube, relationships: dict[str, Any], pointer: str, detail: str
) -> None:
    body = with_relationships(VERIFY_CREDENTIAL, **relationships)
    problem = error(http.post(f"{BASE}/verify-credential", json=body), 422)
    assert problem["source"] == {"pointer": pointer} and problem["detail"] == detail
    assert "Extra inputs are not permitted" not in problem["detail"]
    assert kube.created == []


def test_empty_to_one_relationships_mean_none(http: TestClient, kube: FakeKube) -> None:
    """JSON:API's `{"data": null}`: no credential, no workspace (so ?namespace= or the default), no agent."""
    body = with_relationships(
        DYNAMIC_METADATA, workspace={"data": None}, credential={"data": None}, vpn_agent={"data": None}
    )
    accepted = http.post(f"{BASE}/dynamic-metadata", json=body, params={"namespace": WS_NAMESPACE})
    assert accepted.status_code == 202, accepted.text
    assert kube.created[0]["spec"]["credentialsSecretRef"] == SEALED, "no credential: the fields are sealed"


def test_the_openapi_document_describes_the_three_relationships(http: TestClient) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["Relationships"]["properties"]) == {"workspace", "credential", "vpn_agent"}
    assert schemas["Relationships"]["additionalProperties"] is False


def test_the_credential_as_elastic_ios_docs_of_2018_sent_it_is_accepted(http: TestClient, kube: FakeKube) -> None:
    """Before workspaces, the documented body gave the credential's identifier without `data`."""
    flat = with_relationships(DYNAMIC_METADATA, credential={"type": "credential", "id": "shop-credentials"})
    assert http.post(f"{BASE}/dynamic-metadata", json=flat).status_code == 202
    assert kube.created[0]["spec"]["credentialsSecretRef"] == {"name": "shop-credentials"}
