"""schedexec's only door to the Kubernetes API (through pykube-ng).

Kopf watches; everything the operator *does* goes through `Cluster`: create
and delete a run's Job, list its pods (when the watch cache may lag), read a
stuck pod's FailedMount events, write an execution's status, delete an
expired execution; `ApiClient` adds what the REST sidecar needs.
pykube-ng is small and synchronous; the controller calls
it from worker threads. Errors are translated into three outcomes the
controller cares about: done, `Conflict` (someone else changed the object:
reconcile again), or an exception (retry with backoff).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Self

import pykube
import requests

from schedexec import models

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


class Cluster:
    def __init__(self, api: pykube.HTTPClient) -> None:
        self.api = api

    @classmethod
    def from_environment(cls) -> Self:
        """In-cluster service account, else $KUBECONFIG or ~/.kube/config."""
        return cls(pykube.HTTPClient(pykube.KubeConfig.from_env()))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        response = self.api.get(version=JOBS, namespace=namespace, url=f"jobs/{name}")
        if response.status_code == 404:
            return None
        self.api.raise_for_status(response)
        return response.json()  # type: ignore[no-any-return]

    def create_job(self, manifest: dict[str, Any]) -> None:
        """Create a run's Job; one of that name owned by the same execution is the same run."""
        meta = manifest["metadata"]
        response = self.api.post(version=JOBS, namespace=meta["namespace"], url="jobs", data=json.dumps(manifest))
        if response.status_code != 409:
            self.api.raise_for_status(response)
            return
        existing = self.get_job(meta["namespace"], meta["name"])
        owner = meta["ownerReferences"][0]["uid"]
        if existing is not None and owner not in owner_uids(existing):
            raise JobNameTaken(f"Job {meta['namespace']}/{meta['name']} exists and is not owned by this execution")

    def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a run's Job (and, through the garbage collector, its pod); only Job `uid` if given."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        body = json.dumps(options)
        response = self.api.delete(version=JOBS, namespace=namespace, url=f"jobs/{name}", data=body)
        if response.status_code not in (404, 409):
            self.api.raise_for_status(response)

    def run_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self._list(namespace, "pods", {"labelSelector": f"batch.kubernetes.io/job-name={job}"})

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
        The status subresource ignores everything in the body but the status.
        """
        meta = execution.metadata
        body = {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": meta.name, "namespace": meta.namespace, "resourceVersion": meta.resource_version},
            "spec": execution.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
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
        response = self.api.get(version=models.API_VERSION, namespace=namespace, url=f"{models.PLURAL}/{name}")
        if response.status_code == 404:
            return None
        self.api.raise_for_status(response)
        return response.json()  # type: ignore[no-any-return]

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


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class ApiClient(Cluster):
    """What the REST sidecar needs on top: create and watch executions, review tokens and access."""

    def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created execution, or None if one of that name exists already."""
        response = self.api.post(
            version=models.API_VERSION, namespace=namespace, url=models.PLURAL, data=json.dumps(body)
        )
        if response.status_code == 409:
            return None
        self.api.raise_for_status(response)
        return response.json()  # type: ignore[no-any-return]

    def list_executions(self) -> tuple[list[dict[str, Any]], str]:
        """All executions (cluster-wide) and the list's resourceVersion."""
        response = self.api.get(version=models.API_VERSION, url=models.PLURAL)
        self.api.raise_for_status(response)
        listing = response.json()
        return listing.get("items", []), listing["metadata"]["resourceVersion"]

    def watch_executions(self, since: str, timeout_seconds: int = 300) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `since`; raises WatchExpired when it is too old."""
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

    def review_token(self, token: str) -> dict[str, Any] | None:
        """The user info (username, uid, groups, extra) if the API server accepts the token, else None."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        response = self.api.post(version="authentication.k8s.io/v1", url="tokenreviews", data=json.dumps(review))
        self.api.raise_for_status(response)
        status = response.json().get("status", {})
        if not status.get("authenticated"):
            return None
        return status.get("user", {})  # type: ignore[no-any-return]

    def may(self, user: dict[str, Any], access: dict[str, str]) -> bool:
        """SubjectAccessReview: may `user` (as reviewed) do what `access` (resourceAttributes) says?"""
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


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without metadata.managedFields: server-side-apply bookkeeping, often a third of an object,
    never read by schedexec; dropped from everything it keeps in memory."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def owner_uids(body: Mapping[str, Any]) -> set[str]:
    """UIDs of the ScheduledExecutions owning `body`."""
    return {
        owner.get("uid", "")
        for owner in body.get("metadata", {}).get("ownerReferences") or []
        if owner.get("kind") == models.KIND and owner.get("apiVersion") == models.API_VERSION
    }


class Leases:
    """A coordination.k8s.io Lease as a leader lock among operator replicas."""

    def __init__(self, api: pykube.HTTPClient, namespace: str, name: str, identity: str) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity

    def try_acquire(self, duration_seconds: int) -> bool:
        """Take or renew the lease if it is free, expired or ours; True if we hold it afterwards."""
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        response = self.api.get(version="coordination.k8s.io/v1", namespace=self.namespace, url=f"leases/{self.name}")
        if response.status_code == 404:
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": duration_seconds,
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            }
            created = self.api.post(
                version="coordination.k8s.io/v1", namespace=self.namespace, url="leases", data=json.dumps(lease)
            )
            return bool(created.status_code in (200, 201))
        self.api.raise_for_status(response)
        lease = response.json()
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity")
        renewed = spec.get("renewTime")
        expired = renewed is None or (
            now - datetime.fromisoformat(renewed.replace("Z", "+00:00"))
        ).total_seconds() > spec.get("leaseDurationSeconds", duration_seconds)
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = spec.get("leaseTransitions", 0) + 1
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=duration_seconds, renewTime=stamp)
        lease["spec"] = spec
        updated = self.api.put(
            version="coordination.k8s.io/v1",
            namespace=self.namespace,
            url=f"leases/{self.name}",
            data=json.dumps(lease),
        )
        return bool(updated.status_code == 200)
