"""The operator's only door to the Kubernetes API (through pykube-ng).

Kopf watches; everything the operator *does* goes through `Cluster`: create
and delete a run's Job, read its pods, write an execution's status, delete an
expired execution. pykube-ng is small and synchronous; the controller calls
it from worker threads. Errors are translated into three outcomes the
controller cares about: done, `Conflict` (someone else changed the object:
reconcile again), or an exception (retry with backoff).
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import pykube
import requests

from schedexec import models

JOBS = "batch/v1"
TRANSIENT = (requests.RequestException, pykube.exceptions.HTTPError)
"""Errors worth retrying: the network, or an API answer other than the ones handled here."""

log = logging.getLogger("schedexec")


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on an update)."""


class Cluster:
    def __init__(self, api: pykube.HTTPClient) -> None:
        self.api = api

    @classmethod
    def from_environment(cls) -> Cluster:
        """In-cluster service account, else $KUBECONFIG or ~/.kube/config."""
        return cls(pykube.HTTPClient(pykube.KubeConfig.from_env()))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        response = self.api.get(version=JOBS, namespace=namespace, url=f"jobs/{name}")
        if response.status_code == 404:
            return None
        self.api.raise_for_status(response)
        return response.json()  # type: ignore[no-any-return]

    def create_job(self, manifest: dict[str, Any]) -> None:
        """Create a run's Job; one that already exists (same deterministic name) is the same run."""
        namespace = manifest["metadata"]["namespace"]
        response = self.api.post(version=JOBS, namespace=namespace, url="jobs", data=json.dumps(manifest))
        if response.status_code != 409:
            self.api.raise_for_status(response)

    def delete_job(self, namespace: str, name: str) -> None:
        body = json.dumps({"propagationPolicy": "Background"})
        response = self.api.delete(version=JOBS, namespace=namespace, url=f"jobs/{name}", data=body)
        if response.status_code != 404:
            self.api.raise_for_status(response)

    def run_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        response = self.api.get(
            version="v1",
            namespace=namespace,
            url="pods",
            params={"labelSelector": f"batch.kubernetes.io/job-name={job}"},
        )
        self.api.raise_for_status(response)
        return response.json().get("items", [])  # type: ignore[no-any-return]

    def write_status(self, execution: models.ScheduledExecution, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the status (merge patch, guarded by resourceVersion); returns the new object."""
        patch = {"metadata": {"resourceVersion": execution.metadata.resource_version}, "status": status}
        response = self.api.patch(
            version=models.API_VERSION,
            namespace=execution.metadata.namespace,
            url=f"{models.PLURAL}/{execution.metadata.name}/status",
            headers={"Content-Type": "application/merge-patch+json"},
            data=json.dumps(patch),
        )
        if response.status_code == 409:
            raise Conflict(execution.key)
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
