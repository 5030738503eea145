"""The REST API over HTTP (FastAPI's TestClient), on an in-memory Kubernetes: every answer, no cluster."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi.testclient import TestClient

from schedexec import manifests, models
from schedexec.api import documents
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import PENDING
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
    return ExecutionCache(kube)


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
    assert document["data"]["attributes"] == {"result": {}, "status": PENDING, "phase": "Pending", "runs": 0}
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
            elastic("creds"),  # the named Secret's credentials (fields to verify: test_api_credentials)
            {"method": "verifyCredentials", "args": {}, "credentialsSecretRef": {"name": "creds"}},
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
        "labels": {
            "schedexec.io/created-by": "api",
            "schedexec.io/component": "test",
            "schedexec.io/api-dialect": "elastic.io",
        },
        "generateName": "api-test-",
    }
    assert kube.executions[NS, f"api-test-{uid[-4:]:0>5}"]["metadata"]["uid"] == uid


def test_a_poll_answers_200_while_running_and_303_to_the_result_once_finished(http: TestClient, kube: FakeKube) -> None:
    uid = schedule(http, "/v2/executions", execution())
    assert http.get(f"/v2/exec/poll/{uid}").json()["data"]["attributes"]["phase"] == "Pending"
    kube.set_status(uid, phase="Waiting", runs=1, partialResult={"job": 7}, nextRunAt="2030-01-01T00:00:00Z")
    polled = http.get(f"/v2/exec/poll/{uid}")
    assert polled.status_code == 200
    assert polled.json()["data"]["attributes"] == {
        "result": {},
        "status": PENDING,
        "phase": "Waiting",
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


def test_a_namespace_that_cannot_exist_is_403_without_asking_even_a_caller_allowed_everywhere(
    http: TestClient, kube: FakeKube
) -> None:
    kube.grant("alice", "create", "*")
    problem = error(http.post("/v2/executions", json=execution(), params={"namespace": "Not_A_Name"}), 403)
    assert problem["detail"] == "you may not create scheduledexecutions in namespace 'Not_A_Name'"
    assert kube.access_reviews == []


def test_an_unknown_component_is_404_without_naming_the_configured_ones(http: TestClient, kube: FakeKube) -> None:
    unknown = error(http.post("/v2/executions", json=execution(component="nope"), params={"namespace": NS}), 404)
    assert unknown["detail"] == "unknown component 'nope'"
    kube.grant("alice", "create", SETTINGS.namespace)
    missing = error(http.post("/v2/components/nope/versions/latest/verify-credential", json=elastic()), 404)
    assert "test" not in missing["detail"]


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
    too_large = http.post(
        "/v2/executions", content=body, headers={"Content-Type": "application/json"}, params={"namespace": NS}
    )
    assert error(too_large, 413)["detail"] == "the request body exceeds 300000 bytes"


def test_an_unreachable_kubernetes_api_is_503(
    http: TestClient, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(namespace: str, body: dict[str, Any]) -> None:
        raise aiohttp.ClientConnectionError("connection refused")

    monkeypatch.setattr(kube, "create_execution", unreachable)
    error(http.post("/v2/executions", json=execution(), params={"namespace": NS}), 503)


def test_the_probes_answer_without_a_token_and_say_nothing_about_executions(
    kube: FakeKube, cache: ExecutionCache
) -> None:
    kube.lists = False  # the cache has not listed the executions
    with TestClient(create_app(SETTINGS, kube, cache), headers=TOKEN) as http:
        schedule(http, "/v2/executions", execution())
        http.headers.pop("Authorization")
        assert http.get("/livez").json() == {"live": True}
        for path in ("/readyz", "/healthz"):
            assert http.get(path).status_code == 503
        cache.ready.set()
        for path in ("/readyz", "/healthz"):
            assert http.get(path).json() == {"ready": True}, "no execution count, nothing else"


def test_the_app_feeds_its_cache_while_it_serves_and_stops_at_shutdown(kube: FakeKube, cache: ExecutionCache) -> None:
    with TestClient(create_app(SETTINGS, kube, cache), headers=TOKEN) as http:
        assert http.get("/readyz").json() == {"ready": True}, "listed at start-up"
        assert kube.watchers == [cache.apply]
    assert kube.watchers == [], "no longer followed"


def test_insecure_mode_asks_kubernetes_nothing(kube: FakeKube, cache: ExecutionCache) -> None:
    app = create_app(SETTINGS.model_copy(update={"insecure": True}), kube, cache)
    with TestClient(app) as http:
        assert http.post("/v2/executions", json=execution(), params={"namespace": "anywhere"}).status_code == 202
    assert kube.token_reviews == [] and kube.access_reviews == []


# --- nothing answered before access is checked (issue 13, part 3) --------------------------------


@pytest.mark.parametrize(
    ("content", "params"),
    [
        (b"{not json", {"namespace": NS}),  # 400 for the caller who may create
        (json.dumps({"data": {"type": "execution", "attributes": {}}}).encode(), {"namespace": NS}),  # 422
        (json.dumps(execution(component="nope")).encode(), {"namespace": NS}),  # 404
        (json.dumps(execution()).encode(), {"namespace": "Not_A_Name"}),  # 422 at the parameter
        (b"x" * 300_001, {"namespace": NS}),  # 413
    ],
    ids=["bad-json", "missing-fields", "unknown-component", "bad-namespace", "too-large"],
)
def test_a_caller_without_access_learns_nothing_about_the_request(
    http: TestClient, kube: FakeKube, content: bytes, params: dict[str, str]
) -> None:
    """Authentication, then the access review, before the body is read or anything in it judged."""
    headers = {"Content-Type": "application/json"}
    http.headers.pop("Authorization")
    error(http.post("/v2/executions", content=content, params=params, headers=headers), 401)
    denied = error(
        http.post(
            "/v2/executions", content=content, params=params, headers={**headers, "Authorization": "Bearer bob-token"}
        ),
        403,
    )
    assert params["namespace"] in denied["detail"]
    assert kube.created == []


def test_every_endpoint_but_the_probes_needs_a_token(http: TestClient) -> None:
    http.headers.pop("Authorization")
    for path in ("/openapi.json", "/docs", "/v2/exec/poll/0000-0001", "/v2/exec/result/0000-0001", "/nowhere"):
        error(http.get(path), 401)
    error(http.post(f"{ELASTIC}/verify-credential", json=elastic()), 401)
    assert http.get("/openapi.json", headers=TOKEN).status_code == 200


# --- tokens for the API's audience only (part 2) ------------------------------------------------


def test_a_token_for_another_audience_is_401(http: TestClient, kube: FakeKube) -> None:
    kube.user("kubernetes-token", "alice", audiences=("https://kubernetes.default.svc",))
    refused = error(http.get("/v2/exec/poll/0000-0001", headers={"Authorization": "Bearer kubernetes-token"}), 401)
    assert "--audience schedexec" in refused["detail"]
    assert kube.reviewed_audiences == [["schedexec"]]


def test_the_audiences_are_configurable(kube: FakeKube, cache: ExecutionCache) -> None:
    kube.user("other-token", "alice", audiences=("shop-gateway",))
    app = create_app(SETTINGS.model_copy(update={"audiences": ["shop-gateway"]}), kube, cache)
    with TestClient(app, headers={"Authorization": "Bearer other-token"}) as http:
        schedule(http, "/v2/executions", execution())
    assert kube.reviewed_audiences == [["shop-gateway"]]


def test_an_expired_or_revoked_token_is_401_once_its_cached_review_expires(
    kube: FakeKube, cache: ExecutionCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("schedexec.api.limits.time.monotonic", lambda: now[0])
    with TestClient(create_app(SETTINGS, kube, cache), headers=TOKEN) as http:
        uid = schedule(http, "/v2/executions", execution())
        del kube.users["alice-token"]  # the API server no longer accepts it (expired, or its Secret deleted)
        now[0] += SETTINGS.review_ttl_seconds - 1
        assert http.get(f"/v2/exec/poll/{uid}").status_code == 200, "within the documented bound"
        now[0] += 2
        error(http.get(f"/v2/exec/poll/{uid}"), 401)


# --- idempotency keyed on the caller, not the token (part 4) ------------------------------------


def test_two_tokens_of_the_same_service_account_share_idempotency_keys(http: TestClient, kube: FakeKube) -> None:
    """A retry after a token refresh: same username and uid, another credential id in `extra`."""
    account = "system:serviceaccount:shop:client"
    kube.user("token-1", account, credential_id="jti-1")
    kube.user("token-2", account, credential_id="jti-2")
    kube.grant(account, "create", NS)
    first = schedule(http, "/v2/executions", execution(), **{"Idempotency-Key": "k", "Authorization": "Bearer token-1"})
    again = schedule(http, "/v2/executions", execution(), **{"Idempotency-Key": "k", "Authorization": "Bearer token-2"})
    assert first == again and len(kube.executions) == 1
    kube.user("bob-2", "bob")
    kube.grant("bob", "create", NS)
    other = schedule(http, "/v2/executions", execution(), **{"Idempotency-Key": "k", "Authorization": "Bearer bob-2"})
    assert other != first, "another caller's key is another execution"


# --- review budget per client (part 7) ----------------------------------------------------------


def test_garbage_tokens_cost_reviews_only_up_to_the_clients_budget_then_429(
    kube: FakeKube, cache: ExecutionCache
) -> None:
    settings = SETTINGS.model_copy(update={"review_burst_per_client": 5, "reviews_per_second_per_client": 0.5})
    with TestClient(create_app(settings, kube, cache)) as http:
        answers = [http.get("/v2/exec/poll/0000-0001", headers={"Authorization": f"Bearer junk-{i}"}) for i in range(8)]
        assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
        assert answers[-1].headers["Retry-After"] == "2"
        assert len(kube.token_reviews) == 5, "no review sent once the budget is spent"
        again = http.get("/v2/exec/poll/0000-0001", headers={"Authorization": "Bearer junk-0"})
        assert again.status_code == 401, "a refused token is remembered: it costs no review"


# --- results kept outside the status (issue 14, part 3) -----------------------------------------


def keep_result(kube: FakeKube, uid: str, text: str) -> dict[str, Any]:
    """The operator's part for a large result: the ConfigMap (its own builder), then the status naming it."""
    stored = next(b for b in kube.executions.values() if b["metadata"]["uid"] == uid)
    config_map, ref = manifests.result_config_map(models.ScheduledExecution.model_validate(stored), text)
    kube.config_maps[NS, ref.config_map] = config_map
    kube.set_status(uid, phase="Succeeded", runs=1, resultRef=ref.model_dump(mode="json", by_alias=True))
    return config_map


