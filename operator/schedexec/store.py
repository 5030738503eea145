"""The operator's view of the cluster: executions, their Jobs and the Jobs' pods, as the watches show them.

The watch streams' events land here (on the event loop), and only they write
the store: what the operator wrote or read itself and the watch has not shown
yet is the reconciler's record (writes.py). Each input returns the executions whose reconcile it
concerns, so the controller only queues keys. Bodies are kept slimmed
(`objects.slim`, pods through `runs.slim_pod`) and indexed the way a
reconcile reads them: an execution's Jobs by its uid, a Job's pods by the
Job. A reconcile reads its run from here without an API call; the reconciler
asks the API server only where the watch may lag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from schedexec import manifests, models, runs
from schedexec.objects import key_of, owner_keys, owner_uids, slim
from schedexec.screening import screen


class CompactBodies(MutableMapping[str, dict[str, Any]]):
    """Bodies kept as compact JSON text and parsed when read. A waiting execution is about 2 KB of JSON and
    about 10 KB as Python dicts and strings: with 10,000 executions waiting between polls that is the
    operator's memory (issue 17). A read costs one json.loads per reconcile; each read is a new dict, so no
    reader can change what is kept."""

    def __init__(self) -> None:
        self._text: dict[str, str] = {}

    def __getitem__(self, key: str) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self._text[key])
        return body

    def __setitem__(self, key: str, body: Mapping[str, Any]) -> None:
        self._text[key] = json.dumps(body, separators=(",", ":"))

    def __delitem__(self, key: str) -> None:
        del self._text[key]

    def __contains__(self, key: object) -> bool:
        return key in self._text

    def __iter__(self) -> Iterator[str]:
        return iter(self._text)

    def __len__(self) -> int:
        return len(self._text)


class Store:
    def __init__(self) -> None:
        self.executions = CompactBodies()
        """By namespace/name, slimmed."""
        self.jobs: dict[str, dict[str, Any]] = {}
        self._jobs_of: dict[str, set[str]] = {}
        """Job keys by the uid of the execution that owns them: a reconcile looks at its own Jobs only."""
        self.pods: dict[str, dict[str, Any]] = {}
        """Run pods by namespace/name, slimmed (runs.slim_pod)."""
        self._pods_of: dict[str, set[str]] = {}
        """Pod keys by the namespace/name of the Job that owns them."""

    # --- watch events ----------------------------------------------------------------------------

    def execution_changed(self, body: Mapping[str, Any]) -> None:
        """A watch event of an execution: kept (slimmed and screened). Whether it is news or only echoes one of
        this operator's own writes is the reconciler's record's to say (writes.OwnWrites.echo)."""
        self.executions[key_of(body)] = screen(slim(body))

    def execution_deleted(self, key: str) -> None:
        self.executions.pop(key, None)

    def job_changed(self, event_type: str | None, body: Mapping[str, Any]) -> list[str]:
        """Keep or drop a run's Job; returns the keys of the executions owning it."""
        job_key = key_of(body)
        if event_type == "DELETED":
            self.jobs.pop(job_key, None)
            for uid in owner_uids(body):
                _unindex(self._jobs_of, uid, job_key)
        else:
            before = self.jobs.get(job_key)
            self.jobs[job_key] = slim(body)
            for uid in owner_uids(body):
                self._jobs_of.setdefault(uid, set()).add(job_key)
            if (
                event_type == "MODIFIED"
                and before is not None
                and runs.job_signature(before) == runs.job_signature(body)
            ):
                return []  # e.g. its active count: nothing a decision reads (the pod watch tells why a pod waits)
        return owner_keys(body)

    def pod_changed(self, event_type: str | None, body: Mapping[str, Any]) -> str | None:
        """Keep or drop a run pod; returns its execution's key if anything a decision reads changed."""
        meta, pod_key = body["metadata"], key_of(body)
        if event_type == "DELETED":
            before = self.pods.pop(pod_key, None)
            job = runs.pod_job(before or body)  # as it was indexed
            if job is not None:
                _unindex(self._pods_of, f"{meta['namespace']}/{job}", pod_key)
            return None  # the Job's own events tell what its pods' deletion means
        job = runs.pod_job(body)
        if job is None:
            return None
        job_key = f"{meta['namespace']}/{job}"
        before = self.pods.get(pod_key)
        slimmed = runs.slim_pod(body)
        self.pods[pod_key] = slimmed
        self._pods_of.setdefault(job_key, set()).add(pod_key)
        if runs.pod_signature(before) == runs.pod_signature(slimmed):
            return None
        return self._owner_of(job_key, body)

    def _owner_of(self, job_key: str, pod: Mapping[str, Any]) -> str | None:
        """The key of the execution a run pod belongs to: its Job's owner, else its execution label."""
        owners = owner_keys(self.jobs[job_key]) if job_key in self.jobs else []
        if owners:
            return owners[0]
        meta = pod["metadata"]
        labelled = f"{meta['namespace']}/{(meta.get('labels') or {}).get(manifests.EXECUTION_LABEL, '')}"
        return labelled if labelled in self.executions else None

    # --- what a reconcile reads ------------------------------------------------------------------

    def job_of(self, execution: models.ScheduledExecution, name: str) -> dict[str, Any] | None:
        """The cached Job `name` if it is `execution`'s (not one of an earlier execution of the same name)."""
        job = self.jobs.get(f"{execution.metadata.namespace}/{name}")
        return job if job is not None and execution.metadata.uid in owner_uids(job) else None

    def run_in_progress(self, body: Mapping[str, Any]) -> bool:
        """Whether execution `body` has a run in progress: its status names one, or its next run's Job exists
        though no status names it yet (created just before a crash or a leader change; starting that run
        adopts it: its creation answers 409, the same run). That Job may have either name of the run
        (manifests.run_job_names: an operator before the upgrade gave it the legacy one)."""
        status = body.get("status") or {}
        if status.get("currentRun"):
            return True
        phase = status.get("phase")
        if phase is not None and models.Phase(phase).finished:
            return False
        meta = body["metadata"]
        uid, index = meta.get("uid", ""), status.get("runs", 0) + 1
        for name in manifests.run_job_names(meta["name"], uid, index):
            job = self.jobs.get(f"{meta['namespace']}/{name}")
            if job is not None and uid in owner_uids(job):
                return True
        return False

    def pods_of(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The cached pods of `job` (by uid: not those of an earlier Job of the same name)."""
        uid = job["metadata"].get("uid")
        cached = (self.pods.get(key) for key in tuple(self._pods_of.get(key_of(job), ())))
        return [pod for pod in cached if pod is not None and runs.pod_job_uid(pod) == uid]

    def stray_jobs(
        self, execution: models.ScheduledExecution, keep: str | None, deleting: Callable[[str], bool]
    ) -> list[str]:
        """Names of `execution`'s Jobs other than `keep` that are neither deleted nor being deleted (one created
        just before a crash or a conflicting status write); `deleting`: whether the operator asked to delete
        the Job of that key already (writes.OwnWrites.is_deleting)."""
        namespace, uid = execution.metadata.namespace, execution.metadata.uid
        strays = []
        for job_key in sorted(self._jobs_of.get(uid, ())):
            body = self.jobs.get(job_key)
            if body is None or not job_key.startswith(f"{namespace}/") or deleting(job_key):
                continue
            name = body["metadata"]["name"]
            if name != keep and not body["metadata"].get("deletionTimestamp") and uid in owner_uids(body):
                strays.append(name)
        return strays

    def run_jobs(self, uid: str) -> set[str]:
        """Keys of the Jobs of execution `uid`."""
        return set(self._jobs_of.get(uid, ()))

    def pods_left(self, job_keys: set[str]) -> bool:
        """Whether any pod of these Jobs is still there (running, or terminating)."""
        return any(self._pods_of.get(job_key) for job_key in job_keys)

    def job_uid(self, namespace: str, name: str) -> str | None:
        cached = self.jobs.get(f"{namespace}/{name}")
        return None if cached is None else cached["metadata"].get("uid")


def _unindex(index: dict[str, set[str]], key: str, value: str) -> None:
    values = index.get(key, set())
    values.discard(value)
    if not values:
        index.pop(key, None)
