"""The REST API's door to the Kubernetes API: read, watch and create executions, read large results,
review callers.

The API runs with a credential of its own (the chart's `<release>-api`
ServiceAccount), whose RBAC grants exactly what `Client` asks: create, get,
list and watch scheduledexecutions, get configmaps (results kept out of the
status), create tokenreviews and subjectaccessreviews. It does not share the
operator's `kube.Cluster` (which writes status, creates and deletes Jobs,
deletes executions): `Client` is everything the API may ask of Kubernetes,
`KubeClient` its pykube-ng implementation, and the unit tests' fake
implements the same protocol in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol, Self

import pykube

from schedexec import kube, models


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class Client(Protocol):
    """What the REST API may ask of Kubernetes."""

    def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created execution, or None if one of that name exists already."""

    def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The execution, or None if it does not exist."""

    def list_executions(self) -> tuple[list[dict[str, Any]], str]:
        """All executions (cluster-wide) and the list's resourceVersion."""

    def watch_executions(self, since: str, timeout_seconds: int = 300) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `since`; raises WatchExpired when it is too old."""

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None if it does not exist."""

    def review_token(self, token: str, audiences: list[str]) -> dict[str, Any] | None:
        """The user info (username, uid, groups, extra) if the API server accepts the token for one of
        `audiences`, else None."""

    def may(self, user: dict[str, Any], access: dict[str, str]) -> bool:
        """SubjectAccessReview: may `user` (as reviewed) do what `access` (resourceAttributes) says?"""


class KubeClient:
    """`Client` through pykube-ng (synchronous: the API calls it from worker threads)."""

    def __init__(self, api: pykube.HTTPClient) -> None:
        self.api = api

    @classmethod
    def from_environment(cls) -> Self:
        """In-cluster service account, else $KUBECONFIG or ~/.kube/config."""
        return cls(kube.connect())

    def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        response = self.api.post(
            version=models.API_VERSION, namespace=namespace, url=models.PLURAL, data=json.dumps(body)
        )
        if response.status_code == 409:
            return None
        self.api.raise_for_status(response)
        return response.json()  # type: ignore[no-any-return]

    def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return kube.get_object(self.api, models.API_VERSION, f"{models.PLURAL}/{name}", namespace)

    def list_executions(self) -> tuple[list[dict[str, Any]], str]:
        response = self.api.get(version=models.API_VERSION, url=models.PLURAL)
        self.api.raise_for_status(response)
        listing = response.json()
        return listing.get("items", []), listing["metadata"]["resourceVersion"]

    def watch_executions(self, since: str, timeout_seconds: int = 300) -> Iterator[tuple[str, dict[str, Any]]]:
        params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": str(timeout_seconds)}
        response = self.api.get(
            version=models.API_VERSION, url=models.PLURAL, params=params, stream=True, timeout=timeout_seconds + 30
        )
        self.api.raise_for_status(response)
        with response:
            for line in response.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    if event["object"].get("code") == 410:
                        raise WatchExpired(event["object"].get("message", ""))
                    raise pykube.exceptions.HTTPError(event["object"].get("code", 500), str(event["object"]))
                yield event["type"], event["object"]

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return kube.get_object(self.api, "v1", f"configmaps/{name}", namespace)

    def review_token(self, token: str, audiences: list[str]) -> dict[str, Any] | None:
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
        response = self.api.post(version="authentication.k8s.io/v1", url="tokenreviews", data=json.dumps(review))
        self.api.raise_for_status(response)
        status = response.json().get("status", {})
        # an authenticator that ignores audiences may still say yes: then the answer names none of ours
        if not status.get("authenticated") or not set(status.get("audiences") or []) & set(audiences):
            return None
        return status.get("user", {})  # type: ignore[no-any-return]

    def may(self, user: dict[str, Any], access: dict[str, str]) -> bool:
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
        response = self.api.post(version="authorization.k8s.io/v1", url="subjectaccessreviews", data=json.dumps(review))
        self.api.raise_for_status(response)
        return bool(response.json().get("status", {}).get("allowed"))
