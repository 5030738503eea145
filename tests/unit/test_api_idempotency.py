"""Idempotency-Keys only their owner can bind (issue 25, item 1).

The name and the annotation of an execution created for an Idempotency-Key
used to be plain SHA-256 of (caller, key) and of the request: anyone allowed
to create executions in the namespace could create that object first, and
the owner's POST answered 202 with their execution (a forged result) or 409
forever. Now both are HMACs under the API's signing key. The pure functions
(`bind`, `claim`, `signing_key`) are checked on their own and with
Hypothesis; then a second user plants objects before the owner's POST, on
the in-memory Kubernetes: under the name and annotation the old scheme gave,
and under the exact new name with the owner's annotation copied from a
leaked execution.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from schedexec.api import documents, idempotency
from schedexec.api.access import Caller
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import IDEMPOTENCY
from schedexec.settings import ApiSettings
from tests.unit.api_fake import FakeKube
from tests.unit.test_api_app import NS, SETTINGS, TOKEN, execution

KEY = b"k" * 32
ALICE = Caller("alice", "uid-alice", "{}")
SPEC: dict[str, Any] = {"component": {"image": "reg/test:dev"}, "method": "countdown", "args": {"left": 1}}
LABELS = {documents.CREATED_BY: "api", documents.COMPONENT: "test"}

texts = st.text(min_size=1, max_size=40)


def old_scheme(caller: Caller, key: str, spec: dict[str, Any]) -> tuple[str, str]:
    """The name and annotation anyone could compute before issue 25."""
    request = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    owner = hashlib.sha256(json.dumps([caller.user, caller.uid, key]).encode()).hexdigest()
    return f"api-{owner[:24]}", f"{owner}:{request}"


def stored(name: str, annotation: str, spec: dict[str, Any], labels: dict[str, str] = LABELS) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels, "annotations": {IDEMPOTENCY: annotation}}, "spec": spec}


# --- the pure functions ---------------------------------------------------------------------------


@given(user=texts, uid=texts, key=texts)
def test_the_names_and_annotation_are_none_the_old_scheme_or_another_key_gives(user: str, uid: str, key: str) -> None:
    caller = Caller(user, uid, "{}")
    binding = idempotency.bind(KEY, caller, key, SPEC)
    assert binding == idempotency.bind(KEY, caller, key, SPEC), "a retry binds the same"
    name, annotation = old_scheme(caller, key, SPEC)
    assert name not in binding.names and binding.annotation != annotation
    other = idempotency.bind(b"another key of 32 bytes ........", caller, key, SPEC)
    assert not set(other.names) & set(binding.names) and other.owner != binding.owner
    assert len(set(binding.names)) == idempotency.IDEMPOTENCY_NAMES
    assert all(len(n) <= 63 and n.startswith("api-") for n in binding.names)


@given(first=st.tuples(texts, texts, texts), second=st.tuples(texts, texts, texts))
def test_two_callers_or_two_keys_never_share_a_name(first: tuple[str, str, str], second: tuple[str, str, str]) -> None:
    if first == second:
        return
    one = idempotency.bind(KEY, Caller(first[0], first[1], "{}"), first[2], SPEC)
    two = idempotency.bind(KEY, Caller(second[0], second[1], "{}"), second[2], SPEC)
    assert not set(one.names) & set(two.names) and one.owner != two.owner


def test_claim_answers_only_the_execution_made_for_this_caller_and_this_request() -> None:
    binding = idempotency.bind(KEY, ALICE, "order-17", SPEC)
    name = binding.names[0]
    assert idempotency.claim(stored(name, binding.annotation, SPEC), binding, SPEC, LABELS) is idempotency.Claim.OURS
    other = idempotency.bind(KEY, ALICE, "order-17", {**SPEC, "args": {"left": 2}})
    assert (
        idempotency.claim(stored(name, other.annotation, SPEC), binding, SPEC, LABELS)
        is idempotency.Claim.OTHER_REQUEST
    )
    forged = old_scheme(ALICE, "order-17", SPEC)[1]
    assert idempotency.claim(stored(name, forged, SPEC), binding, SPEC, LABELS) is idempotency.Claim.NOT_OURS
    assert idempotency.claim(stored(name, "", SPEC), binding, SPEC, LABELS) is idempotency.Claim.NOT_OURS
    # the annotation copied onto an object that does something else: never the caller's
    attackers = {**SPEC, "component": {"image": "evil/image:1"}}
    assert (
        idempotency.claim(stored(name, binding.annotation, attackers), binding, SPEC, LABELS)
        is idempotency.Claim.NOT_OURS
    )
    relabelled = {**LABELS, documents.COMPONENT: "other"}
    assert (
        idempotency.claim(stored(name, binding.annotation, SPEC, relabelled), binding, SPEC, LABELS)
        is idempotency.Claim.NOT_OURS
    )
    # defaults the API server filled in are the request's own
    defaulted = {**SPEC, "retries": 1, "maxRuns": 100, "cancel": False}
    assert (
        idempotency.claim(stored(name, binding.annotation, defaulted), binding, SPEC, LABELS) is idempotency.Claim.OURS
    )


def test_the_signing_key_comes_from_its_file_without_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"  0123456789abcdef0123\n")
    assert idempotency.signing_key(path) == b"0123456789abcdef0123"


@pytest.mark.parametrize(("content", "detail"), [(b"short\n", "holds 5 bytes"), (None, "cannot read")])
def test_a_signing_key_too_short_or_unreadable_stops_the_api_naming_the_file(
    tmp_path: Path, content: bytes | None, detail: str
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=detail) as raised:
        idempotency.signing_key(path)
    assert str(path) in str(raised.value) and "SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE" in str(raised.value)


def test_without_a_key_file_each_process_draws_its_own_key_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="schedexec.api"):
        one, two = idempotency.signing_key(None), idempotency.signing_key(None)
    assert one != two and len(one) == 32
    assert "retry sent after the API restarts" in caplog.text


# --- a second user plants the object before the owner's POST --------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "idempotency-key"
    path.write_bytes(KEY)
    return path


@pytest.fixture
def settings(key_file: Path) -> ApiSettings:
    return SETTINGS.model_copy(update={"idempotency_key_file": key_file})


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    kube.user("alice-token", "alice")
    for verb in ("create", "get"):
        kube.grant("alice", verb, NS)
    return kube


@pytest.fixture
def http(kube: FakeKube, settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, kube, ExecutionCache(kube)), headers=TOKEN) as client:
        yield client


def plant(kube: FakeKube, name: str, annotation: str, spec: dict[str, Any] | None = None) -> str:
    """Bob's execution under `name` with `annotation`: the uid it got."""
    body = {
        "apiVersion": "schedexec.io/v1alpha1",
        "kind": "ScheduledExecution",
        "metadata": {"name": name, "labels": LABELS, "annotations": {IDEMPOTENCY: annotation}},
        "spec": spec or {"component": {"image": "evil/image:1"}, "method": "countdown", "args": {"forged": True}},
    }
    created = asyncio.run(kube.create_execution(NS, body))
    assert created is not None
    return str(created["metadata"]["uid"])


