"""A run as Kubernetes sees it: the Job the operator creates, and what it observed.

`job_manifest` builds the Job of one run (pure: execution + run index + args
→ manifest) with the restricted security context every run gets. `observe`
reads a Job and its pods back into a `RunObservation`, the only thing the
decision logic knows about the cluster. Both are pure so they are unit-tested
without a cluster.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from schedexec import models
from schedexec_runner import contract
from schedexec_runner import envelope as envelopes

MANAGED_BY = "schedexec"
EXECUTION_LABEL = "schedexec.io/execution"
RUN_LABEL = "schedexec.io/run"
CONTAINER = "run"
CREDENTIALS_VOLUME = "credentials"
MAX_JOB_NAME = 63
"""Job names become pod label values, which Kubernetes caps at 63 characters."""

MESSAGE_TAIL = 1024
"""How much of a dead pod's message or log tail an error message quotes."""


def job_name(execution: str, index: int) -> str:
    """Deterministic, so a restarted operator finds (never duplicates) a run's Job."""
    suffix = f"-r{index}"
    return _fit(execution, MAX_JOB_NAME - len(suffix)) + suffix


def _fit(name: str, limit: int) -> str:
    """`name`, or a stable hash-suffixed prefix of it when longer than `limit`."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class PodDefaults:
    """Operator-wide settings that shape every run's pod."""

    run_as_user: int = 65532
    job_ttl_seconds: int = 86400
    """Safety net only: the operator deletes a run's Job once it recorded the outcome."""


def job_manifest(
    execution: models.ScheduledExecution, index: int, args: dict[str, Any], defaults: PodDefaults
) -> dict[str, Any]:
    """The Job that performs run `index` of `execution` with `args`."""
    spec = execution.spec
    meta = execution.metadata
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        EXECUTION_LABEL: _fit(meta.name, MAX_JOB_NAME),
        RUN_LABEL: str(index),
    }
    env = {
        contract.METHOD: spec.method,
        contract.MODULE: spec.module,
        contract.FUNCTION: spec.function,
        contract.ARGS: json.dumps(args, separators=(",", ":")),
        contract.RUN_INDEX: str(index),
        contract.EXECUTION: execution.key,
    }
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.component.image,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    if spec.credentials_secret_ref is not None:
        env[contract.CREDENTIALS_DIR] = contract.DEFAULT_CREDENTIALS_DIR
        container["volumeMounts"].append(
            {"name": CREDENTIALS_VOLUME, "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True}
        )
        volumes.append({"name": CREDENTIALS_VOLUME, "secret": {"secretName": spec.credentials_secret_ref.name}})
    container["env"] = [{"name": k, "value": v} for k, v in env.items() if v is not None]
    if spec.component.command:
        container["command"] = spec.component.command
    if spec.component.resources is not None:
        container["resources"] = spec.component.resources.model_dump(exclude_none=True)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": defaults.run_as_user,
            "runAsGroup": defaults.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.component.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": ref.name} for ref in spec.component.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta.name, index),
            "namespace": meta.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": models.API_VERSION,
                    "kind": models.KIND,
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": spec.retries,
            "activeDeadlineSeconds": spec.run_timeout_seconds,
            "ttlSecondsAfterFinished": defaults.job_ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


class RunState(enum.StrEnum):
    MISSING = "Missing"
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED)


@dataclass(frozen=True)
class RunObservation:
    """What the cluster says about one run's Job."""

    state: RunState
    envelope: dict[str, Any] | None = None
    """The decoded outcome envelope, if the run reported one."""
    envelope_problem: str | None = None
    """Why the termination message is not a valid envelope, if it is not."""
    exit_code: int | None = None
    failure_reason: str | None = None
    """The Job's or pod's failure reason (BackoffLimitExceeded, DeadlineExceeded, ...)."""
    failure_message: str = ""
    """The tail of the failure message (the pod's message or log tail)."""


MISSING = RunObservation(RunState.MISSING)


def observe(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> RunObservation:
    """Read a run's Job and its pods; pure."""
    if job is None:
        return MISSING
    conditions = {c.get("type"): c for c in job.get("status", {}).get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        state = RunState.SUCCEEDED
    elif "Failed" in conditions:
        state = RunState.FAILED
    else:
        return RunObservation(RunState.ACTIVE)
    terminated = _latest_termination(pods)
    message = (terminated or {}).get("message") or ""
    exit_code = (terminated or {}).get("exitCode")
    decoded: dict[str, Any] | None = None
    problem: str | None = None
    if exit_code == contract.EXIT_REPORTED or (message and state is RunState.SUCCEEDED):
        try:
            decoded = envelopes.decode(message)
        except envelopes.EnvelopeError as exc:
            problem = str(exc)
    failed = conditions.get("Failed", {})
    reason = failed.get("reason") or (terminated or {}).get("reason")
    tail = message if decoded is None else ""
    detail = " ".join(part for part in (failed.get("message"), tail) if part)
    return RunObservation(
        state=state,
        envelope=decoded,
        envelope_problem=problem,
        exit_code=exit_code,
        failure_reason=reason,
        failure_message=detail[-MESSAGE_TAIL:],
    )


def _latest_termination(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The terminated state of the run container of the newest pod that has one."""
    newest: tuple[str, dict[str, Any]] | None = None
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") != CONTAINER or not terminated:
                continue
            stamp = terminated.get("finishedAt") or pod.get("metadata", {}).get("creationTimestamp") or ""
            if newest is None or stamp >= newest[0]:
                newest = (stamp, terminated)
    return None if newest is None else newest[1]
