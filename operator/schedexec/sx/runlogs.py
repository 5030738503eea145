"""Which Job and pod hold the log of run N of an execution, decided from documents (pure).

A run's Job is named in `status.currentRun.job` while it runs and, once the operator records it,
`status.history[].job`; otherwise (an operator that does not record it, or a run already dropped from the
bounded history) it is found by the labels the operator puts on every run's Job (manifests.RUN_LABEL) and
trusted only if its ownerReference is this very execution (uid): a name or a label is no proof, anyone
allowed to create Jobs can set them. A retried run has several pods; the newest is the one that ran last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schedexec import manifests, models

RETENTION_HINT = (
    "a finished run's Job and pods are kept for spec.runRetentionSeconds after its outcome is recorded, "
    "then deleted; `kubectl sx describe` shows what the run did"
)


class RunLogError(Exception):
    """The run has no log to show; the message says why."""


def run_index(execution: Mapping[str, Any], requested: int | None) -> int:
    """The run whose log is asked for: `requested`, else the current run, else the last one."""
    status = execution.get("status") or {}
    current = (status.get("currentRun") or {}).get("index")
    name = (execution.get("metadata") or {}).get("name", "")
    if requested is not None:
        last = max([int(current or 0), int(status.get("runs") or 0)] + [int(r["index"]) for r in _history(status)])
        if requested < 1:
            raise RunLogError("--run counts from 1")
        if requested > last:
            raise RunLogError(f"run {requested} of sx/{name} has not started (runs so far: {last})")
        return requested
    if current:
        return int(current)
    if status.get("runs"):
        return int(status["runs"])
    raise RunLogError(f"sx/{name} has not started a run yet")


def _history(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in status.get("history") or [] if isinstance(r.get("index"), int)]


def recorded_job(execution: Mapping[str, Any], index: int) -> str | None:
    """The Job name the status records for run `index`, if it does."""
    status = execution.get("status") or {}
    current = status.get("currentRun") or {}
    if current.get("index") == index and current.get("job"):
        return str(current["job"])
    for record in _history(status):
        if record["index"] == index and record.get("job"):
            return str(record["job"])
    return None


def owned_by(thing: Mapping[str, Any], execution: Mapping[str, Any]) -> bool:
    uid = (execution.get("metadata") or {}).get("uid")
    owners = (thing.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(o.get("uid") == uid and o.get("kind") == models.KIND for o in owners)


def labelled_job(execution: Mapping[str, Any], index: int, jobs: Sequence[Mapping[str, Any]]) -> str | None:
    """Among Jobs labelled as some execution's run `index`, the one this execution owns."""
    for job in jobs:
        labels = (job.get("metadata") or {}).get("labels") or {}
        if labels.get(manifests.RUN_LABEL) == str(index) and owned_by(job, execution):
            return str(job["metadata"]["name"])
    return None


def newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod that ran last (a retried run has one per attempt)."""
    if not pods:
        return None
    return max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


def container_started(pod: Mapping[str, Any]) -> bool:
    """Whether the run's container has a log yet (it is running or has ended)."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == manifests.CONTAINER:
            state = container.get("state") or {}
            return "running" in state or "terminated" in state  # the API omits the states it is not in
    return False


def gone_message(execution: Mapping[str, Any], index: int, job: str | None) -> str:
    """Why run `index` has no log to show, with how long it was to be kept when the history says
    (`history[].logsUntil`)."""
    name = (execution.get("metadata") or {}).get("name", "")
    what = f"its Job {job} has no pods left" if job else "its Job is gone"
    record = next((r for r in _history(execution.get("status") or {}) if r["index"] == index), {})
    kept = f", kept until {record['logsUntil']}" if record.get("logsUntil") else ""
    return f"the log of run {index} of sx/{name} is gone: {what}{kept} ({RETENTION_HINT})"
