"""Issue 25 on the real control plane: what one tenant of the REST API cannot do to another.

The API runs as a real process (as `test_restapi` starts it) with a signing
key file (SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE); callers are real
ServiceAccounts with real tokens.

- Idempotency-Key squatting: another user creates the object the victim's
  retry would look for first, under the name and annotation the old scheme
  gave, and then (the victim's execution name having leaked) deletes the
  victim's execution and re-creates it with the annotation copied and other
  args. The victim's POSTs never answer the planted executions.
- Credentials in clear text: verify-credential with a canary in `fields`;
  the verification works (the component saw the value), and the canary is
  nowhere in the execution, the Jobs, the pods, the Events, the ConfigMaps,
  or the operator's and the API's logs. Its Secret is owned by the execution
  and goes with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from schedexec import models
from schedexec.api import documents
from schedexec.api.documents import IDEMPOTENCY
from schedexec_runner import contract
from tests.cluster.test_restapi import COMPONENTS, account_token
from tests.support import Api, LocalCluster, Operator, serving_api, wait_for

pytestmark = pytest.mark.cluster
CANARY = f"canary-tenancy-{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def tenancy_api(cluster: LocalCluster, operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("tenancy-api")
    key = folder / "idempotency-key"
    key.write_text(secrets.token_hex(32))
    settings = {
        "SCHEDEXEC_API_COMPONENTS": json.dumps(COMPONENTS),
        "SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE": str(key),
    }
    with serving_api(cluster, folder, settings) as api:
        yield api


def account(cluster: LocalCluster, namespace: str, name: str, rules: list[dict[str, Any]]) -> str:
    """A ServiceAccount bound to a Role of `rules`: a token of it for the REST API."""
    return account_token(cluster, namespace, name, rules)


EXECUTIONS = {"apiGroups": [models.GROUP], "resources": [models.PLURAL], "verbs": ["create", "get"]}
CREATE_SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}
REQUEST = {
    "data": {"type": "execution", "attributes": {"component": "test", "method": "countdown", "args": {"left": 0}}}
}
SPEC = {
    "component": {"image": "ghcr.io/schedexec/test-component:dev"},
    "method": "countdown",
    "args": {"left": 0},
    "timeoutSeconds": 600,
    "runTimeoutSeconds": 300,
    "ttlSecondsAfterFinished": 3600,
}
"""The spec the API creates for REQUEST (its defaults)."""


def plant(cluster: LocalCluster, namespace: str, name: str, annotation: str) -> str:
    """Another user's execution under `name`, with `annotation` and args of their own: its uid."""
    body = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {
            "name": name,
            "labels": {documents.CREATED_BY: "api", documents.COMPONENT: "test"},
            "annotations": {IDEMPOTENCY: annotation},
        },
        "spec": {**SPEC, "args": {"left": 0, "forged": True}},
    }
    created = cluster.custom.create_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, models.PLURAL, body
    )
    return str(created["metadata"]["uid"])  # type: ignore[index]


def post(http: httpx.Client, namespace: str, key: str) -> dict[str, Any]:
    answer = http.post(
        "/v2/executions", json=REQUEST, params={"namespace": namespace}, headers={"Idempotency-Key": key}
    )
    assert answer.status_code == 202, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_an_execution_another_user_planted_for_the_victims_idempotency_key_is_never_the_victims(
    cluster: LocalCluster, namespace: str, tenancy_api: Api
) -> None:
    token = account(cluster, namespace, "victim", [EXECUTIONS])
    uid = cluster.core.read_namespaced_service_account("victim", namespace).metadata.uid
    user = f"system:serviceaccount:{namespace}:victim"
    # what anyone could compute before issue 25: the name and annotation of (victim, key, request)
    request = hashlib.sha256(json.dumps(SPEC, sort_keys=True).encode()).hexdigest()
    owner = hashlib.sha256(json.dumps([user, uid, "order-1"]).encode()).hexdigest()
    planted = plant(cluster, namespace, f"api-{owner[:24]}", f"{owner}:{request}")
    with tenancy_api.client(token) as http:
        first = post(http, namespace, "order-1")
        assert first["data"]["id"] != planted
        name = first["meta"]["name"]
        assert cluster.execution(namespace, name)["spec"]["args"] == {"left": 0}
        assert post(http, namespace, "order-1")["data"]["id"] == first["data"]["id"], "a retry finds the victim's"

        # the name leaked: someone with delete rights replaces the victim's execution, annotation copied
        annotation = cluster.execution(namespace, name)["metadata"]["annotations"][IDEMPOTENCY]
        cluster.custom.delete_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, name)
        wait_for("the victim's execution to go", lambda: not _exists(cluster, namespace, name), timeout=30)
        replaced = plant(cluster, namespace, name, annotation)
        retried = post(http, namespace, "order-1")
        assert retried["data"]["id"] not in (replaced, planted, first["data"]["id"])
        assert retried["meta"]["name"] != name
        assert cluster.execution(namespace, retried["meta"]["name"])["spec"]["args"] == {"left": 0}
        assert post(http, namespace, "order-1")["data"]["id"] == retried["data"]["id"]


