"""Poison request bodies (issue 24): JSON nested past the bounds, lone surrogates, a number the API server
cannot store, a generated name taken.

Each used to answer 500 or 503 (or a 400 that said nothing); each now answers a 4xx that names the value and
the limit, or a 503 that says to retry, and creates nothing.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import Collection, Iterator
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from schedexec.api import jsonbody, kubeclient, submit
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec.kube import Answer, Api
from schedexec_runner import bounds
from tests.unit.api_fake import FakeKube
from tests.unit.test_api_app import ELASTIC, NS, SETTINGS, TOKEN

GENERIC = '{"data": {"type": "execution", "attributes": {"component": "test", "method": "countdown", "args": %s}}}'
COMPONENT = '{"data": {"type": "verify-credential", "attributes": {"fields": %s}}}'
ENDPOINTS = {"/v2/executions": ("args", GENERIC), f"{ELASTIC}/verify-credential": ("fields", COMPONENT)}


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    kube.user("alice-token", "alice")
    kube.grant("alice", "create", NS)
    kube.grant("alice", "create", NS, resource="secrets")  # verify-credential's fields are sealed in a Secret
    return kube


@pytest.fixture
def http(kube: FakeKube) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, kube, ExecutionCache(kube)), headers=TOKEN) as client:
        yield client


def nested(levels: int) -> str:
    """The JSON text of an object `levels` deep (`{"a": 1}` is 1): built as text, as a client sends it."""
    return '{"a":' * levels + "1" + "}" * levels


def post(http: TestClient, path: str, text: str) -> Any:
    """POST JSON text as it is (a lone surrogate escape stays an escape: the text is ASCII)."""
    return http.post(
        path, content=text.encode(), params={"namespace": NS}, headers={"Content-Type": "application/json"}
    )


def refused(response: Any, status: int = 422) -> dict[str, Any]:
    """The one JSON:API error of a refusal, checked to be one."""
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert error["status"] == str(status)
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("levels", [bounds.MAX_JSON_DEPTH + 1, 300, 5000])
def test_args_nested_past_the_limit_are_422_naming_the_attribute_and_the_limit(
    http: TestClient, kube: FakeKube, path: str, levels: int
) -> None:
    attribute, template = ENDPOINTS[path]
    error = refused(post(http, path, template % nested(levels)))
    assert error["source"] == {"pointer": f"/data/attributes/{attribute}"}
    limit = f"nests deeper than {bounds.MAX_JSON_DEPTH} levels of objects and arrays"
    assert error["detail"] == f"data.attributes.{attribute} {limit}"
    assert not kube.created


@pytest.mark.parametrize("path", ENDPOINTS)
def test_args_nested_as_deep_as_the_limit_are_scheduled(http: TestClient, kube: FakeKube, path: str) -> None:
    _, template = ENDPOINTS[path]
    response = post(http, path, template % nested(bounds.MAX_JSON_DEPTH))
    assert response.status_code == 202, response.text
    assert bounds.depth(kube.delivered_args(NS, kube.created[0]["spec"])) == bounds.MAX_JSON_DEPTH


def test_a_body_deeper_than_the_api_server_would_take_is_422_not_a_recursion_error(
    http: TestClient, kube: FakeKube
) -> None:
    levels = bounds.API_SERVER_MAX_DEPTH * 3
    error = refused(post(http, "/v2/executions", GENERIC % ("[" * levels + "]" * levels)))
    assert str(bounds.API_SERVER_MAX_DEPTH) in error["detail"] and str(bounds.MAX_JSON_DEPTH) in error["detail"]
    assert not kube.created


@pytest.mark.parametrize(
    ("text", "pointer", "named"),
    [
        (GENERIC % '{"note": "x\\ud800"}', "/data/attributes/args", "data.attributes.args holds a string"),
        (GENERIC % '{"deep": [{"\\udfff": 1}]}', "/data/attributes/args", "data.attributes.args holds a key"),
        (COMPONENT % '{"cfg": "\\udc00"}', "/data/attributes/fields", "data.attributes.fields holds a string"),
        (GENERIC.replace('"test"', '"te\\ud800st"') % "{}", "/data/attributes/component", "data.attributes.component"),
        ('{"data": {"type": "x", "\\ud800": {}}}', "/data", "data holds a key"),
        ('{"data": {"type": "x\\ud800"}}', "/data/type", "data.type holds a string"),
        (
            '{"data": {"type": "x", "relationships": {"credential": {"data": {"id": "\\ud800"}}}}}',
            "/data/relationships/credential",
            "data.relationships.credential holds a string",
        ),
    ],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_422_naming_where(
    http: TestClient, kube: FakeKube, text: str, pointer: str, named: str
) -> None:
    path = "/v2/executions" if '"execution"' in text else f"{ELASTIC}/verify-credential"
    error = refused(post(http, path, text))
    assert error["source"] == {"pointer": pointer}
    assert error["detail"].startswith(named) and "not valid Unicode" in error["detail"]
    assert not kube.created


def test_refusal_points_at_the_first_value_out_of_bounds_and_escapes_the_pointer() -> None:
    document = {"data": {"attributes": {"a/b~c": json.loads(nested(65)), "ok": {"x": 1}}}}
    error = jsonbody.refusal(document)
    assert error is not None and error.pointer == "/data/attributes/a~1b~0c"
    assert jsonbody.refusal({"data": {"attributes": {"args": json.loads(nested(64))}}}) is None
    assert jsonbody.refusal([[json.loads(nested(64))]]) is None, "an array frame counts as the object's"


def test_a_generated_name_already_taken_is_tried_again(http: TestClient, kube: FakeKube) -> None:
    kube.names_taken = submit.GENERATED_NAME_TRIES - 1
    response = post(http, "/v2/executions", GENERIC % "{}")
    assert response.status_code == 202, response.text
    assert len(kube.created) == submit.GENERATED_NAME_TRIES and len(kube.executions) == 1


def test_a_generated_name_taken_every_time_is_503_with_retry_after_and_nothing_created(
    http: TestClient, kube: FakeKube
) -> None:
    kube.names_taken = submit.GENERATED_NAME_TRIES
    response = post(http, "/v2/executions", GENERIC % "{}")
    error = refused(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "api-test-" in error["detail"] and "retry" in error["detail"]
    assert not kube.executions and len(kube.created) == submit.GENERATED_NAME_TRIES


def test_what_the_api_server_refuses_to_store_is_422_with_its_reason(http: TestClient, kube: FakeKube) -> None:
    kube.refusal = "json: cannot unmarshal number 99999 into Go value of type float64"
    error = refused(post(http, "/v2/executions", GENERIC % '{"x": 99999}'))
    assert error["detail"] == f"the Kubernetes API server refused the execution: {kube.refusal}"
    assert not kube.executions


class Refusing:
    """kube.Api for an API server that answers every request with `status` and a Status whose message is
    `message` (kube.Api answers a status the caller tolerates, and raises for any other)."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message

    async def call(
        self, method: str, url: str, payload: object = None, tolerate: Collection[int] = (), **_: Any
    ) -> Any:
        assert self.status in tolerate, "a refusal is an answer, not an unreachable API server"
        return Answer(self.status, {"kind": "Status", "code": self.status, "message": self.message})


