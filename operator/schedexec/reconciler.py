"""One reconcile: observe an execution's run, decide, and carry the decision out in a crash-safe order.

A reconcile is a coroutine on the event loop, and so are its API calls
(`kube.Cluster`): everything it reads and writes in memory (the store, the
run slots) is touched from one thread. The order of effects is
the one `schedexec.decisions` relies on: create the run's Job, then write
the status that names it; write the status that records an outcome, then
delete the Job. A crash between two steps is repaired by the next reconcile,
because Job names are deterministic (manifests.job_name: the execution's name and a tag of its uid, so
an execution created again under the same name never meets its predecessor's Jobs). A large result's
ConfigMap is never reused after a 409: the result goes under a name the API server draws (`keep_result`).
An XSOAR integration context is written into its execution's Secret before the status that schedules the
next run (`keep_context`), so no context is lost to a crash between the two: the next reconcile observes
the same finished run and writes the same context again.

The run is observed from the store; the API server is asked only when the
watch may lag: the current run's Job missing from the cache, a finished
Job whose pods the cache does not account for, and a pod stuck before its
volumes are mounted (its FailedMount events, at most every
MOUNT_CHECK_SECONDS per pod: the kubelet reports a missing Secret of a
volume only there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pydantic

from schedexec import decisions, kube, manifests, metrics, models, runs, screening, starts, tracing
from schedexec.kube import PERMANENT, TRANSIENT, Cluster, JobNameTaken, JobRejected
from schedexec.models import EventType
from schedexec.objects import finished, owner_uids
from schedexec.slots import RunSlots
from schedexec.store import Store
from schedexec.writes import OwnWrites
from schedexec_runner import envelope as envelopes
from schedexec_runner import frame

log = logging.getLogger("schedexec")

MOUNT_CHECK_SECONDS = 10.0
"""Least time between two reads of one pod's FailedMount events."""


NotLeading = kube.NotLeading
"""This replica may not act now: raised before a Job is created or deleted, as the fence raises it before a write."""


class Deleted(kube.Gone):
    """The execution a reconcile was about (`uid`) is deleted: the API server answered 404. Named by uid: by the
    time the controller hears of it, the store may hold a new execution of the same name."""

    def __init__(self, key: str, uid: str) -> None:
        super().__init__(key)
        self.uid = uid


def status_document(status: models.ScheduledExecutionStatus) -> dict[str, Any]:
    """The status as written to the API (and compared, to skip writes that change nothing)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _refusal(exc: Exception) -> tuple[str, str]:
    """(reason, message) for a Job the API server refused for good."""
    if isinstance(exc, JobRejected):
        return models.Reason.JOB_REJECTED, exc.message
    assert isinstance(exc, JobNameTaken)
    return models.Reason.JOB_NAME_TAKEN, str(exc)


def _invalid(exc: pydantic.ValidationError) -> str:
    """What the models refuse in a stored object: where and why, never the value."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
    return f"the object is not a valid ScheduledExecution: {problems}"


def _overdue(decision: decisions.Decision) -> bool:
    error = decision.status.error
    return error is not None and error.reason == models.Reason.RUN_OVERDUE


async def keep_result(api: kube.Api, manifest: dict[str, Any], fence: kube.Fence | None = None) -> str:
    """Create the ConfigMap of a large result (manifests.result_config_map); returns the name it is kept under.

    A 409 means the name is taken: by this result's own ConfigMap (made before a crash, or before a status
    write that conflicted), or by anything else: the name derives from the execution's uid, which anyone who
    may read the execution sees, and a user may create a ConfigMap under it first. Telling the two apart
    takes a read the operator is not given (its role creates ConfigMaps, never reads them), and reusing one
    it cannot vouch for would let the status name what someone else wrote. So the taken name is left alone
    (never reused, never overwritten) and the result is kept under a name the API server draws
    (manifests.unclaimed_name); an own copy made before a crash stays, owned by the execution, and goes with
    it. Its writes check `fence` (the Cluster's: the leader lease) as they are sent, as `kube.Cluster`'s do."""
    meta = manifest["metadata"]
    url = kube.path("v1", meta["namespace"], "configmaps")
    created = await api.call("post", url, manifest, tolerate=(409,), fence=fence)
    if created.status != 409:
        return str(meta["name"])
    log.info(
        "ConfigMap %s/%s exists: the result is kept under a name the API server draws", meta["namespace"], meta["name"]
    )
    drawn = await api.call("post", url, manifests.unclaimed_name(manifest), fence=fence)
    return str(drawn.body["metadata"]["name"])