def post(http: TestClient, key: str) -> Any:
    return http.post(
        "/v2/executions", json=execution(args={"left": 1}), params={"namespace": NS}, headers={"Idempotency-Key": key}
    )


ALICES = {
    "component": {"image": "reg/test:dev"},
    "method": "countdown",
    "args": {"left": 1},
    "timeoutSeconds": 600,
    "runTimeoutSeconds": 300,
    "ttlSecondsAfterFinished": 3600,
}
"""The spec alice's request (`post`) creates, as the API sends it."""


def test_an_object_planted_under_the_old_schemes_name_and_annotation_is_never_the_owners(
    http: TestClient, kube: FakeKube
) -> None:
    name, annotation = old_scheme(Caller("alice", "uid-alice", "{}"), "order-17", ALICES)
    planted = plant(kube, name, annotation)
    accepted = post(http, "order-17")
    assert accepted.status_code == 202, accepted.text
    uid = accepted.json()["data"]["id"]
    assert uid != planted
    mine = next(body for body in kube.executions.values() if body["metadata"]["uid"] == uid)
    assert mine["spec"]["args"] == {"left": 1} and mine["metadata"]["name"] != name
    again = post(http, "order-17")
    assert again.status_code == 202 and again.json()["data"]["id"] == uid, "the retry finds the owner's"


def test_an_object_planted_under_the_exact_name_with_a_copied_annotation_is_skipped_not_answered(
    http: TestClient, kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    binding = idempotency.bind(KEY, Caller("alice", "uid-alice", "{}"), "order-17", ALICES)
    planted = plant(kube, binding.names[0], binding.annotation)  # the name leaked, the annotation copied
    accepted = post(http, "order-17")
    assert accepted.status_code == 202, accepted.text
    uid = accepted.json()["data"]["id"]
    assert uid != planted and accepted.json()["meta"]["name"] == binding.names[1]
    assert post(http, "order-17").json()["data"]["id"] == uid
    assert "was not created for it" in caplog.text


def test_when_every_name_of_a_key_is_planted_the_owner_gets_a_clear_409(http: TestClient, kube: FakeKube) -> None:
    binding = idempotency.bind(KEY, Caller("alice", "uid-alice", "{}"), "order-17", ALICES)
    for name in binding.names:
        plant(kube, name, binding.annotation)
    refused = post(http, "order-17")
    assert refused.status_code == 409, refused.text
    assert "were not created by this API for you" in refused.json()["errors"][0]["detail"]


def test_the_key_used_for_another_request_is_still_409_saying_so(http: TestClient, kube: FakeKube) -> None:
    assert post(http, "order-17").status_code == 202
    other = http.post(
        "/v2/executions",
        json=execution(args={"left": 2}),
        params={"namespace": NS},
        headers={"Idempotency-Key": "order-17"},
    )
    assert other.status_code == 409 and "used for another request" in other.json()["errors"][0]["detail"]


def test_a_retry_after_the_execution_was_cancelled_is_still_that_execution(http: TestClient, kube: FakeKube) -> None:
    """`spec.cancel` may change after creation: a retry finds the cancelled execution, it creates no other."""
    first = post(http, "order-17")
    assert first.status_code == 202
    (stored,) = kube.executions.values()
    stored["spec"]["cancel"] = True  # kubectl patch sx NAME --type merge -p '{"spec": {"cancel": true}}'
    again = post(http, "order-17")
    assert again.status_code == 202 and again.json()["data"]["id"] == first.json()["data"]["id"]
    assert len(kube.executions) == 1


def test_a_retry_after_a_restart_with_the_same_key_file_is_the_same_execution(
    kube: FakeKube, settings: ApiSettings
) -> None:
    uids = []
    for _ in range(2):  # two processes, one after the other
        with TestClient(create_app(settings, kube, ExecutionCache(kube)), headers=TOKEN) as http:
            uids.append(post(http, "order-17").json()["data"]["id"])
    assert uids[0] == uids[1]
