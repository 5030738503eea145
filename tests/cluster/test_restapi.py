"""The REST sidecar as a real process, through a real HTTP client, on the real control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.support import LocalCluster, Operator, free_port, wait_for

pytestmark = pytest.mark.cluster
CANARY = "canary-api-51c2"
COMPONENTS = {"test": {"image": "ghcr.io/schedexec/test-component:{revision}", "default_revision": "dev"}}


class Api:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, follow_redirects=False)


@pytest.fixture(scope="session")
def api(cluster: LocalCluster, operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "SCHEDEXEC_API_PORT": str(port),
        "SCHEDEXEC_API_HOST": "127.0.0.1",
        "SCHEDEXEC_API_COMPONENTS": json.dumps(COMPONENTS),
        "SCHEDEXEC_API_MAX_BODY_BYTES": "524288",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Api(f"http://127.0.0.1:{port}", log)

    def healthy() -> bool:
        try:
            return httpx.get(f"{handle.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the REST API to serve", healthy, timeout=30)
        yield handle
    finally:
        process.terminate()
        process.wait(timeout=15)


def service_account_token(
    cluster: LocalCluster, namespace: str, name: str, allowed: list[str], secrets: tuple[str, ...] = ()
) -> str:
    """A real ServiceAccount token, bound to a Role allowing `allowed` verbs on scheduledexecutions
    (and `get` on the named Secrets)."""
    cluster.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    if allowed:
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        rules = [{"apiGroups": ["schedexec.io"], "resources": ["scheduledexecutions"], "verbs": allowed}]
        if secrets:
            rules.append(
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": list(secrets)}
            )
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        )
    return cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()


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
        assert verified.json()["data"]["attributes"]["result"] == {"verified": True}
        assert poll_to_result(http, meta).json()["data"]["attributes"]["result"]["out"]["type"] == "object"
        assert poll_to_result(http, select).json()["data"]["attributes"]["result"]["module"] == "list"
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
