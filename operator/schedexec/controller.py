"""Carries out decisions: the thin layer between the watch, the clock and the API.

Kopf feeds watch events in (`execution_event`, `job_event`, `pod_event`);
the controller keeps the latest body of each execution, Job and run pod
(pods slimmed to what `runs.observe` reads), and workers reconcile one
execution at a time: observe its run from these caches, call
`decisions.decide`, then apply the decision in a crash-safe order (create
Job → write status → delete Job, post events). The pod cache lets a
reconcile see why an active run's pod waits without an API call; the API is
asked only when the cache may lag behind a finished Job (list its pods), and
for a pod stuck before its volumes are mounted (its FailedMount events, at
most every MOUNT_CHECK_SECONDS: a kubelet reports a missing Secret of a
volume only there). Run slots (the operator-wide concurrency limit) are counted
here, under a lock, because two workers may race for the last one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic

from schedexec import decisions, metrics, models, runs
from schedexec.kube import TRANSIENT, Cluster, Conflict, Gone, JobNameTaken, Leases, owner_uids, slim
from schedexec.scheduling import Timers, WorkQueue

log = logging.getLogger("schedexec")

MAX_BACKOFF_SECONDS = 60.0
LEASE_SECONDS = 15
"""A leader that has not renewed its lease for this long is replaced."""
LEASE_RENEW_SECONDS = 5.0
MOUNT_CHECK_SECONDS = 10.0
"""Least time between two reads of one pod's FailedMount events."""


