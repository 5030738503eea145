"""The REST API over HTTP (FastAPI's TestClient), on an in-memory Kubernetes: every answer, no cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from fastapi.testclient import TestClient

from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec.settings import ApiSettings
from tests.unit.api_fake import FakeKube

NS = "shop"
TOKEN = {"Authorization": "Bearer alice-token"}
SETTINGS = ApiSettings(
    components={"test": {"image": "reg/test:{revision}", "default_revision": "dev"}},
    namespace="default",
    insecure=False,
    max_body_bytes=300_000,
    default_timeout_seconds=600,
    default_run_timeout_seconds=300,
    ttl_seconds_after_finished=3600,
)
ELASTIC = "/v2/components/test/versions/latest"


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    kube.user("alice-token", "alice")
    kube.user("bob-token", "bob")
    for verb in ("create", "get"):
        kube.grant("alice", verb, NS)
    kube.grant("alice", "get", NS, resource="secrets", name="creds")
    kube.grant("bob", "get", "elsewhere")
    return kube


@pytest.fixture
def cache(kube: FakeKube) -> ExecutionCache:
    cache = ExecutionCache(kube)
    kube.watchers.append(cache.apply)
    return cache


@pytest.fixture
def http(kube: FakeKube, cache: ExecutionCache) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, kube, cache), headers=TOKEN, follow_redirects=False) as client:
        yield client


def elastic(credential: str | None = None, **attributes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "x", "attributes": attributes}
    if credential:
        data["relationships"] = {"credential": {"data": {"id": credential, "type": "credential"}}}
    return {"data": data}


def execution(**attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "execution", "attributes": {"component": "test", "method": "countdown", **attributes}}}


def schedule(http: TestClient, path: str, body: dict[str, Any], **headers: str) -> str:
    """POST, expect 202 and the document; the execution id."""
    response = http.post(path, json=body, params={"namespace": NS}, headers=headers)
    assert response.status_code == 202, response.text
    document = response.json()
    uid: str = document["data"]["id"]
    assert response.headers["Location"] == f"/v2/exec/poll/{uid}"
    assert document["data"]["links"] == {"self": f"/v2/exec/result/{uid}"}
    assert document["data"]["attributes"] == {"status": "Pending", "result": {}, "runs": 0}
    return uid


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The one JSON:API error of a refusal."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/vnd.api+json"
    (problem,) = response.json()["errors"]
    assert problem["status"] == str(status)
    return problem  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "body", "spec"),
    [
        (
            "verify-credential",
            elastic("creds", fields={"apiKey": "k"}),
            {"method": "verifyCredentials", "args": {"apiKey": "k"}, "credentialsSecretRef": {"name": "creds"}},
        ),
        ("dynamic-metadata", elastic(module="products"), {"method": "getMetaModel", "module": "products", "args": {}}),
        (
            "select-model",
            elastic(module="list", method="getCategories"),
            {"method": "selectModel", "module": "list", "function": "getCategories", "args": {}},
        ),
    ],
)
def test_each_elastic_io_endpoint_creates_an_execution_and_answers_202_with_its_location(
    http: TestClient, kube: FakeKube, path: str, body: dict[str, Any], spec: dict[str, Any]
) -> None:
    uid = schedule(http, f"{ELASTIC}/{path}", body)
    (created,) = kube.created
    assert created["spec"] == {
        "component": {"image": "reg/test:dev"},
        "timeoutSeconds": 600,
        "runTimeoutSeconds": 300,
        "ttlSecondsAfterFinished": 3600,
        **spec,
    }
    assert created["metadata"] == {
        "labels": {"schedexec.io/created-by": "api", "schedexec.io/component": "test"},
        "generateName": "api-test-",
    }
    assert kube.executions[NS, f"api-test-{uid[-4:]:0>5}"]["metadata"]["uid"] == uid


def test_a_poll_answers_200_while_running_and_303_to_the_result_once_finished(http: TestClient, kube: FakeKube) -> None:
    uid = schedule(http, "/v2/executions", execution())
    assert http.get(f"/v2/exec/poll/{uid}").json()["data"]["attributes"]["status"] == "Pending"
    kube.set_status(uid, phase="Waiting", runs=1, partialResult={"job": 7}, nextRunAt="2030-01-01T00:00:00Z")
    polled = http.get(f"/v2/exec/poll/{uid}")
    assert polled.status_code == 200
    assert polled.json()["data"]["attributes"] == {
        "status": "Waiting",
        "result": {},
        "runs": 1,
        "partialResult": {"job": 7},
        "nextRunAt": "2030-01-01T00:00:00Z",
    }
    assert polled.json()["meta"]["namespace"] == NS
    kube.set_status(uid, phase="Succeeded", runs=2, result={"seen": [1, 2]})
    finished = http.get(f"/v2/exec/poll/{uid}")
    assert finished.status_code == 303 and finished.headers["Location"] == f"/v2/exec/result/{uid}"


def test_the_result_is_200_when_done_409_while_running_and_400_with_the_reason_when_failed(
    http: TestClient, kube: FakeKube
) -> None:
    done, failed = schedule(http, "/v2/executions", execution()), schedule(http, "/v2/executions", execution())
    early = error(http.get(f"/v2/exec/result/{done}"), 409)
    assert early["meta"] == {"phase": "Pending"} and "keep polling" in early["detail"]
    kube.set_status(done, phase="Succeeded", runs=1, result={"verified": True})
    result = http.get(f"/v2/exec/result/{done}")
    assert result.status_code == 200 and result.json()["data"]["attributes"]["result"] == {"verified": True}
    kube.set_status(
        failed,
        phase="Failed",
        runs=1,
        error={"reason": "ShopUnavailable", "message": "the shop answered 503"},
        partialResult={"page": 2},
    )
    rejected = error(http.get(f"/v2/exec/result/{failed}"), 400)
    assert rejected["title"] == "Rejected." and rejected["detail"] == "the shop answered 503"
    assert rejected["meta"] == {"reason": "ShopUnavailable", "phase": "Failed", "partialResult": {"page": 2}}


def test_unknown_ids_and_ids_in_namespaces_the_caller_cannot_read_are_both_404(
    http: TestClient, kube: FakeKube
) -> None:
    mine = schedule(http, "/v2/executions", execution())
    for path in (f"/v2/exec/poll/{mine}", f"/v2/exec/result/{mine}", "/v2/exec/poll/0000-unknown"):
        token = {"Authorization": "Bearer bob-token"} if mine in path else {}
        hidden = error(http.get(path, headers=token), 404)
        assert NS not in hidden["detail"]


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6cHc=", "Bearer ", "Bearer forged"])
def test_a_request_without_an_accepted_bearer_token_is_401(http: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if authorization is None:
        http.headers.pop("Authorization")
    error(http.post("/v2/executions", json=execution(), params={"namespace": NS}, headers=headers), 401)
    error(http.get("/v2/exec/poll/0000-0001", headers=headers), 401)


def test_a_caller_the_access_review_denies_is_403_and_nothing_is_created(http: TestClient, kube: FakeKube) -> None:
    denied = error(http.post("/v2/executions", json=execution(), params={"namespace": "elsewhere"}), 403)
    assert "namespace elsewhere" in denied["detail"]
    secret = error(
        http.post(f"{ELASTIC}/verify-credential", json=elastic("someone-elses"), params={"namespace": NS}), 403
    )
    assert "someone-elses" in secret["detail"]
    assert kube.created == []
    assert kube.access_reviews[-1] == {"resource": "secrets", "verb": "get", "namespace": NS, "name": "someone-elses"}


def test_reviews_are_cached_so_a_polling_client_costs_one_token_review(http: TestClient, kube: FakeKube) -> None:
    uid = schedule(http, "/v2/executions", execution())
    for _ in range(5):
        assert http.get(f"/v2/exec/poll/{uid}").status_code == 200
    assert kube.token_reviews == ["alice-token"]
    assert [a["verb"] for a in kube.access_reviews] == ["create", "get"]


@pytest.mark.parametrize(
    ("path", "body", "pointer"),
    [
        (f"{ELASTIC}/dynamic-metadata", elastic(), "/data/attributes/module"),
        (f"{ELASTIC}/select-model", elastic(method="getCategories"), "/data/attributes/module"),
        (f"{ELASTIC}/select-model", elastic(module="list"), "/data/attributes/method"),
        ("/v2/executions", execution(method="getMetaModel"), "/data/attributes/module"),
        ("/v2/executions", execution(method="selectModel"), "/data/attributes/function"),
        ("/v2/executions", execution(timeoutSeconds=60, runTimeoutSeconds=61), "/data/attributes/runTimeoutSeconds"),
        ("/v2/executions", execution(args={"blob": "x" * 210_000}), "/data/attributes/args"),
        (f"{ELASTIC}/verify-credential", elastic(fields={"blob": "x" * 210_000}), "/data/attributes/fields"),
    ],
)
def test_a_request_that_cannot_be_scheduled_is_422_pointing_at_the_attribute(
    http: TestClient, kube: FakeKube, path: str, body: dict[str, Any], pointer: str
) -> None:
    problem = error(http.post(path, json=body, params={"namespace": NS}), 422)
    assert problem["source"] == {"pointer": pointer}
    assert kube.created == []


def test_the_422_for_the_timeouts_names_both_attributes(http: TestClient) -> None:
    body = execution(timeoutSeconds=60, runTimeoutSeconds=61)
    problem = error(http.post("/v2/executions", json=body, params={"namespace": NS}), 422)
    assert problem["detail"] == "data.attributes.runTimeoutSeconds must not exceed data.attributes.timeoutSeconds"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "where"),
    [
        (b"{not json", "application/json", 400, None),
        (
            json.dumps({"data": {"type": "execution", "attributes": {"component": "test"}}}).encode(),
            "application/json",
            422,
            {"pointer": "/data/attributes/method"},
        ),
        (
            json.dumps(execution(timeoutSeconds=-5)).encode(),
            "application/json",
            422,
            {"pointer": "/data/attributes/timeoutSeconds"},
        ),
        (b"method=x", "text/plain", 422, None),
    ],
)
def test_malformed_bodies_get_json_api_errors(
    http: TestClient, content: bytes, content_type: str, status: int, where: dict[str, str] | None
) -> None:
    response = http.post(
        "/v2/executions", content=content, headers={"Content-Type": content_type}, params={"namespace": NS}
    )
    assert response.status_code == status
    errors = response.json()["errors"]
    assert errors and all(e["status"] == str(status) for e in errors)
    if where:
        assert where in [e.get("source") for e in errors]


def test_a_bad_namespace_parameter_is_422_at_the_parameter(http: TestClient) -> None:
    problem = error(http.post("/v2/executions", json=execution(), params={"namespace": "Not_A_Name"}), 422)
    assert problem["source"] == {"parameter": "namespace"}


def test_an_unknown_component_is_404(http: TestClient) -> None:
    unknown = error(http.post("/v2/executions", json=execution(component="nope"), params={"namespace": NS}), 404)
    assert unknown["detail"] == "unknown component 'nope'; configured: test"
    error(http.post("/v2/components/nope/versions/latest/verify-credential", json=elastic()), 404)


def test_a_retry_with_the_same_idempotency_key_is_the_same_execution_and_another_request_is_409(
    http: TestClient, kube: FakeKube
) -> None:
    first = schedule(http, "/v2/executions", execution(), **{"Idempotency-Key": "order-17"})
    again = schedule(http, "/v2/executions", execution(), **{"Idempotency-Key": "order-17"})
    other = schedule(http, "/v2/executions", execution(), **{"Idempotency-Key": "order-18"})
    assert first == again != other and len(kube.executions) == 2
    reused = http.post(
        "/v2/executions",
        json=execution(method="fail"),
        params={"namespace": NS},
        headers={"Idempotency-Key": "order-17"},
    )
    assert "Idempotency-Key" in error(reused, 409)["detail"]


def chunks(size: int, count: int) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked)."""
    for _ in range(count):
        yield b"x" * size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_whether_or_not_it_declares_its_length(http: TestClient, declared: bool) -> None:
    body = b"x" * 300_001 if declared else chunks(100_000, 4)
    too_large = http.post("/v2/executions", content=body, headers={"Content-Type": "application/json"})
    assert error(too_large, 413)["detail"] == "the request body exceeds 300000 bytes"


def test_an_unreachable_kubernetes_api_is_503(
    http: TestClient, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(namespace: str, body: dict[str, Any]) -> None:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(kube, "create_execution", unreachable)
    error(http.post("/v2/executions", json=execution(), params={"namespace": NS}), 503)


def test_health_is_503_until_the_cache_has_listed_the_executions(http: TestClient, cache: ExecutionCache) -> None:
    assert http.get("/healthz").status_code == 503
    cache.ready.set()
    assert http.get("/healthz").json() == {"ready": True, "executions": 0}


def test_insecure_mode_asks_kubernetes_nothing(kube: FakeKube, cache: ExecutionCache) -> None:
    app = create_app(SETTINGS.model_copy(update={"insecure": True}), kube, cache)
    with TestClient(app) as http:
        assert http.post("/v2/executions", json=execution(), params={"namespace": "anywhere"}).status_code == 202
    assert kube.token_reviews == [] and kube.access_reviews == []