@pytest.mark.parametrize("status", [400, 422])
def test_the_client_tells_a_refusal_to_store_from_an_unreachable_api_server(status: int) -> None:
    message = "json: cannot unmarshal number " + "9" * 4000 + " into Go value of type float64"
    client = kubeclient.KubeClient(cast(Api, Refusing(status, message)))
    with pytest.raises(kubeclient.Refused) as refusal:
        asyncio.run(client.create_execution("ns", {"metadata": {"generateName": "x-"}}))
    assert str(refusal.value) == message[: kubeclient.REFUSAL_CHARS]


@pytest.mark.parametrize("member", ["1", '""', "[]"], ids=["numbers", "strings", "arrays"])
def test_checking_a_max_size_body_costs_about_what_decoding_it_costs(member: str) -> None:
    """A 1 MiB array of small members: bounds.problem kept an entry per member (32 MiB for one request);
    it now holds an iterator per level, so the check adds next to nothing to the decoded document."""
    text = GENERIC % ('{"a": [' + ",".join([member] * (1024 * 1024 // (len(member) + 1) - 100)) + "]}")
    assert len(text) <= 1024 * 1024
    tracemalloc.start()
    try:
        document = bounds.loads(text)
        _, decoding = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert jsonbody.refusal(document) is None, "within the bounds: walked to its last member"
        _, checking = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checking - decoding < 64 * 1024, f"the check took {checking - decoding} bytes beyond the document"
