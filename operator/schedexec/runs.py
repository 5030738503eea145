"""A run as the operator observed it: its Job and pods read back into a `RunObservation`.

`observe` reads a Job, its pods (and, for a pod stuck before its volumes are mounted, the pod's FailedMount
events) into a `RunObservation`, the only thing the decision logic knows about the cluster. The pod cache
keeps of each run pod exactly what `observe` reads (`slim_pod`) and reconciles only when that changes
(`pod_signature`, `job_signature`). All are pure so they are unit-tested without a cluster.

What the operator creates for a run is in manifests.py; why an active run's pod has not started, and
whether that fails the run, in starts.py. An active Job that is suspended (created so for Kueue, docs/kueue.md)
is observed as such (`RunObservation.suspended`), from its spec.suspend: the Job controller's Suspended
condition follows it only once the Job's pods are gone, and Kueue admits a Job by setting spec.suspend false.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schedexec.manifests import CONTAINER, EXECUTION_LABEL, RUN_LABEL, queue_of
from schedexec.starts import TERMINAL_POD_PHASES, PodWaiting, current_pod, pod_waiting
from schedexec_runner import contract, frame
from schedexec_runner import envelope as envelopes

MESSAGE_TAIL = 1024
"""How much of a dead pod's message or log tail an error message quotes."""


class RunState(enum.StrEnum):
    MISSING = "Missing"
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED)


JOB_DEADLINE_EXCEEDED = "DeadlineExceeded"
"""The Job controller's reason for a Job stopped at its activeDeadlineSeconds (spec.runTimeoutSeconds)."""


@dataclass(frozen=True)
class RunObservation:
    """What the cluster says about one run's Job."""

    state: RunState
    envelope: envelopes.Outcome | None = None
    """The outcome the run reported in its envelope, if it reported one."""
    envelope_problem: str | None = None
    """Why the termination message is not a valid envelope, if it is not."""
    exit_code: int | None = None
    failure_reason: str | None = None
    """The Job's or pod's failure reason (BackoffLimitExceeded, DeadlineExceeded, ...)."""
    failure_message: str = ""
    """The Job controller's failure message (BackoffLimitExceeded: "Job has reached the specified backoff
    limit", ...): written by Kubernetes, never by the component."""
    log_tail: str = ""
    """The end of what the run's container wrote (its termination message, or the kubelet's copy of its log
    tail: FallbackToLogsOnError) when that is not an outcome: component output, which may hold anything."""
    waiting: PodWaiting | None = None
    """While the Job is active: why its current pod has not started its container, if it has not."""
    logged: LoggedOutcome | None = None
    """Where the run wrote an outcome too large for its termination message (its pod's log)."""
    attempts: int | None = None
    """How many pods of the finished Job ran to an end (the Job controller's count): more than one means
    the run index was retried after its pod died (spec.retries)."""
    suspended: bool = False
    """While the Job is active: whether it is suspended (spec.suspend: created so for Kueue, or suspended again
    by Kueue's preemption): no pod of it runs, and the Job controller's activeDeadlineSeconds does not count."""
    queue: str | None = None
    """The Kueue LocalQueue the Job is queued in (its kueue.x-k8s.io/queue-name label), if any."""


@dataclass(frozen=True)
class LoggedOutcome:
    """A pointer to a framed outcome in a pod's log (schedexec_runner.frame)."""

    pod: str
    pointer: dict[str, Any]


MISSING = RunObservation(RunState.MISSING)


