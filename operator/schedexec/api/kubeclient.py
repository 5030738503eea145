"""What the REST API may ask of the Kubernetes API, and its implementation on schedexec's one door (`kube.Api`).

The API runs with a credential of its own (the chart's `<release>-api`
ServiceAccount), whose RBAC grants exactly what `Client` asks: create, get,
list and watch scheduledexecutions, get configmaps (results kept out of the
status), create secrets (only: the sealed configuration of an elastic.io
request, `sealing.seal`; it never reads one), create tokenreviews and
subjectaccessreviews. It does not share the
operator's `kube.Cluster` (which writes status, creates and deletes Jobs,
deletes executions): `Client` is everything the API may ask of Kubernetes,
`KubeClient` implements it on `kube.Api` (the same aiohttp client, on the
same event loop as the routes: no thread per call), and the unit tests' fake
implements the same protocol in memory.

Executions are untrusted input: anyone allowed to create one can give it
spec.args nested 10,000 levels deep, which the json module cannot read
(RecursionError) and which once stopped the API's cache for good. Every
answer is decoded with `bounds.loads` (by `kube.Api`), which reads any depth
the API server stores. The list and watch of executions is the operator's
own (`watches.stream`: pages, bookmarks, 410 then relist, backoff forever, a
line that cannot be read skipped), so there is one list/watch to get right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self

from schedexec import kube, models, watches

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class Refused(Exception):
    """The API server refused to create an execution as sent (400, 422): its message, cut to REFUSAL_CHARS."""


REFUSAL_CHARS = 300
"""How much of the API server's message a Refused keeps: enough to say what, never the client's whole input."""


class Client(Protocol):
    """What the REST API may ask of Kubernetes."""

    async def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created execution, or None if one of that name exists already; raises Refused if the API
        server refuses what was sent (something the models do not check: a number too large for it)."""

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The execution, or None if it does not exist."""

    async def follow_executions(self, handle: watches.Handle, listed: watches.Listed, failed: watches.Failed) -> None:
        """Every execution of the cluster, forever, as `watches.stream` tells them: each listed one and each
        watch event to `handle`, the keys of each completed list to `listed`, each backoff to `failed`.
        Ends only by raising watches.Fatal (the API may not list or watch executions)."""

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None if it does not exist."""

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create the Secret `body` (a sealed configuration, owned by its execution): True, or False if one of
        that name exists already. The API never reads, changes or deletes a Secret."""

    async def review_token(self, token: str, audiences: list[str]) -> dict[str, Any] | None:
        """The user info (username, uid, groups, extra) if the API server accepts the token for one of
        `audiences`, else None."""

    async def may(self, user: dict[str, Any], access: dict[str, str]) -> bool:
        """SubjectAccessReview: may `user` (as reviewed) do what `access` (resourceAttributes) says?"""

    async def close(self) -> None:
        """Let go of the connections (at shutdown)."""


class KubeClient:
    """`Client` on `kube.Api`."""

    def __init__(self, api: kube.Api, backoff: watches.Backoff | None = None) -> None:
        self.api = api
        self.backoff = backoff
        """The execution stream's backoff (None: the stream's default)."""

    @classmethod
    def from_environment(cls) -> Self:
        """In-cluster service account, else $KUBECONFIG or ~/.kube/config; safe before the event loop runs."""
        return cls(kube.Api.from_environment())  # kube.py of issue 26, on main

    async def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        answer = await self.api.call("post", _executions(namespace), body, tolerate=(400, 409, 422))
        if answer.status == 409:
            return None
        if answer.status in (400, 422):
            raise Refused(status_message(answer.body)[:REFUSAL_CHARS])
        return answer.body  # type: ignore[no-any-return]

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(f"{_executions(namespace)}/{name}")

    async def follow_executions(self, handle: watches.Handle, listed: watches.Listed, failed: watches.Failed) -> None:
        await watches.stream(self.api, watches.EXECUTIONS, None, handle, listed, self.backoff, failed)

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(kube.path("v1", namespace, f"configmaps/{name}"))

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        answer = await self.api.call("post", kube.path("v1", namespace, "secrets"), body, tolerate=(409,))
        return answer.status != 409

    async def review_token(self, token: str, audiences: list[str]) -> dict[str, Any] | None:
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
        status = _status(await self.api.call("post", TOKEN_REVIEWS, review))
        # an authenticator that ignores audiences may still say yes: then the answer names none of ours
        if not status.get("authenticated") or not set(status.get("audiences") or []) & set(audiences):
            return None
        user = status.get("user")
        return dict(user) if isinstance(user, Mapping) else {}

    async def may(self, user: dict[str, Any], access: dict[str, str]) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.get("username", ""),
                "uid": user.get("uid", ""),
                "groups": user.get("groups", []),
                "extra": user.get("extra", {}),
                "resourceAttributes": access,
            },
        }
        return bool(_status(await self.api.call("post", ACCESS_REVIEWS, review)).get("allowed"))

    async def close(self) -> None:
        await self.api.close()  # kube.py of issue 26, on main

    async def _get(self, url: str) -> dict[str, Any] | None:
        """The object at `url`, or None if it does not exist."""
        answer = await self.api.call("get", url, tolerate=(404,))
        return None if answer.status == 404 else answer.body


def _executions(namespace: str) -> str:
    return kube.path(models.API_VERSION, namespace, models.PLURAL)


def _status(answer: kube.Answer) -> Mapping[str, Any]:
    """The `status` of a review the API server answered."""
    status = answer.body.get("status") if isinstance(answer.body, Mapping) else None
    return status if isinstance(status, Mapping) else {}


def status_message(status: Any) -> str:
    """The message of the API server's Status answer `status` (as `kube.Answer` holds it), or its text."""
    message = status.get("message") if isinstance(status, Mapping) else status
    return message if isinstance(message, str) else str(status)