@pytest.mark.parametrize("size", [40_000, 1_040_000], ids=["plain", "gzip"])
def test_a_result_kept_in_a_config_map_is_answered_whole_in_the_same_document(
    http: TestClient, kube: FakeKube, size: int
) -> None:
    uid = schedule(http, "/v2/executions", execution())
    result = {"schema": "ü" * (size // 2), "n": [1, 2.5, None, True]}
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    config_map = keep_result(kube, uid, text)
    assert (manifests.RESULT_KEY in config_map.get("data", {})) == (size < manifests.PLAIN_RESULT_LIMIT)
    answer = http.get(f"/v2/exec/result/{uid}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/vnd.api+json"
    inline = copy.deepcopy(next(b for b in kube.executions.values() if b["metadata"]["uid"] == uid))
    inline["status"] = {"phase": "Succeeded", "runs": 1, "result": result}
    assert answer.json() == documents.execution_document(inline), "the same document as for a result in status"
    assert text.encode() in answer.content, "the kept text is passed on as it is"
    assert int(answer.headers["content-length"]) == len(answer.content)


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (
            lambda cm: cm["data"].update({manifests.RESULT_KEY: cm["data"][manifests.RESULT_KEY].replace("x", "y", 1)}),
            "match",
        ),
        (lambda cm: cm["metadata"].update(ownerReferences=[{"uid": "someone-else"}]), "not owned by this execution"),
        (lambda cm: cm.clear(), "gone"),
    ],
    ids=["tampered", "not-owned", "deleted"],
)
def test_a_kept_result_that_does_not_match_its_record_is_502(
    http: TestClient, kube: FakeKube, damage: Any, detail: str
) -> None:
    uid = schedule(http, "/v2/executions", execution())
    config_map = keep_result(kube, uid, json.dumps({"blob": "x" * 20_000}))
    key = (NS, config_map["metadata"]["name"])
    damage(kube.config_maps[key])
    if not kube.config_maps[key]:
        del kube.config_maps[key]
    assert detail in error(http.get(f"/v2/exec/result/{uid}"), 502)["detail"]
