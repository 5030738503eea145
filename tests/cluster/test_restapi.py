"""The REST API as a real process serving TLS, through a real HTTP client, on the real control plane."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client

from schedexec import manifests, models
from schedexec_devcluster.controlplane import SERVICE_ACCOUNT_ISSUER
from schedexec_runner import bounds
from tests.support import (
    API_AUDIENCE,
    Api,
    LocalCluster,
    Operator,
    keep_large_result,
    serving_api,
    trusting,
    wait_for,
)

pytestmark = pytest.mark.cluster
CANARY = "canary-api-51c2"
COMPONENTS = {"test": {"image": "ghcr.io/schedexec/test-component:{revision}", "default_revision": "dev"}}
REVIEW_TTL_SECONDS = 3
"""The test API's review TTL (default 30 s), so that the revocation test ends in seconds."""
APISERVER_TOKEN_CACHE_SECONDS = 10
"""kube-apiserver's own cache of successful token authentications (TokenSuccessCacheTTL, no flag): a
TokenReview of a token revoked a moment ago may still say yes for this long."""


@pytest.fixture(scope="session")
def api(cluster: LocalCluster, operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = {
        "SCHEDEXEC_API_COMPONENTS": json.dumps(COMPONENTS),
        "SCHEDEXEC_API_MAX_BODY_BYTES": "524288",
        "SCHEDEXEC_API_REVIEW_TTL_SECONDS": str(REVIEW_TTL_SECONDS),
        # every test's client is 127.0.0.1, and schemathesis asks about many namespaces: one generous budget
        # (the budget's 429 is unit-tested)
        "SCHEDEXEC_API_REVIEWS_PER_SECOND_PER_CLIENT": "500",
        "SCHEDEXEC_API_REVIEW_BURST_PER_CLIENT": "5000",
    }
    with serving_api(cluster, tmp_path_factory.mktemp("api"), settings) as api:
        yield api


def service_account_token(
    cluster: LocalCluster,
    namespace: str,
    name: str,
    allowed: list[str],
    secrets: tuple[str, ...] = (),
    audience: str | None = API_AUDIENCE,
) -> str:
    """A real ServiceAccount token for `audience` (None: the Kubernetes API's own), the account bound to a
    Role allowing `allowed` verbs on scheduledexecutions (and `get` on the named Secrets)."""
    rules: list[dict[str, Any]] = []
    if allowed:
        rules.append({"apiGroups": ["schedexec.io"], "resources": ["scheduledexecutions"], "verbs": allowed})
        if secrets:
            rules.append(
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": list(secrets)}
            )
    return account_token(cluster, namespace, name, rules, audience)


def account_token(
    cluster: LocalCluster,
    namespace: str,
    name: str,
    rules: list[dict[str, Any]],
    audience: str | None = API_AUDIENCE,
) -> str:
    """A real ServiceAccount token for `audience`, the account bound to a Role of `rules` (none: no Role)."""
    cluster.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    if rules:
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        )
    return new_token(cluster, namespace, name, audience)


def new_token(cluster: LocalCluster, namespace: str, name: str, audience: str | None = API_AUDIENCE, *more: str) -> str:
    """Another token of ServiceAccount `name` (TokenRequest), for `audience`."""
    audiences = [f"--audience={audience}"] if audience else []
    return cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h", *audiences, *more).stdout.strip()


@pytest.fixture
def token(cluster: LocalCluster, namespace: str) -> str:
    return service_account_token(cluster, namespace, "client", ["create", "get"], secrets=("shop",))


def elastic(attributes: dict[str, Any], credential: str | None = None, type_: str = "execution") -> dict[str, Any]:
    data: dict[str, Any] = {"type": type_, "attributes": attributes}
    if credential:
        data["relationships"] = {"credential": {"data": {"id": credential, "type": "credential"}}}
    return {"data": data}


def schedule(http: httpx.Client, path: str, body: dict[str, Any], namespace: str, **headers: str) -> str:
    response = http.post(path, json=body, params={"namespace": namespace}, headers=headers)
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    document = response.json()
    assert location == f"/v2/exec/poll/{document['data']['id']}"
    assert document["data"]["type"] == "execution-result"
    assert document["data"]["links"]["self"] == f"/v2/exec/result/{document['data']['id']}"
    return location