async def keep_context(api: kube.Api, manifest: dict[str, Any], fence: kube.Fence | None = None) -> None:
    """Create, or replace, the Secret keeping an execution's integration context
    (manifests.xsoar_context_secret). Created and replaced, never read (the role has no `get secrets`); the
    chart's operator-secrets admission policy lets the operator write only Secrets of this type, name and
    owner, so a Secret of another type under its name (planted, say) is refused, never overwritten. A refusal
    (403, 422: permanent) is logged and the sequence goes on without the new context (the next run reads what
    the Secret holds, or nothing): a Secret that cannot be written never holds an execution up; any other
    error is retried, as for any write. Nothing of the Secret's data is logged."""
    meta = manifest["metadata"]
    url = kube.path("v1", meta["namespace"], "secrets")
    try:
        created = await api.call("post", url, manifest, tolerate=(409,), fence=fence)
        if created.status == 409:
            await api.call("put", f"{url}/{meta['name']}", manifest, fence=fence)
    except kube.APIError as exc:
        if exc.status not in CONTEXT_REFUSALS:
            raise
        log.warning(
            "%s/%s: the integration context was not kept (HTTP %d: %s); the next run goes without it",
            meta["namespace"],
            meta["name"],
            exc.status,
            exc.message,
        )


CONTEXT_REFUSALS = (403, 422)
"""Answers to a context Secret's write that no retry changes: RBAC or the admission fence refused it, or a Secret
of another type holds its name (a Secret's type is immutable)."""