def observe(
    job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], events: Iterable[Mapping[str, Any]] = ()
) -> RunObservation:
    """Read a run's Job, its pods and (optionally) the FailedMount events of its current pod; pure."""
    if job is None:
        return MISSING
    job_status = job.get("status") or {}
    conditions = {c.get("type"): c for c in job_status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        state = RunState.SUCCEEDED
    elif "Failed" in conditions:
        state = RunState.FAILED
    else:
        if (job.get("spec") or {}).get("suspend") is True:
            return RunObservation(RunState.ACTIVE, suspended=True, queue=queue_of(job))
        return RunObservation(RunState.ACTIVE, waiting=pod_waiting(current_pod(pods), events), queue=queue_of(job))
    pod, terminated = _latest_termination(pods) or (None, None)
    message = (terminated or {}).get("message") or ""
    exit_code = (terminated or {}).get("exitCode")
    decoded: envelopes.Outcome | None = None
    problem: str | None = None
    logged: LoggedOutcome | None = None
    if exit_code == contract.EXIT_REPORTED or (message and state is RunState.SUCCEEDED):
        try:
            if (pointer := frame.pointer(message)) is not None and pod is not None:
                logged = LoggedOutcome(pod, pointer)
            else:
                decoded = envelopes.read(message)
        except (envelopes.EnvelopeError, frame.FrameError) as exc:
            problem = str(exc)
    failed = conditions.get("Failed", {})
    reason = failed.get("reason") or (terminated or {}).get("reason")
    tail = message if decoded is None and logged is None else ""
    return RunObservation(
        state=state,
        envelope=decoded,
        envelope_problem=problem,
        exit_code=exit_code,
        failure_reason=reason,
        attempts=int(job_status.get("succeeded") or 0) + int(job_status.get("failed") or 0) or None,
        failure_message=(failed.get("message") or "")[-MESSAGE_TAIL:],
        log_tail=tail[-MESSAGE_TAIL:],
        logged=logged,
    )


def _latest_termination(pods: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The name of the newest pod whose run container terminated, and that terminated state."""
    newest: tuple[str, str, dict[str, Any]] | None = None
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") != CONTAINER or not terminated:
                continue
            stamp = terminated.get("finishedAt") or pod.get("metadata", {}).get("creationTimestamp") or ""
            if newest is None or stamp >= newest[0]:
                newest = (stamp, pod.get("metadata", {}).get("name", ""), terminated)
    return None if newest is None else (newest[1], newest[2])


# --- the pod cache ----------------------------------------------------------------------------------


JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
"""The Job controller's labels naming a pod's Job (the older one still set for compatibility)."""


def pod_job(pod: Mapping[str, Any]) -> str | None:
    """The name of the Job that owns `pod`, if a Job does."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "Job" and owner.get("apiVersion") == "batch/v1":
            return owner.get("name")  # type: ignore[no-any-return]
    labels = meta.get("labels") or {}
    return next((labels[label] for label in JOB_NAME_LABELS if labels.get(label)), None)


def pod_job_uid(pod: Mapping[str, Any]) -> str | None:
    """The uid of the Job that owns `pod` (None if unknown)."""
    for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "Job" and owner.get("apiVersion") == "batch/v1":
            return owner.get("uid")  # type: ignore[no-any-return]
    return None


KEPT_POD_LABELS = (EXECUTION_LABEL, RUN_LABEL, *JOB_NAME_LABELS)
"""What `observe` and `pod_job` read of a run pod's labels (a pod deleted while the watch was away is handed
on as the store kept it: Controller.relisted)."""


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a run's pod: what `observe` and `pod_signature` read, nothing else."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    kept_meta = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")
    return {
        "metadata": {
            **{key: meta[key] for key in kept_meta if key in meta},
            "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k in KEPT_POD_LABELS},
            "ownerReferences": meta.get("ownerReferences") or [],
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [{"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or []],
        },
        "status": {
            key: status[key]
            for key in ("phase", "reason", "message", "conditions", "containerStatuses")
            if key in status
        },
    }


def pod_signature(pod: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What of a pod a reconcile may react to; a pod event that leaves it unchanged needs no reconcile."""
    if pod is None:
        return ()
    status = pod.get("status") or {}
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in status.get("conditions") or []
    )
    containers = tuple(
        (c.get("name"), json.dumps(c.get("state") or {}, sort_keys=True)) for c in status.get("containerStatuses") or []
    )
    meta = pod.get("metadata") or {}
    return (
        status.get("phase"),
        (pod.get("spec") or {}).get("nodeName"),
        bool(meta.get("deletionTimestamp")),
        conditions,
        containers,
    )


def job_signature(job: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a decision reads of a run's Job: its uid, its true conditions (Complete, Failed, ...), whether it
    is being deleted and whether it is suspended (Kueue admitting it unsuspends it). A change elsewhere (its
    active or ready count) needs no reconcile."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    conditions = sorted(c.get("type", "") for c in status.get("conditions") or [] if c.get("status") == "True")
    suspended = (job.get("spec") or {}).get("suspend") is True
    return meta.get("uid"), tuple(conditions), bool(meta.get("deletionTimestamp")), suspended


def pods_account_for(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `pods` (from the watch cache) show everything a finished Job counted: every pod finished,
    at least as many as the Job's succeeded + failed; otherwise they may lag behind the Job and are listed."""
    counted = int(job.get("status", {}).get("succeeded") or 0) + int(job.get("status", {}).get("failed") or 0)
    finished = [p for p in pods if (p.get("status") or {}).get("phase") in TERMINAL_POD_PHASES]
    return bool(pods) and len(finished) == len(pods) and len(finished) >= counted