def poll_to_result(http: httpx.Client, location: str, timeout: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        polled = http.get(location)
        if polled.status_code == 303:
            return http.get(polled.headers["Location"])
        assert polled.status_code == 200, polled.text
        time.sleep(0.3)
    pytest.fail(f"{location} did not finish in {timeout}s")


def test_the_three_elastic_io_methods_schedule_poll_and_return(
    cluster: LocalCluster, api: Api, namespace: str, token: str
) -> None:
    cluster.core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="shop"), string_data={"apiKey": CANARY})
    )
    with api.client(token) as http:
        base = "/v2/components/test/versions/latest"
        verify = schedule(
            http,
            f"{base}/verify-credential",
            elastic({"fields": {"expectedSha256": sha256(CANARY.encode()).hexdigest()}}, "shop", "verify-credential"),
            namespace,
        )
        meta = schedule(
            http, f"{base}/dynamic-metadata", elastic({"module": "products"}, type_="dynamic-metadata"), namespace
        )
        select = schedule(
            http,
            f"{base}/select-model",
            elastic({"module": "list", "method": "getCategories"}, type_="select-model"),
            namespace,
        )
        verified = poll_to_result(http, verify)
        assert verified.status_code == 200
        # elastic.io's result document: the method's return value under `result.data` (docs/elasticio-compat.md)
        assert verified.json()["data"]["attributes"]["result"] == {"data": {"verified": True}}
        assert poll_to_result(http, meta).json()["data"]["attributes"]["result"]["data"]["out"]["type"] == "object"
        assert poll_to_result(http, select).json()["data"]["attributes"]["result"]["data"]["module"] == "list"
    assert CANARY not in api.log.read_text()


def test_a_polling_command_shows_its_partial_result_then_its_result(
    api: Api, operator: Operator, namespace: str, token: str
) -> None:
    with api.client(token) as http:
        location = schedule(
            http,
            "/v2/executions",
            elastic(
                {"component": "test", "method": "countdown", "args": {"left": 2, "every": 1}, "timeoutSeconds": 60}
            ),
            namespace,
        )
        partial = wait_for(
            "a partial result while polling",
            lambda: http.get(location).json().get("data", {}).get("attributes", {}).get("partialResult"),
            timeout=60,
            interval=0.1,
        )
        assert partial["remoteJob"] == "job-42"
        done = poll_to_result(http, location)
        assert done.json()["data"]["attributes"]["result"] == {"seen": [1, 2, 3]}


def test_result_answers_409_while_running_and_400_with_reason_when_failed(
    api: Api, operator: Operator, namespace: str, token: str
) -> None:
    with api.client(token) as http:
        slow = schedule(
            http, "/v2/executions", elastic({"component": "test", "method": "sleep", "args": {"seconds": 4}}), namespace
        )
        early = http.get(slow.replace("/poll/", "/result/"))
        assert early.status_code == 409 and early.json()["errors"][0]["status"] == "409"
        failing = schedule(http, "/v2/executions", elastic({"component": "test", "method": "fail"}), namespace)
        failed = poll_to_result(http, failing)
        assert failed.status_code == 400
        error = failed.json()["errors"][0]
        assert error["meta"]["reason"] == "ShopUnavailable" and error["detail"] == "the shop answered 503"


def test_unknown_ids_are_404(api: Api, token: str) -> None:
    with api.client(token) as http:
        for path in ("/v2/exec/poll/0000-unknown", "/v2/exec/result/0000-unknown"):
            response = http.get(path)
            assert response.status_code == 404 and response.json()["errors"][0]["status"] == "404"


def test_authentication_and_authorization(cluster: LocalCluster, api: Api, namespace: str, token: str) -> None:
    body = elastic({"component": "test", "method": "countdown"})
    with api.client(None) as anonymous:
        assert anonymous.post("/v2/executions", json=body, params={"namespace": namespace}).status_code == 401
    with api.client("not-a-token") as forged:
        assert forged.post("/v2/executions", json=body, params={"namespace": namespace}).status_code == 401
    reader_only = service_account_token(cluster, namespace, "reader", ["get"])
    with api.client(reader_only) as reader:
        refused = reader.post("/v2/executions", json=body, params={"namespace": namespace})
        assert refused.status_code == 403 and refused.json()["errors"][0]["status"] == "403"
    with api.client(token) as owner:
        mine = schedule(owner, "/v2/executions", body, namespace)
    other = f"o-{namespace}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        wait_for("the default ServiceAccount", lambda: cluster.core.list_namespaced_service_account(other).items)
        stranger = service_account_token(cluster, other, "stranger", ["create", "get"])
        with api.client(stranger) as http:
            hidden = http.get(mine)
            assert hidden.status_code == 404, "an id in a namespace you cannot read looks unknown"
            assert namespace not in hidden.text
    finally:
        cluster.core.delete_namespace(other)


