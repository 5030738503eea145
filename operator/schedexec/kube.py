"""schedexec's doors to the Kubernetes API.

The operator's calls (`Api`, and `Cluster` on top of it) run on the event
loop through Kopf's aiohttp client, with the credentials of Kopf's login
(the operator's `Vault`, which the watch streams share): one connection
pool, no thread per call, and a token that is renewed when the API server
answers 401. They were pykube-ng calls in a thread pool: requests' per-call
set-up and the hand-offs between threads made the operator's CPU per
execution 16.9 ms against 11.8 ms now (quick throughput bench, same machine,
issue 17).
`Cluster` is everything the operator *does*: create and delete a run's Job,
list its pods (when the watch cache may lag), read a stuck pod's FailedMount
events or a run's log, keep a large result, write an execution's status,
post an Event, delete an expired execution. This reaches into Kopf's
internal client (the watch streams of watches.py use it too, for their
requests only): pyproject.toml pins Kopf's minor version and
tests/unit/test_kube.py breaks if its shape moves.

The REST sidecar is synchronous and has a narrower client of its own
(`schedexec.api.kubeclient`) through pykube-ng; it shares `connect` and
`get_object` from here.

Errors come out as what the controller cares about: done, `Conflict` or
`Gone` (reconcile again on a fresh read), a permanent refusal of a Job
(`PERMANENT`: the execution fails), or an exception in `TRANSIENT` (retry
with backoff).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
import pykube
import requests
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import auth, errors
from kopf._cogs.structs import credentials

from schedexec import models
from schedexec.objects import owner_uids
from schedexec_runner import bounds

JOBS = "batch/v1"
Vault = credentials.Vault
"""The credentials of Kopf's login: filled by Kopf, read by every call here."""
APIError = errors.APIError
"""An error status from the API server (its `status`, and the API server's `message`)."""
TRANSIENT = (
    aiohttp.ClientError,
    TimeoutError,
    APIError,
    requests.RequestException,
    pykube.exceptions.HTTPError,
)
"""Errors worth retrying: the network, or an API answer other than the ones handled here (of either client)."""


def transient(exc: BaseException) -> bool:
    """Whether a failure may heal by itself, so retrying the same request is right: the network, a timeout,
    or the API server overloaded, restarting, throttling or (during an upgrade or a token renewal) refusing
    for a moment (429, 5xx, 401, 403). Anything else (a 4xx refusal of what was sent, an exception of the
    operator's own code) fails the same way again."""
    if isinstance(exc, APIError):
        return exc.status in (401, 403, 429) or exc.status >= 500
    if isinstance(exc, pykube.exceptions.HTTPError):
        return exc.code in (401, 403, 429) or exc.code >= 500
    # kopf.LoginError: the credentials ran out for a moment (a token being renewed); a JSONDecodeError: an
    # answer cut short or garbled on the way (a proxy), never one the API server meant
    transport = (aiohttp.ClientError, TimeoutError, requests.RequestException, ConnectionError, kopf.LoginError)
    return isinstance(exc, transport) or type(exc) is json.JSONDecodeError


REQUEST_TIMEOUT_SECONDS = 60.0
"""Longest wait for one answer (a run's log of a large result included)."""

log = logging.getLogger("schedexec")
quiet = logging.getLogger("schedexec.kube")
"""Kopf's client logs each failed attempt at ERROR; those failures are the caller's to report."""
quiet.setLevel(logging.CRITICAL)


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on an update)."""


class Gone(Exception):
    """The object no longer exists (HTTP 404 on an update)."""


class JobNameTaken(Exception):
    """A Job with a run's name exists but belongs to something else."""


