"""schedexec's only door to the Kubernetes API (through pykube-ng).

Kopf watches; everything the operator *does* goes through `Cluster`: create
and delete a run's Job, list its pods (when the watch cache may lag), read a
stuck pod's FailedMount events, write an execution's status, delete an
expired execution. (The REST sidecar has a narrower client of its own,
`schedexec.api.kubeclient`, sharing `connect` and `get_object`.)
pykube-ng is small and synchronous; the controller calls
it from worker threads. Errors are translated into three outcomes the
controller cares about: done, `Conflict` (someone else changed the object:
reconcile again), or an exception (retry with backoff).
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from typing import Any, Self

import pykube
import requests

from schedexec import models
from schedexec.objects import owner_uids

JOBS = "batch/v1"
TRANSIENT = (requests.RequestException, pykube.exceptions.HTTPError)
"""Errors worth retrying: the network, or an API answer other than the ones handled here."""

log = logging.getLogger("schedexec")


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


def _refusal(response: requests.Response) -> str:
    """The API server's message in a failed response (a Status object), else the body's start."""
    try:
        return str(response.json().get("message") or response.text[:512])
    except ValueError:
        return response.text[:512]


def connect() -> pykube.HTTPClient:
    """In-cluster service account, else $KUBECONFIG or ~/.kube/config."""
    return pykube.HTTPClient(pykube.KubeConfig.from_env())


def get_object(api: pykube.HTTPClient, version: str, url: str, namespace: str) -> dict[str, Any] | None:
    """The object at `url` in `namespace`, or None if it does not exist."""
    response = api.get(version=version, namespace=namespace, url=url)
    if response.status_code == 404:
        return None
    api.raise_for_status(response)
    return response.json()  # type: ignore[no-any-return]


class Cluster:
    def __init__(self, api: pykube.HTTPClient) -> None:
        self.api = api

    @classmethod
    def from_environment(cls) -> Self:
        """In-cluster service account, else $KUBECONFIG or ~/.kube/config."""
        return cls(connect())

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_object(self.api, JOBS, f"jobs/{name}", namespace)

    def create_job(self, manifest: dict[str, Any]) -> bool:
        """Create a run's Job; one of that name owned by the same execution is the same run (False: it was
        there already, created before a crash or a leader change)."""
        meta = manifest["metadata"]
        response = self.api.post(version=JOBS, namespace=meta["namespace"], url="jobs", data=json.dumps(manifest))
        if 400 <= response.status_code < 500 and response.status_code not in (404, 409, 429):
            raise JobRejected(response.status_code, _refusal(response))
        if response.status_code != 409:
            self.api.raise_for_status(response)
            return True
        existing = self.get_job(meta["namespace"], meta["name"])
        owner = meta["ownerReferences"][0]["uid"]
        if existing is not None and owner not in owner_uids(existing):
            raise JobNameTaken(f"Job {meta['namespace']}/{meta['name']} exists and is not owned by this execution")
        return False

    def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a run's Job (and, through the garbage collector, its pod); only Job `uid` if given."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        body = json.dumps(options)
        response = self.api.delete(version=JOBS, namespace=namespace, url=f"jobs/{name}", data=body)
        if response.status_code not in (404, 409):
            self.api.raise_for_status(response)

    def run_pods(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """The pods of the Job `job_uid` (by the controller's uid label: not those of another Job of its name)."""
        return self._list(namespace, "pods", {"labelSelector": f"batch.kubernetes.io/controller-uid={job_uid}"})

    def pod_log(self, namespace: str, pod: str, container: str, limit_bytes: int) -> str | None:
        """The log of `container` in `pod`, at most `limit_bytes` of it (None if the pod is gone)."""
        params = {"container": container, "limitBytes": str(limit_bytes)}
        response = self.api.get(version="v1", namespace=namespace, url=f"pods/{pod}/log", params=params)
        if response.status_code == 404:
            return None
        self.api.raise_for_status(response)
        return response.text  # type: ignore[no-any-return]

    def create_config_map(self, manifest: dict[str, Any]) -> None:
        """Create a ConfigMap; one of that name that exists already (created before a crash) is kept."""
        meta = manifest["metadata"]
        response = self.api.post(version="v1", namespace=meta["namespace"], url="configmaps", data=json.dumps(manifest))
        if response.status_code != 409:
            self.api.raise_for_status(response)

    def pod_events(self, namespace: str, pod_uid: str, reason: str) -> list[dict[str, Any]]:
        """The events with `reason` about the pod `pod_uid` (e.g. the kubelet's FailedMount)."""
        return self._list(namespace, "events", {"fieldSelector": f"involvedObject.uid={pod_uid},reason={reason}"})

    def _list(self, namespace: str, resource: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The items of one core/v1 list call in `namespace`."""
        response = self.api.get(version="v1", namespace=namespace, url=resource, params=params)
        self.api.raise_for_status(response)
        return response.json().get("items", [])  # type: ignore[no-any-return]

    def write_status(self, execution: models.ScheduledExecution, status: dict[str, Any]) -> dict[str, Any]:
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
        response = self.api.put(
            version=models.API_VERSION,
            namespace=meta.namespace,
            url=f"{models.PLURAL}/{meta.name}/status",
            data=json.dumps(body),
        )
        if response.status_code == 409:
            raise Conflict(execution.key)
        if response.status_code == 404:
            raise Gone(execution.key)
        self.api.raise_for_status(response)
        return response.json()  # type: ignore[no-any-return]

    def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_object(self.api, models.API_VERSION, f"{models.PLURAL}/{name}", namespace)

    def post_event(self, execution: models.ScheduledExecution, type_: str, reason: str, message: str) -> None:
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
            response = self.api.post(version="v1", namespace=meta.namespace, url="events", data=json.dumps(event))
            self.api.raise_for_status(response)
        except TRANSIENT as exc:  # events are best effort: never fail a reconcile for one
            log.warning("cannot post event %s on %s: %s", reason, execution.key, exc)

    def delete_execution(self, execution: models.ScheduledExecution) -> None:
        body = json.dumps({"preconditions": {"uid": execution.metadata.uid}, "propagationPolicy": "Background"})
        response = self.api.delete(
            version=models.API_VERSION,
            namespace=execution.metadata.namespace,
            url=f"{models.PLURAL}/{execution.metadata.name}",
            data=body,
        )
        if response.status_code not in (404, 409):
            self.api.raise_for_status(response)