def test_a_retried_post_with_the_same_idempotency_key_returns_the_same_execution(
    api: Api, namespace: str, token: str
) -> None:
    body = elastic({"component": "test", "method": "countdown"})
    with api.client(token) as http:
        first = schedule(http, "/v2/executions", body, namespace, **{"Idempotency-Key": "order-17"})
        again = schedule(http, "/v2/executions", body, namespace, **{"Idempotency-Key": "order-17"})
        other = schedule(http, "/v2/executions", body, namespace, **{"Idempotency-Key": "order-18"})
    assert first == again and other != first


@pytest.mark.parametrize(
    ("content", "headers", "status", "pointer"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, None),
        (
            json.dumps({"data": {"type": "execution", "attributes": {"component": "test"}}}).encode(),
            {"Content-Type": "application/json"},
            422,
            "/data/attributes/method",
        ),
        (
            json.dumps(elastic({"component": "test", "method": "x", "timeoutSeconds": -5})).encode(),
            {"Content-Type": "application/json"},
            422,
            "/data/attributes/timeoutSeconds",
        ),
        (
            json.dumps(elastic({"component": "nope", "method": "x"})).encode(),
            {"Content-Type": "application/json"},
            404,
            None,
        ),
        (b"x" * 530_000, {"Content-Type": "application/json"}, 413, None),
        (b"method=x", {"Content-Type": "text/plain"}, 422, None),
    ],
)
def test_bad_input_gets_a_4xx_with_a_json_api_error(
    api: Api, namespace: str, token: str, content: bytes, headers: dict[str, str], status: int, pointer: str | None
) -> None:
    with api.client(token) as http:
        response = http.post("/v2/executions", content=content, headers=headers, params={"namespace": namespace})
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert errors and all(e["status"] == str(status) for e in errors)
    if pointer:
        assert pointer in [e.get("source", {}).get("pointer") for e in errors]


def test_args_beyond_an_environment_variable_reach_the_run_and_args_over_the_limit_are_refused(
    api: Api, namespace: str, token: str
) -> None:
    """150 KiB of args arrive intact; over contract.MAX_ARGS_BYTES the API answers 422 at the args."""
    args = {"blob": "ü" * 75_000, "n": 1}
    with api.client(token) as http:
        too_big = http.post(
            "/v2/executions",
            params={"namespace": namespace},
            json=elastic({"component": "test", "method": "digest", "args": {"blob": "x" * 210_000}}),
        )
        assert too_big.status_code == 422, too_big.text
        (error,) = too_big.json()["errors"]
        assert error["source"]["pointer"] == "/data/attributes/args" and "the limit is 204800 bytes" in error["detail"]
        fields = http.post(
            "/v2/components/test/versions/latest/verify-credential",
            params={"namespace": namespace},
            json=elastic({"fields": {"blob": "x" * 210_000}}, type_="verify-credential"),
        )
        assert (
            fields.status_code == 422 and fields.json()["errors"][0]["source"]["pointer"] == "/data/attributes/fields"
        )
        location = schedule(
            http, "/v2/executions", elastic({"component": "test", "method": "digest", "args": args}), namespace
        )
        deadline = time.monotonic() + 90
        while (polled := http.get(location)).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert polled.status_code == 303, polled.text
        result = http.get(polled.headers["Location"]).json()["data"]["attributes"]["result"]
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert result["sha256"] == sha256(canonical).hexdigest()