class JobRejected(Exception):
    """The API server refused a run's Job for good (a 4xx other than 404, 409 and 429: invalid, forbidden,
    over a ResourceQuota): retrying the same Job cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


PERMANENT = (JobNameTaken, JobRejected)
"""Errors of a Job creation that end the execution instead of being retried."""


def connect() -> pykube.HTTPClient:
    """In-cluster service account, else $KUBECONFIG or ~/.kube/config (the REST API's client)."""
    return pykube.HTTPClient(pykube.KubeConfig.from_env())


def get_object(api: pykube.HTTPClient, version: str, url: str, namespace: str) -> dict[str, Any] | None:
    """The object at `url` in `namespace`, or None if it does not exist."""
    response = api.get(version=version, namespace=namespace, url=url)
    if response.status_code == 404:
        return None
    api.raise_for_status(response)
    return response.json()  # type: ignore[no-any-return]


def path(version: str, namespace: str, resource: str) -> str:
    """The URL path of `resource` (e.g. "jobs/NAME/status") of API `version` in `namespace`."""
    root = "/api/v1" if version == "v1" else f"/apis/{version}"
    return f"{root}/namespaces/{namespace}/{resource}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    """The parsed JSON (text for `text=True`), or the API server's Status (or its text) for a tolerated error."""


class Api:
    """HTTP calls to the API server on the event loop, authenticated from the operator's vault."""

    def __init__(self, settings: kopf.OperatorSettings, vault: credentials.Vault) -> None:
        self.settings, self.vault = settings, vault
        self.timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS, sock_connect=10.0)

    async def call(
        self,
        method: str,
        url: str,
        payload: object | None = None,
        params: Mapping[str, str] | None = None,
        tolerate: Collection[int] = (),
        text: bool = False,
    ) -> Answer:
        """One request, no retries (the controller backs off); an error status in `tolerate` is answered,
        any other raises (errors.APIError, or the network's error). The answer is decoded with
        `bounds.loads` (an object nested as deep as the API server allows is read, never a RecursionError);
        `text=True` decodes bytes that are not UTF-8 as U+FFFD (a pod's log may hold anything)."""
        try:
            response = await self.open(method, url, payload, params, self.timeout)
        except errors.APIError as exc:
            if exc.status in tolerate:
                return Answer(exc.status, exc.args[-1] if exc.args else None)  # a Status, or its text
            raise
        async with response:
            raw = await response.read()
        return Answer(response.status, raw.decode("utf-8", errors="replace") if text else bounds.loads(raw))

    async def open(
        self,
        method: str,
        url: str,
        payload: object | None = None,
        params: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """The response of one request, its body unread (a watch streams it); raises on an error status."""
        auth.vault_var.set(self.vault)  # this task's context: waits until Kopf's login has filled the vault
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        return await kopf_api.request(
            method,
            url,
            payload=payload,
            settings=self.settings,
            timeout=timeout or self.timeout,
            backoffs=(),
            logger=quiet,
        )


class Cluster:
    """What the operator does to the cluster."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        answer = await self.api.call("get", path(JOBS, namespace, f"jobs/{name}"), tolerate=(404,))
        return None if answer.status == 404 else answer.body

    async def create_job(self, manifest: dict[str, Any]) -> bool:
        """Create a run's Job; one of that name owned by the same execution is the same run (False: it was
        there already, created before a crash or a leader change)."""
        meta = manifest["metadata"]
        try:
            answer = await self.api.call("post", path(JOBS, meta["namespace"], "jobs"), manifest, tolerate=(409,))
        except errors.APIClientError as exc:
            if exc.status in (401, 404, 429):  # not logged in yet, no namespace yet, throttled: try again
                raise
            raise JobRejected(exc.status, exc.message or str(exc)) from exc
        if answer.status != 409:
            return True
        existing = await self.get_job(meta["namespace"], meta["name"])
        owner = meta["ownerReferences"][0]["uid"]
        if existing is not None and owner not in owner_uids(existing):
            raise JobNameTaken(f"Job {meta['namespace']}/{meta['name']} exists and is not owned by this execution")
        return False

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a run's Job (and, through the garbage collector, its pod); only Job `uid` if given."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        await self.api.call("delete", path(JOBS, namespace, f"jobs/{name}"), options, tolerate=(404, 409))

    async def run_pods(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """The pods of the Job `job_uid` (by the controller's uid label: not those of another Job of its name)."""
        return await self._list(namespace, "pods", {"labelSelector": f"batch.kubernetes.io/controller-uid={job_uid}"})

    async def pod_log(
        self, namespace: str, pod: str, container: str, limit_bytes: int, tail_lines: int | None = None
    ) -> str | None:
        """The log of `container` in `pod` (None if the pod is gone): its last `tail_lines` lines if given, at
        most `limit_bytes` of them; bytes that are not UTF-8 read as U+FFFD."""
        params = {"container": container, "limitBytes": str(limit_bytes)}
        if tail_lines is not None:
            params["tailLines"] = str(tail_lines)
        url = path("v1", namespace, f"pods/{pod}/log")
        answer = await self.api.call("get", url, params=params, tolerate=(404,), text=True)
        return None if answer.status == 404 else str(answer.body)

    async def create_config_map(self, manifest: dict[str, Any]) -> None:
        """Create a ConfigMap; one of that name that exists already (created before a crash) is kept."""
        await self.api.call(
            "post", path("v1", manifest["metadata"]["namespace"], "configmaps"), manifest, tolerate=(409,)
        )

    async def pod_events(self, namespace: str, pod_uid: str, reason: str) -> list[dict[str, Any]]:
        """The events with `reason` about the pod `pod_uid` (e.g. the kubelet's FailedMount)."""
        return await self._list(namespace, "events", {"fieldSelector": f"involvedObject.uid={pod_uid},reason={reason}"})

    async def _list(self, namespace: str, resource: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The items of one core/v1 list call in `namespace`."""
        answer = await self.api.call("get", path("v1", namespace, resource), params=params)
        return answer.body.get("items") or []

    async def write_status(self, execution: models.ScheduledExecution, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole status, guarded by resourceVersion; returns the new object.

        A PUT, not a merge patch: a merge patch would keep keys of nested objects
        (nextArgs, result, partialResult) that the new status no longer has.
        The status subresource takes nothing but the status from the body (the stored spec is kept), so
        no spec is sent: only the execution's metadata is read.
        """
        meta = execution.metadata
        body = {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": meta.name, "namespace": meta.namespace, "resourceVersion": meta.resource_version},
            "status": status,
        }
        url = path(models.API_VERSION, meta.namespace, f"{models.PLURAL}/{meta.name}/status")
        answer = await self.api.call("put", url, body, tolerate=(404, 409))
        if answer.status == 409:
            raise Conflict(execution.key)
        if answer.status == 404:
            raise Gone(execution.key)
        return answer.body  # type: ignore[no-any-return]

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        url = path(models.API_VERSION, namespace, f"{models.PLURAL}/{name}")
        answer = await self.api.call("get", url, tolerate=(404,))
        return None if answer.status == 404 else answer.body

    async def post_event(self, execution: models.ScheduledExecution, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the execution, so `kubectl describe sx` tells its story."""
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        meta = execution.metadata
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.name}.", "namespace": meta.namespace},
            "involvedObject": {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "name": meta.name,
                "namespace": meta.namespace,
                "uid": meta.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "schedexec-operator"},
            "reportingComponent": "schedexec.io/operator",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.api.call("post", path("v1", meta.namespace, "events"), event)
        except TRANSIENT as exc:  # events are best effort: never fail a reconcile for one
            log.warning("cannot post event %s on %s: %s", reason, execution.key, exc)

    async def delete_execution(self, execution: models.ScheduledExecution) -> None:
        meta = execution.metadata
        options = {"preconditions": {"uid": meta.uid}, "propagationPolicy": "Background"}
        url = path(models.API_VERSION, meta.namespace, f"{models.PLURAL}/{meta.name}")
        await self.api.call("delete", url, options, tolerate=(404, 409))
