"""elastic.io `fields` that carry credentials never land in an execution's args (issue 25, item 3).

verify-credential's fields, and a dynamic-metadata or select-model cfg sent
without a named credential, are sealed by the API in a Secret of their own
(`sealing.seal`): created after the execution and owned by it, under a name
nobody can predict, for a caller allowed to create Secrets; the execution's
args keep only a salted digest and its credentialsSecretRef names the
Secret. On the in-memory Kubernetes: what is stored where, who may, what a
retry and a failure do, and that a canary sent in the fields is nowhere but
in the Secret. The runner's side is tests/runner/test_sealed_config.py.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedexec import models
from schedexec.api import sealing
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec_runner import contract
from tests.unit.api_fake import FakeKube
from tests.unit.test_api_app import ELASTIC, NS, SETTINGS, TOKEN, elastic

CANARY = "canary-fields-0c4f9a"


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    kube.user("alice-token", "alice")
    for verb in ("create", "get"):
        kube.grant("alice", verb, NS)
    kube.grant("alice", "create", NS, resource="secrets")
    kube.grant("alice", "get", NS, resource="secrets", name="creds")
    kube.user("carol-token", "carol")  # may create executions, not secrets
    kube.grant("carol", "create", NS)
    return kube


@pytest.fixture
def http(kube: FakeKube, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "key").write_bytes(b"s" * 32)
    settings = SETTINGS.model_copy(update={"idempotency_key_file": tmp_path / "key"})
    with TestClient(create_app(settings, kube, ExecutionCache(kube)), headers=TOKEN) as client:
        yield client


def verify(http: TestClient, fields: dict[str, Any], **headers: str) -> Any:
    return http.post(
        f"{ELASTIC}/verify-credential", json=elastic(fields=fields), params={"namespace": NS}, headers=headers
    )


def content(kube: FakeKube, name: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(kube.secrets[NS, name]["data"][contract.CONFIG_KEY]))  # type: ignore[no-any-return]


def test_verify_credential_fields_go_to_a_secret_owned_by_the_execution_and_only_a_digest_to_its_args(
    http: TestClient, kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    fields = {"apiKey": CANARY, "host": "shop.example"}
    with caplog.at_level(logging.DEBUG):
        accepted = verify(http, fields)
    assert accepted.status_code == 202, accepted.text
    (created,) = kube.created
    spec = created["spec"]
    assert set(spec["args"]) == {contract.CONFIG_DIGEST}
    secret_name = spec["credentialsSecretRef"]["name"]
    assert (
        secret_name.startswith(sealing.CONFIG_SECRET_PREFIX)
        and len(secret_name) >= len(sealing.CONFIG_SECRET_PREFIX) + 32
    )
    execution = kube.executions[NS, accepted.json()["meta"]["name"]]
    secret = kube.secrets[NS, secret_name]
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "name": execution["metadata"]["name"],
            "uid": execution["metadata"]["uid"],
        }
    ]
    assert secret["immutable"] is True and secret["type"] == "Opaque"
    assert content(kube, secret_name)["args"] == fields
    assert kube.delivered_args(NS, spec) == fields, "the run gets the fields back"
    # the canary: nowhere in what the API stored on the execution, answered, or logged
    assert CANARY not in json.dumps(list(kube.executions.values())) and CANARY not in accepted.text
    assert CANARY not in caplog.text


def test_two_requests_with_the_same_fields_get_unrelated_secrets_and_digests(http: TestClient, kube: FakeKube) -> None:
    for _ in range(2):
        assert verify(http, {"apiKey": "password"}).status_code == 202
    one, two = (created["spec"] for created in kube.created)
    assert one["credentialsSecretRef"] != two["credentialsSecretRef"]
    assert one["args"] != two["args"], "the digest is salted: it tells nothing about the value"


def test_a_caller_who_may_not_create_secrets_is_403_and_nothing_is_created(http: TestClient, kube: FakeKube) -> None:
    refused = verify(http, {"apiKey": CANARY}, Authorization="Bearer carol-token")
    assert refused.status_code == 403, refused.text
    detail = refused.json()["errors"][0]["detail"]
    assert f"may not create secrets in namespace {NS}" in detail and CANARY not in detail
    assert kube.created == [] and kube.secrets == {}


@pytest.mark.parametrize(
    ("path", "attributes"),
    [
        ("verify-credential", {}),
        ("dynamic-metadata", {"module": "products"}),
        ("select-model", {"module": "products", "method": "getCategories"}),
    ],
)
def test_a_cfg_without_a_named_credential_is_sealed_and_with_one_stays_in_the_args(
    http: TestClient, kube: FakeKube, path: str, attributes: dict[str, Any]
) -> None:
    fields = {"apiKey": CANARY}
    assert (
        http.post(f"{ELASTIC}/{path}", json=elastic(fields=fields, **attributes), params={"namespace": NS}).status_code
        == 202
    )
    assert (
        http.post(
            f"{ELASTIC}/{path}", json=elastic("creds", fields={"shop": "demo"}, **attributes), params={"namespace": NS}
        ).status_code
        == 202
    )
    sealed, named = (created["spec"] for created in kube.created)
    assert set(sealed["args"]) == {contract.CONFIG_DIGEST} and CANARY not in json.dumps(sealed)
    assert named["args"] == {"shop": "demo"} and named["credentialsSecretRef"] == {"name": "creds"}
    assert len(kube.secrets) == 1


def test_without_fields_nothing_is_sealed_and_no_secret_is_asked_for(http: TestClient, kube: FakeKube) -> None:
    accepted = http.post(
        f"{ELASTIC}/dynamic-metadata",
        json=elastic(module="products"),
        params={"namespace": NS},
        headers={"Authorization": "Bearer carol-token"},
    )
    assert accepted.status_code == 202 and kube.secrets == {}
    assert kube.created[0]["spec"]["args"] == {}


def test_a_retry_with_the_idempotency_key_answers_the_same_execution_and_repairs_a_missing_secret(
    http: TestClient, kube: FakeKube
) -> None:
    first = verify(http, {"apiKey": CANARY}, **{"Idempotency-Key": "verify-1"})
    assert first.status_code == 202
    assert len(kube.secrets) == 1
    sealed = dict(kube.secrets)
    kube.secrets.clear()  # the API crashed after the execution, before its Secret
    again = verify(http, {"apiKey": CANARY}, **{"Idempotency-Key": "verify-1"})
    assert again.status_code == 202 and again.json()["data"]["id"] == first.json()["data"]["id"]
    assert kube.secrets == sealed, "the same Secret, same content: its digest is the execution's"
    assert verify(http, {"apiKey": CANARY}, **{"Idempotency-Key": "verify-1"}).status_code == 202, "exists: fine"
    other = verify(http, {"apiKey": "another"}, **{"Idempotency-Key": "verify-1"})
    assert other.status_code == 409


def test_a_secret_that_cannot_be_created_is_503_saying_to_retry(http: TestClient, kube: FakeKube) -> None:
    kube.secret_failure = RuntimeError("secrets is forbidden: User system:serviceaccount:x:api cannot create")
    refused = verify(http, {"apiKey": CANARY})
    assert refused.status_code == 503, refused.text
    detail = refused.json()["errors"][0]["detail"]
    assert "retry (with an Idempotency-Key" in detail and CANARY not in detail


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.dictionaries(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(st.characters(codec="utf-8"), max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_fields_reach_the_run_intact_and_only_through_the_secret(
    http: TestClient, kube: FakeKube, fields: dict[str, Any]
) -> None:
    kube.created.clear()
    accepted = verify(http, fields)
    assert accepted.status_code == 202, accepted.text
    spec = kube.created[-1]["spec"]
    assert set(spec["args"]) == {contract.CONFIG_DIGEST}
    assert kube.delivered_args(NS, spec) == fields