def _exists(cluster: LocalCluster, namespace: str, name: str) -> bool:
    try:
        cluster.execution(namespace, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_canary_sent_in_verify_credential_fields_is_verified_and_found_nowhere_else(
    cluster: LocalCluster, namespace: str, operator: Operator, tenancy_api: Api
) -> None:
    token = account(cluster, namespace, "verifier", [EXECUTIONS, CREATE_SECRETS])
    fields = {"apiKey": CANARY, "expectedSha256": sha256(CANARY.encode()).hexdigest()}
    body = {"data": {"type": "verify-credential", "attributes": {"fields": fields}}}
    with tenancy_api.client(token) as http:
        accepted = http.post(
            "/v2/components/test/versions/latest/verify-credential", json=body, params={"namespace": namespace}
        )
        assert accepted.status_code == 202, accepted.text
        location, name = accepted.headers["Location"], accepted.json()["meta"]["name"]
        serialize = cluster.api.sanitize_for_serialization
        seen: dict[str, list[str]] = {"its Jobs": [], "its pods": []}  # the run's, snapshotted while they exist
        deadline = time.monotonic() + 90
        while (polled := http.get(location)).status_code == 200:
            assert time.monotonic() < deadline, "verify-credential did not finish"
            seen["its Jobs"].append(json.dumps(serialize(cluster.batch.list_namespaced_job(namespace).items)))
            seen["its pods"].append(json.dumps(serialize(cluster.core.list_namespaced_pod(namespace).items)))
            time.sleep(0.1)
        assert polled.status_code == 303, polled.text
        result = http.get(polled.headers["Location"])
    assert result.json()["data"]["attributes"]["result"] == {"data": {"verified": True}}, "the component saw it"

    execution = cluster.execution(namespace, name)
    secret_name = execution["spec"]["credentialsSecretRef"]["name"]
    secret = cluster.core.read_namespaced_secret(secret_name, namespace)
    sealed = json.loads(base64.b64decode(secret.data[contract.CONFIG_KEY]))
    assert sealed["args"] == fields, "the Secret holds the fields"
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == (models.KIND, name, execution["metadata"]["uid"])

    places = {
        "the execution": json.dumps(execution),
        "its Jobs": "".join(seen["its Jobs"]) + json.dumps(serialize(cluster.batch.list_namespaced_job(namespace))),
        "its pods": "".join(seen["its pods"]) + json.dumps(serialize(cluster.core.list_namespaced_pod(namespace))),
        "the Events": json.dumps(serialize(cluster.events(namespace))),
        "the ConfigMaps": json.dumps(serialize(cluster.core.list_namespaced_config_map(namespace))),
        "the operator's log": operator.logs(),
        "the API's log": Path(tenancy_api.log).read_text(errors="replace"),
    }
    assert secret_name in places["its pods"], "a snapshot caught the run's pod, which mounts the Secret"
    leaked = [where for where, text in places.items() if CANARY in text]
    assert leaked == [], f"the canary is in {', '.join(leaked)}"

    cluster.custom.delete_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, name)
    wait_for(
        "the garbage collector to delete the Secret with its execution",
        lambda: not _secret(cluster, namespace, secret_name),
        timeout=60,
    )


def test_a_caller_who_may_not_create_secrets_cannot_send_fields_to_verify(
    cluster: LocalCluster, namespace: str, tenancy_api: Api
) -> None:
    token = account(cluster, namespace, "no-secrets", [EXECUTIONS])
    body = {"data": {"type": "verify-credential", "attributes": {"fields": {"apiKey": CANARY}}}}
    with tenancy_api.client(token) as http:
        refused = http.post(
            "/v2/components/test/versions/latest/verify-credential", json=body, params={"namespace": namespace}
        )
    assert refused.status_code == 403, refused.text
    assert "may not create secrets" in refused.text and CANARY not in refused.text
    listed = cluster.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)
    assert listed["items"] == []  # type: ignore[index]


def _secret(cluster: LocalCluster, namespace: str, name: str) -> bool:
    try:
        cluster.core.read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