class Reconciler:
    def __init__(
        self,
        cluster: Cluster,
        store: Store,
        slots: RunSlots,
        policy: decisions.Policy,
        pod_defaults: manifests.PodDefaults,
        wake: Callable[[str], None],
        may_act: Callable[[], bool] = lambda: True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cluster, self.store, self.slots = cluster, store, slots
        self.writes = OwnWrites()
        """What this reconciler wrote or read that the watch has not shown yet (the store is the watch's)."""
        self.policy, self.pod_defaults = policy, pod_defaults
        self.wake, self.may_act = wake, may_act
        self.now = now
        """The wall clock times are written and judged by: the API server's (clock.py), the same on every replica."""
        self._mount_checks: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        """By pod uid: when its FailedMount events were last read (monotonic), and what they were."""

    def newest(self, key: str) -> dict[str, Any] | None:
        """Execution `key` as last known: written or read by a reconcile, else as the watch showed it."""
        return self.writes.newest(key, self.store.executions)

    def _run_stages(self, execution: models.ScheduledExecution) -> list[tracing.Stage]:
        """The Kubernetes stages of the execution's current run, from the watch cache (for its trace)."""
        ran = execution.status.current_run
        job = None if ran is None else self.store.job_of(execution, ran.job)
        return tracing.run_stages(job, [] if job is None else self.store.pods_of(job))

    def _jobs(self, execution: models.ScheduledExecution) -> list[str]:
        """The names of `execution`'s Jobs that are there and not being deleted: what its decision plans for."""
        return self.store.stray_jobs(execution, keep=None, deleting=self.writes.is_deleting)

    async def reconcile(self, key: str) -> float | None:
        """Bring one execution one step forward; returns seconds until it needs another look. Raises `Deleted`
        if the API server no longer has it."""
        body = self.newest(key)
        if body is None:
            return None
        try:
            with tracing.span("reconcile", tracing.of(body), attributes={"schedexec.execution": key}):
                return await self._reconcile(key, body)
        except kube.Gone as exc:
            raise Deleted(key, body["metadata"].get("uid", "")) from exc

    async def _reconcile(self, key: str, body: dict[str, Any]) -> float | None:
        refused = screening.refusal(body)
        if refused is not None:
            await self.refuse(body, *refused)
            return None
        try:
            execution = models.ScheduledExecution.model_validate(body)
        except pydantic.ValidationError as exc:
            await self.refuse(body, models.Reason.INVALID_SPEC, _invalid(exc))
            return None
        uid = execution.metadata.uid
        if execution.metadata.deletion_timestamp is not None:
            self.slots.not_queued(key)  # a slot offered to it goes to the next waiter
            return None
        self.slots.seen(key, uid, self.store.run_in_progress(body))  # before any await: its pod may run already
        now = self.now()
        run = await self.observe(execution)
        log.debug("reconcile %s: phase %s, run %s", key, execution.status.phase, run.state)
        jobs = self._jobs(execution)
        decision = decisions.decide(execution, run, now, self.slots.may_start(uid), self.policy, jobs)
        if _overdue(decision):  # the watchdog acts on what the API server says now, not on the cache
            run = await self.observe(execution, fresh=True)
            decision = decisions.decide(execution, run, now, self.slots.may_start(uid), self.policy, jobs)
        if (decision.start_run is not None or decision.strays) and not await self._current(body):
            return 0.0  # the cache lagged: decide again on what the API server has now
        if decision.start_run is not None and not self.slots.try_start(key, uid):  # another took the last slot
            decision = decisions.decide(execution, run, now, False, self.policy, jobs)
        await self.apply(execution, decision, now)
        if decision.wake_at is None:
            return None
        return max((decision.wake_at - self.now()).total_seconds(), 0.0)

    async def refuse(
        self, body: Mapping[str, Any], reason: str, message: str, phase: models.Phase = models.Phase.FAILED
    ) -> None:
        """End an execution that cannot be decided on, from its metadata and last status alone
        (decisions.failed_outright): the status says why, an Event too; then let it go (`let_go`). Once it is
        finished (this is the watch showing it, or a retry after a failed Job deletion) only `let_go` runs:
        retrying cannot make it valid."""
        meta = models.ObjectMeta.model_validate(body["metadata"])
        try:
            prior = models.ScheduledExecutionStatus.model_validate(body.get("status") or {})
        except pydantic.ValidationError:
            prior = models.ScheduledExecutionStatus()
        # writing its status, posting an Event and deleting its Jobs read only the metadata, which parsed
        execution = models.ScheduledExecution.model_construct(metadata=meta, spec=None, status=prior)  # type: ignore[arg-type]
        jobs: Collection[str] = self._jobs(execution)
        if not finished(body):
            decision = decisions.failed_outright(
                meta, prior, self.now(), reason, message, phase, jobs, policy=self.policy
            )
            log.warning("%s %s: %s", execution.key, reason, decisions.clip(message, decisions.EVENT_MESSAGE_LIMIT))
            self.writes.recorded(await self.cluster.write_status(execution, status_document(decision.status)))
            for event in decision.events:
                await self.cluster.post_event(execution, event.type, event.reason, event.message)
            jobs = decision.delete_jobs
        await self.let_go(execution, jobs)

    async def let_go(self, execution: models.ScheduledExecution, jobs: Collection[str]) -> None:
        """An execution that will run no more (refused, or ended by the controller): its `jobs` are deleted
        (every Job of it not being deleted yet, and the Job its status names, perhaps not in the cache yet),
        its run slot freed, a slot offered to it passed on."""
        namespace = execution.metadata.namespace
        for job in sorted(set(jobs)):
            self._ensure_leading(execution.key)
            await self.cluster.delete_job(namespace, job, self.store.job_uid(namespace, job))
            self.writes.deleting(namespace, job)
        self.slots.ended(execution.metadata.uid)
        self.slots.not_queued(execution.key)

    async def _current(self, body: Mapping[str, Any]) -> bool:
        """Whether `body` is the execution as the API server has it now; if not, the cache gets the fresh one.
        Read before every Job creation and stray deletion: a watch may lag behind this operator's own writes
        or behind a previous leader's, and a Job created or deleted on a stale view would run a run twice or
        lose it. Raises `kube.Gone` if the execution is deleted (a relist does not report deletions it
        missed, so the cache can hold an execution that no longer exists): the controller forgets it."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        fresh = await self.cluster.get_execution(namespace, name)
        if fresh is None:
            raise kube.Gone(f"{namespace}/{name}")
        if fresh["metadata"].get("resourceVersion") == body["metadata"].get("resourceVersion"):
            return True
        self.writes.recorded(fresh)
        return False

    # --- observe ---------------------------------------------------------------------------------

    async def observe(self, execution: models.ScheduledExecution, fresh: bool = False) -> runs.RunObservation:
        """The current run as the watch caches show it; `fresh`: as the API server shows it now."""
        current = execution.status.current_run
        if current is None:
            return runs.MISSING
        namespace = execution.metadata.namespace
        job = None if fresh else self.store.job_of(execution, current.job)
        if job is None:  # not in the watch cache (yet): ask the API server before concluding anything
            job = await self.cluster.get_job(namespace, current.job)
            if job is not None and execution.metadata.uid not in owner_uids(job):
                job = None  # a Job of that name that is not this execution's
        if job is None:
            return runs.MISSING
        pods = self.store.pods_of(job)
        observed = runs.observe(job, pods)
        if fresh or (observed.state.finished and not runs.pods_account_for(job, pods)):
            # the pod watch may lag behind the Job's: ask the API server for the pods before concluding
            observed = runs.observe(job, await self.cluster.run_pods(namespace, job["metadata"]["uid"]))
        elif observed.state is runs.RunState.ACTIVE:
            pod = starts.mount_check_due(pods, self.now(), self.policy.start_failure_grace_seconds)
            if pod is not None:
                observed = runs.observe(job, pods, await self._mount_failures(pod))
        if observed.logged is not None:
            observed = await self._read_logged(namespace, observed)
        return observed

    async def _read_logged(self, namespace: str, observed: runs.RunObservation) -> runs.RunObservation:
        """The outcome a run framed in its pod's log, verified against its termination message; never a
        partial result passed off as whole (schedexec_runner.frame)."""
        assert observed.logged is not None
        pointer, limit = observed.logged.pointer, self.pod_defaults.max_result_bytes
        if pointer["bytes"] > limit:
            message = f"run reported a {pointer['bytes']}-byte outcome; the limit is {limit} bytes"
            return replace(observed, logged=None, envelope=envelopes.Failure(models.Reason.RESULT_TOO_LARGE, message))
        # the frame is the end of the log: only its lines are read, however much the component printed before
        # (or however often the kubelet rotated the log), and never more than the pointer's lines can hold
        pod, lines, budget = observed.logged.pod, frame.tail_lines(pointer), frame.log_bytes(pointer)
        try:
            log_text = await self.cluster.pod_log(namespace, pod, manifests.CONTAINER, budget, lines)
        except kube.APIError as exc:
            if exc.status not in (401, 403):
                raise  # transient: look again
            problem = (
                f"the run wrote its outcome to its log, and the operator may not read it ({exc}): grant it get pods/log"
            )
            return replace(observed, logged=None, envelope_problem=problem)
        try:
            raw = frame.read(log_text or "", pointer, limit)
            return replace(observed, logged=None, envelope=envelopes.read(raw.decode("utf-8")))
        except (frame.FrameError, envelopes.EnvelopeError, UnicodeDecodeError) as exc:
            return replace(observed, logged=None, envelope_problem=f"the outcome in the pod's log: {exc}")

    async def _mount_failures(self, pod: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pod's FailedMount events, read at most every MOUNT_CHECK_SECONDS per pod."""
        meta = pod["metadata"]
        checked = self._mount_checks.get(meta["uid"])
        if checked is not None and time.monotonic() - checked[0] < MOUNT_CHECK_SECONDS:
            return checked[1]
        try:
            events = await self.cluster.pod_events(meta["namespace"], meta["uid"], starts.FAILED_MOUNT)
        except TRANSIENT as exc:  # e.g. no `list events` under custom RBAC: judge from the pod's status alone
            log.warning("cannot read the events of pod %s/%s: %s", meta["namespace"], meta.get("name"), exc)
            events = [] if checked is None else checked[1]
        self._mount_checks[meta["uid"]] = (time.monotonic(), events)
        return events

    def pod_gone(self, uid: str) -> None:
        self._mount_checks.pop(uid, None)

    # --- apply -----------------------------------------------------------------------------------

    async def apply(self, execution: models.ScheduledExecution, decision: decisions.Decision, now: datetime) -> None:
        """Carry out `decision`: Job, status, events, Job deletions, slots, in that order."""
        key, start = execution.key, decision.start_run
        traced = tracing.of(self.newest(key))  # the execution's trace context (its annotation), read before writing
        if decision.context_secret is not None:  # before the run that mounts it, and the status that schedules it
            self._ensure_leading(key)
            await keep_context(self.cluster.api, decision.context_secret, self.cluster.fence)
        if start is not None:
            self._ensure_leading(key)
            traceparent = tracing.run_traceparent(traced, execution.metadata.uid, start.index)
            manifest = manifests.job_manifest(
                execution, start.index, start.args, self.pod_defaults, start.method, start.job, traceparent
            )
            try:
                if not await self.cluster.create_job(manifest):
                    # adopted: its watch events may all have come before this status names it (it may even have
                    # finished), so none would bring the execution back: look again once this reconcile is done
                    self.wake(key)
            except PERMANENT as exc:
                log.warning("%s: the Job of run %d was refused: %s", key, start.index, exc)
                jobs = self._jobs(execution)
                refusal = _refusal(exc)
                decision, start = decisions.job_refused(execution, start.index, now, self.policy, refusal, jobs), None
        if decision.queued:
            self.slots.queued(key)
        else:
            self.slots.not_queued(key)
        if decision.result_config_map is not None:  # before the status that names it
            self._ensure_leading(key)
            kept = await keep_result(self.cluster.api, decision.result_config_map, self.cluster.fence)
            if kept != decision.result_config_map["metadata"]["name"]:
                decision = decisions.result_kept_in(decision, kept)
        document = status_document(decision.status)
        if document != status_document(execution.status):
            updated = await self.cluster.write_status(execution, document)
            self.writes.recorded(updated)
            metrics.record_transition(execution, decision.status, now, start)
            tracing.record_runs(execution, traced, decision.status, now, lambda: self._run_stages(execution))
        for event in decision.events:
            level = logging.WARNING if event.type is EventType.WARNING else logging.INFO
            extra = {"execution": key, "reason": event.reason}
            log.log(level, "%s %s: %s", key, event.reason, event.message, extra=extra)
            if event.posted:
                await self.cluster.post_event(execution, event.type, event.reason, event.message)
        # a replica that stopped leading (frozen past its lease, say) may hold a stale view: it deletes nothing
        # (status writes are fenced as they are sent, and guarded by the resourceVersion they were decided on)
        self._ensure_leading(key)
        await self._delete_jobs(execution, decision)
        if decision.status.current_run is None:
            self.slots.ended(execution.metadata.uid)
        if decision.delete_execution:
            self._ensure_leading(key)
            await self.cluster.delete_execution(execution)

    def _ensure_leading(self, key: str) -> None:
        """Checked right before every create or delete: a leader past its renew deadline acts no more."""
        if not self.may_act():
            raise NotLeading(key)

    async def _delete_jobs(self, execution: models.ScheduledExecution, decision: decisions.Decision) -> None:
        """The Jobs the decision deletes: the run's, and any other Job of this execution that no run needs."""
        namespace = execution.metadata.namespace
        for job in decision.delete_jobs:
            self._ensure_leading(execution.key)
            await self.cluster.delete_job(namespace, job, self.store.job_uid(namespace, job))
            self.writes.deleting(namespace, job)