def test_select_model_without_a_module_names_the_missing_field(api: Api, namespace: str, token: str) -> None:
    with api.client(token) as http:
        response = http.post(
            "/v2/components/test/versions/latest/select-model",
            params={"namespace": namespace},
            json=elastic({"method": "getCategories"}, type_="select-model"),
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/module"


def test_schemathesis_finds_no_server_error(cluster: LocalCluster, api: Api, tmp_path: Path) -> None:
    """Property-based requests generated from the served OpenAPI document: no 5xx, ever."""
    token = service_account_token(cluster, "default", "fuzzer", ["create", "get"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {token}",
            "--tls-verify",
            str(api.ca),
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Tested: 6" in done.stdout and " passed" in done.stdout, done.stdout[-2000:]


def test_naming_a_credentials_secret_needs_permission_to_read_it(
    cluster: LocalCluster, api: Api, namespace: str, token: str
) -> None:
    body = elastic({"component": "test", "method": "files", "credential": "someone-elses"})
    with api.client(token) as http:
        refused = http.post("/v2/executions", json=body, params={"namespace": namespace})
    assert refused.status_code == 403 and "someone-elses" in refused.json()["errors"][0]["detail"]


def test_an_idempotency_key_reused_for_another_request_is_refused(api: Api, namespace: str, token: str) -> None:
    with api.client(token) as http:
        schedule(
            http,
            "/v2/executions",
            elastic({"component": "test", "method": "countdown"}),
            namespace,
            **{"Idempotency-Key": "k-1"},
        )
        other = http.post(
            "/v2/executions",
            json=elastic({"component": "test", "method": "fail"}),
            params={"namespace": namespace},
            headers={"Idempotency-Key": "k-1"},
        )
    assert other.status_code == 409


# --- issue 13 [secure]: TLS, audiences, expiry and revocation, access before answers, idempotency --------------


def test_the_api_serves_tls_only(api: Api) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(api.url.replace("https://", "http://") + "/readyz", timeout=5)  # plain HTTP to a TLS port
    with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by a verifying client
        httpx.get(f"{api.url}/readyz", timeout=5)
    assert httpx.get(f"{api.url}/readyz", timeout=5, verify=trusting(api.ca)).status_code == 200


def test_a_token_for_another_audience_is_refused(cluster: LocalCluster, api: Api, namespace: str) -> None:
    """A token minted for the Kubernetes API (or any other service) cannot be replayed against the REST API."""
    for_kubernetes = service_account_token(cluster, namespace, "client", ["create", "get"], audience=None)
    with api.client(for_kubernetes) as http:
        refused = http.post("/v2/executions", json=elastic({"component": "test", "method": "countdown"}))
    assert refused.status_code == 401 and "--audience schedexec" in refused.json()["errors"][0]["detail"]
    for_api = new_token(cluster, namespace, "client")
    with api.client(for_api) as http:
        schedule(http, "/v2/executions", elastic({"component": "test", "method": "countdown"}), namespace)
    review = client.AuthenticationV1Api(cluster.api).create_token_review({"spec": {"token": for_api}})
    assert not review.status.authenticated, "and a token for the REST API is no token for the Kubernetes API"


def signed_token(cluster: LocalCluster, namespace: str, name: str, expires_in: int) -> str:
    """A ServiceAccount token as the API server signs them (its own signing key, issuer and claims), with an
    expiry TokenRequest cannot give: in the past."""
    account = cluster.core.read_namespaced_service_account(name, namespace)
    now = int(time.time())
    claims = {
        "iss": SERVICE_ACCOUNT_ISSUER,
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": [API_AUDIENCE],
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now + expires_in,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": account.metadata.uid}},
    }

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}"
    key = serialization.load_pem_private_key(cluster.plane.layout.certs.sa_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_an_expired_token_is_refused(cluster: LocalCluster, api: Api, namespace: str) -> None:
    service_account_token(cluster, namespace, "client", ["create", "get"])
    body = elastic({"component": "test", "method": "countdown"})
    with api.client(signed_token(cluster, namespace, "client", expires_in=600)) as http:
        schedule(http, "/v2/executions", body, namespace)  # the same token, still valid: accepted
    with api.client(signed_token(cluster, namespace, "client", expires_in=-60)) as http:
        expired = http.post("/v2/executions", json=body, params={"namespace": namespace})
    assert expired.status_code == 401, expired.text


def test_a_revoked_token_stops_working_within_the_review_ttl(cluster: LocalCluster, api: Api, namespace: str) -> None:
    """A token bound to a Secret is revoked by deleting the Secret; the API notices within its review TTL
    (plus the API server's own cache of token authentications)."""
    service_account_token(cluster, namespace, "client", ["create", "get"])
    cluster.kubectl("create", "secret", "generic", "binding", "-n", namespace)
    token = new_token(
        cluster, namespace, "client", API_AUDIENCE, "--bound-object-kind=Secret", "--bound-object-name=binding"
    )
    with api.client(token) as http:
        location = schedule(http, "/v2/executions", elastic({"component": "test", "method": "sleep"}), namespace)
        cluster.kubectl("delete", "secret", "binding", "-n", namespace)
        revoked = time.monotonic()
        wait_for("the revoked token to be refused", lambda: http.get(location).status_code == 401, timeout=30)
    slack = 5  # the Secret's deletion reaching the API server's bound-object check, a loaded machine
    assert time.monotonic() - revoked <= REVIEW_TTL_SECONDS + APISERVER_TOKEN_CACHE_SECONDS + slack


@pytest.mark.parametrize(
    ("content", "params"),
    [
        (b"{not json", {}),
        (json.dumps({"data": {"type": "execution", "attributes": {}}}).encode(), {}),
        (json.dumps(elastic({"component": "nope", "method": "x"})).encode(), {}),
        (json.dumps(elastic({"component": "test", "method": "x"})).encode(), {"namespace": "Not_A_Name"}),
    ],
    ids=["bad-json", "missing-fields", "unknown-component", "bad-namespace"],
)
def test_access_is_checked_before_the_request_is_judged(
    cluster: LocalCluster, api: Api, namespace: str, content: bytes, params: dict[str, str]
) -> None:
    """No token: 401; a token that may not create here: 403; never the 400/404/422 the request deserves."""
    reader = service_account_token(cluster, namespace, "reader", ["get"])
    headers = {"Content-Type": "application/json"}
    for token, status in ((None, 401), (reader, 403)):
        with api.client(token) as http:
            answer = http.post(
                "/v2/executions", content=content, headers=headers, params={"namespace": namespace, **params}
            )
        assert answer.status_code == status, answer.text
        assert "test" not in answer.text and "nope" not in answer.text


def test_the_probes_need_no_token_and_tell_nothing_else_needs_one(api: Api) -> None:
    with api.client(None) as http:
        assert http.get("/livez").json() == {"live": True}
        assert http.get("/readyz").json() == {"ready": True} == http.get("/healthz").json()
        for path in ("/openapi.json", "/docs", "/v2/exec/poll/x", "/v2/exec/result/x"):
            assert http.get(path).status_code == 401, path


def test_two_tokens_of_the_same_service_account_are_the_same_caller_for_idempotency(
    cluster: LocalCluster, api: Api, namespace: str, token: str
) -> None:
    """A retry after a token refresh (another token, another credential id in the review's `extra`)."""
    refreshed = new_token(cluster, namespace, "client")
    assert refreshed != token
    body = elastic({"component": "test", "method": "countdown"})
    with api.client(token) as first, api.client(refreshed) as second:
        one = schedule(first, "/v2/executions", body, namespace, **{"Idempotency-Key": "order-99"})
        two = schedule(second, "/v2/executions", body, namespace, **{"Idempotency-Key": "order-99"})
    assert one == two
    other = service_account_token(cluster, namespace, "other", ["create", "get"])
    with api.client(other) as http:
        assert schedule(http, "/v2/executions", body, namespace, **{"Idempotency-Key": "order-99"}) != one


# --- issue 14: results kept outside the status -------------------------------------------------------------------


@pytest.mark.usefixtures("without_session_operator")
def test_a_result_kept_in_a_config_map_is_answered_whole_and_a_changed_one_is_502(
    cluster: LocalCluster, api: Api, namespace: str, token: str
) -> None:
    """A 1 MiB schema (kept gzip-compressed, over 1,000,000 bytes) through the API whole; a ConfigMap replaced
    by someone who may write ConfigMaps there (immutable ones cannot be edited) is refused, not passed on."""
    schema = {"type": "object", "properties": {f"field{i}": {"type": "string", "title": "ü" * 40} for i in range(3650)}}
    body, config_map = keep_large_result(cluster, namespace, "wide", schema)
    assert body["status"]["resultRef"]["key"] == manifests.RESULT_GZ_KEY
    uid = body["metadata"]["uid"]
    with api.client(token) as http:
        whole = wait_for("the result", lambda: (r := http.get(f"/v2/exec/result/{uid}")).status_code == 200 and r)
        assert len(whole.content) > 1_000_000
        assert whole.json()["data"]["attributes"]["result"] == schema
        # the ConfigMap is immutable: its data cannot change, but a ConfigMap of that name can be replaced
        cluster.core.delete_namespaced_config_map(config_map, namespace)
        forged = {
            "metadata": {
                "name": config_map,
                "ownerReferences": [
                    {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": "wide", "uid": uid}
                ],
            },
            "data": {manifests.RESULT_KEY: json.dumps({"forged": True})},
        }
        cluster.core.create_namespaced_config_map(namespace, forged)
        refused = http.get(f"/v2/exec/result/{uid}")
    assert refused.status_code == 502 and "does not match its record" in refused.json()["errors"][0]["detail"]


# --- issue 24 [poison]: bodies past the JSON bounds, executions nested as deep as the API server stores -------

EXECUTIONS = f"/apis/{models.API_VERSION}/namespaces/{{namespace}}/{models.PLURAL}"


def nested_text(levels: int) -> str:
    """The JSON text of an object `levels` deep, written as text: json.dumps recurses and stops near 1,000."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


@pytest.mark.parametrize(
    ("args", "detail", "pointer"),
    [
        (nested_text(300), f"nests deeper than {bounds.MAX_JSON_DEPTH} levels", "/data/attributes/args"),
        (nested_text(5000), f"nests deeper than {bounds.MAX_JSON_DEPTH} levels", "/data/attributes/args"),
        ('{"note": "\\ud800"}', "not valid Unicode", "/data/attributes/args"),
        ('{"n": 1' + "0" * 4000 + "}", "the Kubernetes API server refused the execution: ", None),
    ],
    ids=["300-deep", "5000-deep", "lone-surrogate", "number-too-large-for-the-api-server"],
)
def test_args_past_the_bounds_are_422_naming_the_attribute(
    api: Api, namespace: str, token: str, args: str, detail: str, pointer: str | None
) -> None:
    text = '{"data": {"type": "execution", "attributes": {"component": "test", "method": "countdown", "args": %s}}}'
    with api.client(token) as http:
        response = http.post(
            "/v2/executions",
            content=(text % args).encode(),
            params={"namespace": namespace},
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error.get("source", {}).get("pointer") == pointer and detail in error["detail"]
    assert "Traceback" not in api.log.read_text() and "0" * 1000 not in api.log.read_text()


def test_an_execution_with_args_nested_as_deep_as_the_api_server_stores_stops_no_cache(
    cluster: LocalCluster, api: Api, namespace: str, token: str, tmp_path: Path
) -> None:
    """Created with kubectl (the REST API refuses such args): the running API's watch and a new API's list
    read it, both stay ready and serve every other execution, and neither logs the args."""
    deep = tmp_path / "deep.json"
    deep.write_text(
        f'{{"apiVersion": "{models.API_VERSION}", "kind": "{models.KIND}", "metadata": {{"name": "deep-args"}}, '
        '"spec": {"component": {"image": "ghcr.io/schedexec/test-component:dev"}, "method": "countdown", '
        f'"args": {{"canary": "{CANARY}", "deep": {nested_text(bounds.API_SERVER_MAX_DEPTH - 10)}}}}}}}'
    )
    cluster.kubectl("create", "--raw", EXECUTIONS.format(namespace=namespace), "-f", str(deep))
    with api.client(token) as http:
        location = schedule(http, "/v2/executions", elastic({"component": "test", "method": "countdown"}), namespace)
        assert http.get(location).status_code in (200, 303)
    (tmp_path / "fresh").mkdir()
    with serving_api(cluster, tmp_path / "fresh", {"SCHEDEXEC_API_COMPONENTS": json.dumps(COMPONENTS)}) as fresh:
        with fresh.client(token) as http:
            assert http.get("/readyz").status_code == 200
            assert http.get(location).status_code in (200, 303), "the new API listed the deep execution and the rest"
        fresh_log = fresh.log.read_text()
    with api.client(token) as http:
        assert http.get("/readyz").status_code == 200
        assert http.get(location).status_code in (200, 303)
    for log in (api.log.read_text(), fresh_log):
        assert "Traceback" not in log and CANARY not in log
