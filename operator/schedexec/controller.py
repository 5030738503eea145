"""Carries out decisions: the thin layer between the watch, the clock and the API.

Kopf feeds watch events in (`execution_event`, `job_event`); the controller
keeps the latest body of each execution and Job, and workers reconcile one
execution at a time: observe its run, call `decisions.decide`, then apply
the decision in a crash-safe order (create Job → write status → delete Job,
post events). Run slots (the operator-wide concurrency limit) are counted
here, under a lock, because two workers may race for the last one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic

from schedexec import decisions, metrics, models, runs
from schedexec.kube import TRANSIENT, Cluster, Conflict
from schedexec.scheduling import Timers, WorkQueue

log = logging.getLogger("schedexec")

MAX_BACKOFF_SECONDS = 60.0


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
        self.queue = WorkQueue()
        self.timers = Timers(self.queue.add)
        self._slots_lock = threading.Lock()
        self.running: set[str] = set()
        self.queued: dict[str, None] = {}
        self._failures: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- inputs -----------------------------------------------------------------

    def execution_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        if event_type == "DELETED":
            self.executions.pop(key, None)
            self.timers.cancel(key)
            self.queued.pop(key, None)
            self._free_slot(key)
            return
        if _newer(body, self.executions.get(key)):
            self.executions[key] = dict(body)
        if (body.get("status") or {}).get("currentRun"):
            with self._slots_lock:
                self.running.add(key)
        self.queue.add(key)

    def job_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        job_key = f"{meta['namespace']}/{meta['name']}"
        if event_type == "DELETED":
            self.jobs.pop(job_key, None)
        elif _newer(body, self.jobs.get(job_key)):
            self.jobs[job_key] = dict(body)
        log.debug("job event %s %s (rv %s)", event_type, job_key, meta.get("resourceVersion"))
        for owner in meta.get("ownerReferences") or []:
            if owner.get("kind") == models.KIND and owner.get("apiVersion") == models.API_VERSION:
                self.queue.add(f"{meta['namespace']}/{owner['name']}")

    # --- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self.timers.run())]
        tasks += [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                delay = await asyncio.to_thread(self.reconcile, key)
            except Conflict:
                delay = 0.2
            except (*TRANSIENT, pydantic.ValidationError, OSError) as exc:
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
        decision = decisions.decide(execution, run, now, self._slot_free(key), self.policy)
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
        if job is None:  # not in the watch cache (yet): ask the API server before concluding anything
            job = self.cluster.get_job(namespace, current.job)
        observed = runs.observe(job, [])
        if observed.state.finished:
            observed = runs.observe(job, self.cluster.run_pods(namespace, current.job))
        return observed

    def _slot_free(self, key: str) -> bool:
        with self._slots_lock:
            return key in self.running or len(self.running) < self.max_running

    def _apply(self, execution: models.ScheduledExecution, decision: decisions.Decision, now: datetime) -> None:
        key = execution.key
        status = decision.status
        if decision.start_run is not None:
            with self._slots_lock:
                self.running.add(key)
            self.queued.pop(key, None)
            start = decision.start_run
            self.cluster.create_job(runs.job_manifest(execution, start.index, start.args, self.pod_defaults))
            metrics.RUNS_STARTED.inc()
            if start.index > 1 and execution.status.next_run_at is not None:  # a polling run: how late?
                metrics.LATENESS.observe(max((now - execution.status.next_run_at).total_seconds(), 0.0))
        if decision.queued:
            self.queued[key] = None
        document = status_document(status)
        if document != status_document(execution.status):
            updated = self.cluster.write_status(execution, document)
            if _newer(updated, self.executions.get(key)):
                self.executions[key] = updated
            self._record_metrics(execution.status, status, now)
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
        if decision.delete_job is not None:
            self.cluster.delete_job(execution.metadata.namespace, decision.delete_job)
        if status.current_run is None:
            self._free_slot(key)
        if decision.delete_execution:
            self.cluster.delete_execution(execution)

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
        self, before: models.ScheduledExecutionStatus, after: models.ScheduledExecutionStatus, now: datetime
    ) -> None:
        if after.phase is not None and after.phase.finished and before.phase != after.phase:
            metrics.FINISHED.labels(phase=after.phase.value).inc()
        if before.current_run is not None and after.current_run is None:
            metrics.RUN_DURATION.observe((now - before.current_run.started_at).total_seconds())

    def _export_gauges(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self.queued))
        metrics.RUNNING.set(len(self.running))
        metrics.WAITING.set(len(self.timers))
