"""KubeClient, the REST API's `Client` on kube.Api: what it asks the API server and how it reads the answers.

The API server is a stand-in for kube.Api's `call` that records each request and gives scripted answers
(an error status only if the caller tolerates it, as kube.Api raises for any other). The list/watch behind
`follow_executions` is tested in test_api_cache.py and test_watches.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, cast

import pytest

from schedexec.api.kubeclient import ACCESS_REVIEWS, TOKEN_REVIEWS, KubeClient
from schedexec.kube import Answer, Api

EXECUTIONS = "/apis/schedexec.io/v1alpha1/namespaces/ns/scheduledexecutions"


class Recording:
    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str, Any]] = []

    async def call(
        self, method: str, url: str, payload: object = None, tolerate: Collection[int] = (), **_: Any
    ) -> Answer:
        self.asked.append((method, url, payload))
        answer = self.answers.pop(0)
        assert answer.status < 400 or answer.status in tolerate, "kube.Api raises for this status"
        return answer


def client(*answers: Answer) -> tuple[KubeClient, Recording]:
    api = Recording(*answers)
    return KubeClient(cast(Api, api)), api


def test_creating_an_execution_answers_it_or_none_when_its_name_is_taken() -> None:
    created = {"metadata": {"name": "x", "uid": "u"}}
    kube, api = client(Answer(201, created), Answer(409, {"kind": "Status", "reason": "AlreadyExists"}))
    assert asyncio.run(kube.create_execution("ns", {"metadata": {"name": "x"}})) == created
    assert asyncio.run(kube.create_execution("ns", {"metadata": {"name": "x"}})) is None
    assert [(method, url) for method, url, _ in api.asked] == [("post", EXECUTIONS)] * 2


def test_what_does_not_exist_is_none() -> None:
    gone = Answer(404, {"kind": "Status", "reason": "NotFound"})
    kube, api = client(gone, gone, Answer(200, {"data": {}}))
    assert asyncio.run(kube.get_execution("ns", "x")) is None
    assert asyncio.run(kube.get_config_map("ns", "cm")) is None
    assert asyncio.run(kube.get_config_map("ns", "cm")) == {"data": {}}
    urls = [url for _, url, _ in api.asked]
    assert urls == [f"{EXECUTIONS}/x", "/api/v1/namespaces/ns/configmaps/cm", "/api/v1/namespaces/ns/configmaps/cm"]


USER = {"username": "alice", "uid": "u-1", "groups": ["g"], "extra": {"k": ["v"]}}


@pytest.mark.parametrize(
    ("status", "accepted"),
    [
        ({"authenticated": True, "audiences": ["schedexec"], "user": USER}, True),
        ({"authenticated": True, "user": USER}, False),  # an authenticator that ignores audiences said yes
        ({"authenticated": True, "audiences": ["other"], "user": USER}, False),
        ({"authenticated": False, "error": "expired"}, False),
        ({}, False),
    ],
    ids=["accepted", "no-audiences", "other-audience", "refused", "no-status"],
)
def test_a_token_is_accepted_only_if_reviewed_for_one_of_the_apis_audiences(
    status: dict[str, Any], accepted: bool
) -> None:
    kube, api = client(Answer(201, {"status": status}))
    assert asyncio.run(kube.review_token("t0ken", ["schedexec", "x"])) == (USER if accepted else None)
    ((method, url, review),) = api.asked
    assert (method, url) == ("post", TOKEN_REVIEWS)
    assert review["kind"] == "TokenReview" and review["spec"] == {"token": "t0ken", "audiences": ["schedexec", "x"]}


@pytest.mark.parametrize("allowed", [True, False])
def test_an_access_review_asks_for_the_reviewed_user_and_answers_allowed(allowed: bool) -> None:
    kube, api = client(Answer(201, {"status": {"allowed": allowed}}))
    access = {"verb": "get", "resource": "scheduledexecutions", "namespace": "ns"}
    assert asyncio.run(kube.may(USER, access)) is allowed
    ((method, url, review),) = api.asked
    assert (method, url) == ("post", ACCESS_REVIEWS)
    assert review["kind"] == "SubjectAccessReview"
    assert review["spec"] == {
        "user": "alice",
        "uid": "u-1",
        "groups": ["g"],
        "extra": {"k": ["v"]},
        "resourceAttributes": access,
    }
