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

Executions are untrusted input: anyone allowed to create one can give it
spec.args nested 10,000 levels deep, which the json module cannot read
(RecursionError) and which used to stop the cache for good. Every answer
about executions is decoded with `bounds.loads`, which reads any depth the
API server stores; a watch event that still cannot be read is logged and
skipped. The list comes in pages of LIST_PAGE, each made small by the
caller's `keep` before the next is asked, so that the whole objects of one
page at most are in memory at a time (an execution may be 1.5 MiB).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, Self

import pykube

from schedexec import kube, models
from schedexec_runner import bounds

log = logging.getLogger("schedexec.api")

LIST_PAGE = 50
"""Executions per page of the list (`limit`): at 1.5 MiB an execution, one page is at most 75 MiB of JSON."""
Keep = Callable[[dict[str, Any]], dict[str, Any] | None]
"""What of a listed execution to keep (None: nothing), applied to each as its page arrives."""


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class Refused(Exception):
    """The API server refused to create an execution as sent (400, 422): its message, cut to REFUSAL_CHARS."""


REFUSAL_CHARS = 300
"""How much of the API server's message a Refused keeps: enough to say what, never the client's whole input."""


class Client(Protocol):
    """What the REST API may ask of Kubernetes."""

    def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created execution, or None if one of that name exists already; raises Refused if the API
        server refuses what was sent (something the models do not check: a number too large for it)."""

    def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The execution, or None if it does not exist."""

    def list_executions(self, keep: Keep) -> tuple[list[dict[str, Any]], str]:
        """All executions (cluster-wide) as `keep` made them, those it kept, and the list's resourceVersion;
        raises WatchExpired when the list's continue token expired midway."""

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
        if response.status_code in (400, 422):
            raise Refused(status_message(response.content)[:REFUSAL_CHARS])
        self.api.raise_for_status(response)
        return bounds.loads(response.content)  # type: ignore[no-any-return]

    def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        response = self.api.get(version=models.API_VERSION, namespace=namespace, url=f"{models.PLURAL}/{name}")
        if response.status_code == 404:
            return None
        self.api.raise_for_status(response)
        return bounds.loads(response.content)  # type: ignore[no-any-return]

    def list_executions(self, keep: Keep) -> tuple[list[dict[str, Any]], str]:
        kept: list[dict[str, Any]] = []
        params = {"limit": str(LIST_PAGE)}
        while True:
            response = self.api.get(version=models.API_VERSION, url=models.PLURAL, params=params)
            if response.status_code == 410:  # the continue token expired: list again from the start
                raise WatchExpired(response.text[:200])
            self.api.raise_for_status(response)
            page, version, more = listed(response.content)
            kept.extend(body for body in map(keep, page) if body is not None)
            del page, response
            if not more:
                return kept, version
            params["continue"] = more

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
                event = watched(line)
                if event is None:
                    continue
                kind, body = event
                if kind == "ERROR":
                    if body.get("code") == 410:
                        raise WatchExpired(body.get("message", ""))
                    raise pykube.exceptions.HTTPError(body.get("code", 500), str(body))
                yield kind, body

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


def status_message(raw: bytes) -> str:
    """The message of the API server's Status answer `raw`, or its text if it is none."""
    try:
        status = bounds.loads(raw)
    except ValueError:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else raw.decode("utf-8", errors="replace")


def listed(raw: bytes) -> tuple[list[dict[str, Any]], str, str]:
    """(items, resourceVersion, continue token or "") of one page of a list, read at any depth."""
    listing = bounds.loads(raw)
    meta = listing.get("metadata") or {}
    return listing.get("items") or [], str(meta.get("resourceVersion", "")), str(meta.get("continue") or "")


def watched(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """(type, object) of one line of a watch, read at any depth; None, logged without its content, for a
    line that is no event."""
    try:
        event = bounds.loads(line)
    except ValueError as exc:  # not JSON, or deeper than the API server allows: nothing to act on
        log.error("an execution watch event could not be decoded (%s); skipped", type(exc).__name__)
        return None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        log.error("an execution watch event had no object; skipped")
        return None
    return str(event.get("type")), event["object"]