def key_of(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def status_document(status: models.ScheduledExecutionStatus) -> dict[str, Any]:
    """The status as written to the API (and compared, to skip writes that change nothing)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether `candidate` is at least as new as `current` (etcd revisions are integers in practice)."""
    if current is None:
        return True
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(current["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return True


class Controller:
    def __init__(
        self,
        cluster: Cluster,
        policy: decisions.Policy,
        pod_defaults: runs.PodDefaults,
        max_running: int,
        workers: int = 4,
    ) -> None:
        self.cluster = cluster
        self.policy = policy
        self.pod_defaults = pod_defaults
        self.max_running = max_running
        self.workers = workers
        self.executions: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._jobs_of: dict[str, set[str]] = {}
        """Job keys by the uid of the execution that owns them: a reconcile looks at its own Jobs only."""
        self._deleted_jobs: set[str] = set()
        """Jobs this operator asked to delete whose deletion the watch has not shown yet."""
        self.pods: dict[str, dict[str, Any]] = {}
        """Run pods by namespace/name, slimmed (runs.slim_pod)."""
        self._pods_of: dict[str, set[str]] = {}
        """Pod keys by the namespace/name of the Job that owns them."""
        self._mount_checks: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        """By pod uid: when its FailedMount events were last read (monotonic), and what they were."""
        self.queue = WorkQueue()
        self.timers = Timers(self.queue.add)
        self._slots_lock = threading.Lock()
        self.running: set[str] = set()
        self.queued: dict[str, None] = {}
        self._failures: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(workers + 1, thread_name_prefix="reconcile")
        self.leading = asyncio.Event()
        """Set while this replica may act (always, without leader election)."""

    # --- inputs -----------------------------------------------------------------

    def execution_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        if event_type == "DELETED":
            self._forget(key)
            return
        if _newer(body, self.executions.get(key)):
            self.executions[key] = slim(body)
        if (body.get("status") or {}).get("currentRun"):
            with self._slots_lock:
                self.running.add(key)
        self.queue.add(key)

    def job_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        job_key = f"{meta['namespace']}/{meta['name']}"
        if event_type == "DELETED":
            self.jobs.pop(job_key, None)
            self._deleted_jobs.discard(job_key)
            for uid in owner_uids(body):
                owned = self._jobs_of.get(uid, set())
                owned.discard(job_key)
                if not owned:
                    self._jobs_of.pop(uid, None)
        elif _newer(body, self.jobs.get(job_key)):
            self.jobs[job_key] = slim(body)
            for uid in owner_uids(body):
                self._jobs_of.setdefault(uid, set()).add(job_key)
        log.debug("job event %s %s (rv %s)", event_type, job_key, meta.get("resourceVersion"))
        for owner in meta.get("ownerReferences") or []:
            if owner.get("kind") == models.KIND and owner.get("apiVersion") == models.API_VERSION:
                self.queue.add(f"{meta['namespace']}/{owner['name']}")

    def pod_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A run pod changed: keep it, and reconcile its execution if anything a decision reads changed."""
        meta = body["metadata"]
        job = runs.pod_job(body)
        if job is None:
            return
        pod_key, job_key = f"{meta['namespace']}/{meta['name']}", f"{meta['namespace']}/{job}"
        before = self.pods.get(pod_key)
        if event_type == "DELETED":
            self.pods.pop(pod_key, None)
            self._mount_checks.pop(meta.get("uid", ""), None)
            owned = self._pods_of.get(job_key, set())
            owned.discard(pod_key)
            if not owned:
                self._pods_of.pop(job_key, None)
            return  # the Job's own events tell what its pods' deletion means
        if not _newer(body, before):
            return
        slimmed = runs.slim_pod(body)
        self.pods[pod_key] = slimmed
        self._pods_of.setdefault(job_key, set()).add(pod_key)
        if runs.pod_signature(before) != runs.pod_signature(slimmed) and (owner := self._owner_of(job_key, body)):
            self.queue.add(owner)

    def _owner_of(self, job_key: str, pod: Mapping[str, Any]) -> str | None:
        """The key of the execution a run pod belongs to: its Job's owner, else its execution label."""
        namespace = pod["metadata"]["namespace"]
        job = self.jobs.get(job_key)
        for owner in ((job or {}).get("metadata") or {}).get("ownerReferences") or []:
            if owner.get("kind") == models.KIND and owner.get("apiVersion") == models.API_VERSION:
                return f"{namespace}/{owner['name']}"
        labelled = f"{namespace}/{(pod['metadata'].get('labels') or {}).get(runs.EXECUTION_LABEL, '')}"
        return labelled if labelled in self.executions else None

    def _forget(self, key: str) -> None:
        """The execution is gone: drop everything kept about it and free its slot."""
        self.executions.pop(key, None)
        self.timers.cancel(key)
        self._failures.pop(key, None)
        self.queued.pop(key, None)
        self._free_slot(key)

    # --- the loop ---------------------------------------------------------------

    async def run(self, leases: Leases | None = None) -> None:
        """Serve the queue; with `leases`, only while this replica holds the leader lease."""
        self._loop = asyncio.get_running_loop()
        if leases is None:
            self.leading.set()
        tasks = [asyncio.create_task(self.timers.run())]
        if leases is not None:
            tasks.append(asyncio.create_task(self._lead(leases)))
        tasks += [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _lead(self, leases: Leases) -> None:
        """Leader election: renew the lease every LEASE_RENEW seconds; stop working when it is lost."""
        while True:
            try:
                held = await asyncio.get_running_loop().run_in_executor(
                    self._executor, leases.try_acquire, LEASE_SECONDS
                )
            except TRANSIENT as exc:
                log.warning("cannot renew the leader lease: %s", exc)
                held = False
            if held and not self.leading.is_set():
                log.info("leading: this replica reconciles executions now")
                self.leading.set()
                for key in list(self.executions):  # whatever happened while another replica led
                    self.queue.add(key)
            elif not held and self.leading.is_set():
                log.warning("lost the leader lease: pausing")
                self.leading.clear()
            await asyncio.sleep(LEASE_RENEW_SECONDS)

    async def _worker(self) -> None:
        while True:
            await self.leading.wait()
            key = await self.queue.get()
            if not self.leading.is_set():  # lost the lease while waiting: leave the key for later
                self.queue.done(key)
                self.queue.add(key)
                continue
            try:
                delay = await asyncio.get_running_loop().run_in_executor(self._executor, self.reconcile, key)
            except Conflict:
                delay = await self._refresh(key)
            except Gone:
                self._forget(key)
                delay = None
            except (*TRANSIENT, JobNameTaken, pydantic.ValidationError, OSError) as exc:
                delay = self._backoff(key)
                metrics.RECONCILE_ERRORS.inc()
                log.warning("reconcile of %s failed, retrying in %.0fs: %s", key, delay, exc)
            except Exception:
                delay = self._backoff(key)
                metrics.RECONCILE_ERRORS.inc()
                log.exception("reconcile of %s failed unexpectedly, retrying in %.0fs", key, delay)
            else:
                self._failures.pop(key, None)
            finally:
                self.queue.done(key)
            if key in self.executions:
                self.timers.set(key, delay)
            self._export_gauges()

    async def _refresh(self, key: str) -> float:
        """After a conflict: read the execution again rather than retry on a stale copy."""
        namespace, name = key.split("/", 1)
        try:
            fresh = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.cluster.get_execution, namespace, name
            )
        except TRANSIENT:
            return self._backoff(key)
        if fresh is None:
            self._forget(key)
        elif _newer(fresh, self.executions.get(key)):
            self.executions[key] = slim(fresh)
        return 0.0

    def _backoff(self, key: str) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(MAX_BACKOFF_SECONDS, 2 ** (failures - 1)))

    # --- one reconcile (worker thread) -------------------------------------------

    def reconcile(self, key: str) -> float | None:
        """Bring one execution one step forward; returns seconds until it needs another look."""
        body = self.executions.get(key)
        if body is None:
            return None
        execution = models.ScheduledExecution.model_validate(body)
        if execution.metadata.deletion_timestamp is not None:
            return None
        now = datetime.now(UTC)
        run = self._observe(execution)
        log.debug("reconcile %s: phase %s, run %s", key, execution.status.phase, run.state)
        decision = decisions.decide(execution, run, now, self._has_slot(key), self.policy)
        if decision.start_run is not None and not self._reserve(key):  # another worker took the last slot
            decision = decisions.decide(execution, run, now, False, self.policy)
        self._apply(execution, decision, now)
        if decision.wake_at is None:
            return None
        return max((decision.wake_at - datetime.now(UTC)).total_seconds(), 0.0)

    def _observe(self, execution: models.ScheduledExecution) -> runs.RunObservation:
        current = execution.status.current_run
        if current is None:
            return runs.MISSING
        namespace = execution.metadata.namespace
        job = self.jobs.get(f"{namespace}/{current.job}")
        if job is None or execution.metadata.uid not in owner_uids(job):
            # not in the watch cache (yet), or a stale entry: ask the API server before concluding anything
            job = self.cluster.get_job(namespace, current.job)
            if job is not None and execution.metadata.uid not in owner_uids(job):
                job = None  # a Job of that name that is not this execution's

        if job is None:
            return runs.MISSING
        pods = self._cached_pods(namespace, job)
        observed = runs.observe(job, pods)
        if observed.state.finished and not runs.pods_account_for(job, pods):
            # the pod watch may lag behind the Job's: ask the API server for the pods before concluding
            observed = runs.observe(job, self.cluster.run_pods(namespace, current.job))
        elif observed.state is runs.RunState.ACTIVE:
            pod = runs.mount_check_due(pods, datetime.now(UTC), self.policy.start_failure_grace_seconds)
            if pod is not None:
                observed = runs.observe(job, pods, self._mount_failures(pod))
        return observed

    def _cached_pods(self, namespace: str, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The cached pods of `job` (by uid: not those of an earlier Job of the same name)."""
        uid = job["metadata"].get("uid")
        cached = (self.pods.get(key) for key in tuple(self._pods_of.get(f"{namespace}/{job['metadata']['name']}", ())))
        return [pod for pod in cached if pod is not None and runs.pod_job_uid(pod) in (uid, None)]

    def _mount_failures(self, pod: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pod's FailedMount events, read at most every MOUNT_CHECK_SECONDS per pod."""
        meta = pod["metadata"]
        checked = self._mount_checks.get(meta["uid"])
        if checked is not None and time.monotonic() - checked[0] < MOUNT_CHECK_SECONDS:
            return checked[1]
        try:
            events = self.cluster.pod_events(meta["namespace"], meta["uid"], runs.FAILED_MOUNT)
        except TRANSIENT as exc:  # e.g. no `list events` under custom RBAC: judge from the pod's status alone
            log.warning("cannot read the events of pod %s/%s: %s", meta["namespace"], meta.get("name"), exc)
            events = [] if checked is None else checked[1]
        self._mount_checks[meta["uid"]] = (time.monotonic(), events)
        return events

    def _has_slot(self, key: str) -> bool:
        with self._slots_lock:
            return key in self.running or len(self.running) < self.max_running

    def _reserve(self, key: str) -> bool:
        """Take a run slot for `key`, atomically; False if none is free."""
        with self._slots_lock:
            if key not in self.running and len(self.running) >= self.max_running:
                return False
            self.running.add(key)
            return True

    def _wait_for_slot(self, key: str) -> None:
        """Queue `key` for the next free slot; if one freed meanwhile, look again at once."""
        with self._slots_lock:
            self.queued[key] = None
            free = len(self.running) < self.max_running
        if free:
            self._wake_soon(key)

    def _apply(self, execution: models.ScheduledExecution, decision: decisions.Decision, now: datetime) -> None:
        key = execution.key
        status = decision.status
        start = decision.start_run
        if start is not None:
            self.cluster.create_job(runs.job_manifest(execution, start.index, start.args, self.pod_defaults))
        if decision.queued:
            self._wait_for_slot(key)
        else:
            self.queued.pop(key, None)
        document = status_document(status)
        if document != status_document(execution.status):
            updated = self.cluster.write_status(execution, document)
            if _newer(updated, self.executions.get(key)):
                self.executions[key] = slim(updated)
            self._record_metrics(execution.status, status, now, start)
        for event in decision.events:
            log.log(
                logging.WARNING if event.type == decisions.WARNING else logging.INFO,
                "%s %s: %s",
                key,
                event.reason,
                event.message,
                extra={"execution": key, "reason": event.reason},
            )
            self.cluster.post_event(execution, event.type, event.reason, event.message)
        for job in self._jobs_to_delete(execution, decision):
            self.cluster.delete_job(execution.metadata.namespace, job, self._job_uid(execution, job))
            self._deleted_jobs.add(f"{execution.metadata.namespace}/{job}")
        if status.current_run is None:
            self._free_slot(key)
        if decision.delete_execution:
            self.cluster.delete_execution(execution)

    def _jobs_to_delete(self, execution: models.ScheduledExecution, decision: decisions.Decision) -> list[str]:
        """The Job the decision names, plus any other Job of this execution that no run needs any more
        (one created just before a crash or a conflicting status write)."""
        keep = {decision.status.current_run.job} if decision.status.current_run is not None else set()
        namespace, uid = execution.metadata.namespace, execution.metadata.uid
        owned = ((job_key, self.jobs.get(job_key)) for job_key in tuple(self._jobs_of.get(uid, ())))
        strays = [
            body["metadata"]["name"]
            for job_key, body in owned
            if body is not None
            and job_key.startswith(f"{namespace}/")
            and uid in owner_uids(body)
            and not body["metadata"].get("deletionTimestamp")
            and job_key not in self._deleted_jobs
            and body["metadata"]["name"] not in keep
        ]
        named = [decision.delete_job] if decision.delete_job is not None else []
        return named + [job for job in strays if job not in named]

    def _job_uid(self, execution: models.ScheduledExecution, job: str) -> str | None:
        cached = self.jobs.get(f"{execution.metadata.namespace}/{job}")
        return None if cached is None else cached["metadata"].get("uid")

    def _free_slot(self, key: str) -> None:
        """Free `key`'s run slot, if it holds one, and wake the executions queued for one."""
        with self._slots_lock:
            if key not in self.running:
                return
            self.running.discard(key)
            free = self.max_running - len(self.running)
        for waiting in list(self.queued)[: max(free, 0)]:
            self._wake_soon(waiting)

    def _wake_soon(self, key: str) -> None:
        """Queue `key` now, from the event loop or from a worker thread."""
        if self._loop is None or threading.current_thread() is threading.main_thread():
            self.queue.add(key)
        else:
            self._loop.call_soon_threadsafe(self.queue.add, key)

    def _record_metrics(
        self,
        before: models.ScheduledExecutionStatus,
        after: models.ScheduledExecutionStatus,
        now: datetime,
        start: decisions.StartRun | None,
    ) -> None:
        if start is not None:
            metrics.RUNS_STARTED.inc()
            if start.index > 1 and before.next_run_at is not None:  # a polling run: how late?
                metrics.LATENESS.observe(max((now - before.next_run_at).total_seconds(), 0.0))
        if after.phase is not None and after.phase.finished and before.phase != after.phase:
            metrics.FINISHED.labels(phase=after.phase.value).inc()
        if before.current_run is not None and after.current_run is None:
            metrics.RUN_DURATION.observe((now - before.current_run.started_at).total_seconds())

    def _export_gauges(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self.queued))
        metrics.RUNNING.set(len(self.running))
        metrics.WAITING.set(len(self.timers))
