"""The operator's core loop: watch events in, keys queued, reconciles run by a few workers.

The watch streams (watches.py) hand every event to one of the three inputs here, on the event
loop; the `Store` keeps the bodies and says which executions an event
concerns, and their keys go into the `WorkQueue` (never twice, never to two
workers at once). Workers are coroutines: each takes a key, lets the
`Reconciler` bring that execution one step forward, and sets its next
wake-up on the `Timers` heap. Failures are retried with exponential
backoff; a conflicting status write re-reads the execution instead.
Workers start once the watch streams have listed, as a controller waits
for its informers' caches to sync: no reconcile decides before the store
has every execution, run Job and pod of the first lists (later, a watch may
lag: the reconciler asks the API server where that matters). After a watch gap, each
relist says what it listed, and what the store holds beyond that is handled
as deleted (`relisted`).

Everything in memory (store, slots, queue, timers) is touched on the event
loop only, and so are the API calls (kube.Cluster). With leader
election, workers serve the queue only while the `LeaderElector` says this
replica leads, and a write its fence stopped (kube.NotLeading: the lease ran
out between the decision and the send) puts the key back for later, never
counted as a failure of the execution.

Time: `now` is the wall clock every time in status is written and judged
by; cli.py gives the API server's (clock.py), so two replicas whose own
clocks differ judge a deadline the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from schedexec import decisions, kube, logsafe, manifests, metrics, models
from schedexec.kube import Cluster, Conflict, Gone
from schedexec.leader import LeaderElector
from schedexec.objects import finished, key_of, split_key
from schedexec.reconciler import Deleted, NotLeading, Reconciler
from schedexec.scheduling import Timers, WorkQueue
from schedexec.slots import RunSlots
from schedexec.store import Store
from schedexec.writes import Seen

log = logging.getLogger("schedexec")

MAX_BACKOFF_SECONDS = 60.0


def deadline_passed(body: Mapping[str, Any], now: datetime) -> bool:
    """Whether execution `body`'s status.deadline (as stored: it may not parse) is before `now`."""
    try:
        deadline = datetime.fromisoformat(str((body.get("status") or {})["deadline"]))
    except (KeyError, ValueError, TypeError):
        return False
    return deadline.tzinfo is not None and deadline <= now


class Controller:
    def __init__(
        self,
        cluster: Cluster,
        policy: decisions.Policy,
        pod_defaults: manifests.PodDefaults,
        max_running: int,
        workers: int = 4,
        elector: LeaderElector | None = None,
        quarantine_after: int = 5,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cluster = cluster
        self.now = now
        self.workers = workers
        self.quarantine_after = quarantine_after
        self.elector = elector
        self.store = Store()
        self.queue = WorkQueue()
        self.slots = RunSlots(max_running, wake=self.queue.add, pods_left=self.store.pods_left)
        self.timers = Timers(self.queue.add)
        self.reconciler = Reconciler(
            cluster,
            self.store,
            self.slots,
            policy,
            pod_defaults,
            wake=self.queue.add,
            may_act=elector.may_act if elector is not None else lambda: True,
            now=now,
        )
        self._failures: dict[str, int] = {}
        """Consecutive failed reconciles by key, of any kind: the backoff."""
        self._poisoned: dict[str, int] = {}
        """Consecutive reconciles by key that failed for a reason that does not heal by itself: the quarantine."""
        self.listed = asyncio.Event()
        """Set once the watch streams have all listed: no reconcile runs before (caches_listed)."""
        self.deadlines = metrics.Deadlines(now)
        metrics.PAST_DEADLINE.set_function(self.deadlines.passed)

    # --- inputs (the watch streams' events, on the event loop) -----------------------------------

    def execution_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key, uid = key_of(body), body["metadata"].get("uid", "")
        if event_type == "DELETED":
            self.forget(key, uid)
            return
        if self.slots.deleted(uid):
            return  # a lagging event of an execution found deleted already (a read answered 404): not kept again
        seen = self.reconciler.writes.echo(body)
        self.store.execution_changed(body)
        self.deadlines.seen(key, body)
        if seen is not Seen.NEW:
            return
        self.slots.seen(key, uid, self.store.run_in_progress(body))
        self.queue.add(key)

    def caches_listed(self) -> None:
        """The execution, Job and pod streams have all listed once (watches.streams): the store knows every
        execution, run Job and pod. Every run in progress takes its slot, then the workers start: no slot goes
        to another execution before a run whose Job a stopped operator created is counted."""
        if self.listed.is_set():
            return
        for key, body in self.store.executions.items():
            self.slots.seen(key, body["metadata"].get("uid", ""), self.store.run_in_progress(body))
        self.listed.set()

    def relisted(self, plural: str, namespace: str | None, keys: frozenset[str]) -> None:
        """A stream of `plural` in `namespace` (None: all) has listed `keys`. What the store holds of that kind
        there and the list did not show was deleted while the watch was away (a relist after 410 Gone brings
        no DELETED event for it): it is handled as deleted now, so a run slot held by a vanished pod is
        freed and a vanished execution is forgotten."""
        cached, handle = {
            models.PLURAL: (self.store.executions, self.execution_event),
            "jobs": (self.store.jobs, self.job_event),
            "pods": (self.store.pods, self.pod_event),
        }[plural]
        prefix = "" if namespace is None else f"{namespace}/"
        for key in [key for key in cached if key.startswith(prefix) and key not in keys]:
            log.info("%s %s was deleted while the watch was away", plural, key)
            handle("DELETED", cached[key])
        if plural == models.PLURAL:  # one deleted and made again under its name: the list shows only the new one
            listed = {self.store.executions[key]["metadata"].get("uid", "") for key in keys if key in cached}
            for uid, key in self.slots.held_in(prefix).items():
                if uid not in listed:
                    self.forget(key, uid)

    def job_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if event_type == "DELETED":
            self.reconciler.writes.job_deleted(key_of(body))
        for owner in self.store.job_changed(event_type, body):
            self.queue.add(owner)

    def pod_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A run pod changed: keep it, and reconcile its execution if anything a decision reads changed."""
        owner = self.store.pod_changed(event_type, body)
        if owner is not None:
            self.queue.add(owner)
        if event_type == "DELETED":
            self.reconciler.pod_gone(body["metadata"].get("uid", ""))
            self.slots.pods_deleted()

    def forget(self, key: str, uid: str | None = None) -> None:
        """Execution `uid` (None: the one kept under `key`) is gone: drop everything kept about it; its run slot
        is freed once its pods are gone (a deleted execution's run may still be running while its pod
        terminates: RunSlots.forgotten). The late deletion of an earlier execution of the same name (the store
        read the new one afresh before the watch told) leaves the new one alone."""
        kept = self.reconciler.newest(key)
        kept_uid = None if kept is None else kept["metadata"].get("uid", "")
        uid = kept_uid if uid is None else uid
        stored = self.store.executions.get(key)
        if stored is not None and stored["metadata"].get("uid", "") == uid:
            self.store.execution_deleted(key)
        if uid == kept_uid:
            self.deadlines.gone(key)
            self.reconciler.writes.forget(key)
            self.timers.cancel(key)
            self._failures.pop(key, None)
            self._poisoned.pop(key, None)
            self.slots.not_queued(key)
        if uid is not None:
            self.slots.forgotten(uid, self.store.run_jobs(uid))

    # --- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the queue; with leader election, only while this replica leads."""
        tasks = [asyncio.create_task(self.timers.run())]
        if self.elector is not None:
            tasks.append(asyncio.create_task(self.elector.run(on_gain=self._took_over)))
        tasks += [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def _took_over(self) -> None:
        """Leadership starts: look at every execution (each is read afresh before any Job is created or
        deleted for it: Reconciler._current)."""
        for key in self.store.executions:
            self.queue.add(key)

    def _leading(self) -> bool:
        return self.elector is None or self.elector.leading.is_set()

    async def _worker(self) -> None:
        await self.listed.wait()
        while True:
            if self.elector is not None:
                await self.elector.leading.wait()
            key = await self.queue.get()
            if not self._leading():  # lost the lease while waiting: leave the key for later
                self.queue.done(key)
                self.queue.add(key)
                continue
            try:
                delay = await self._reconcile(key)
            finally:
                self.queue.done(key)
            if self.reconciler.newest(key) is not None:
                self.timers.set(key, delay)
            else:  # forgotten while this reconcile awaited the API: a slot offered to it goes to the next waiter
                self.slots.not_queued(key)
            self._export_gauges()

    async def _reconcile(self, key: str) -> float | None:
        """One reconcile of `key`, its failures turned into the delay before the next look."""
        try:
            delay = await self.reconciler.reconcile(key)
        except Conflict:
            return await self._refresh(key)
        except Deleted as exc:
            self.forget(key, exc.uid)
            return None
        except Gone:
            self.forget(key)
            return None
        except NotLeading:
            log.warning("not leading any more: %s waits for the next leader", key)
            return self._backoff(key)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.inc()
            if kube.transient(exc):
                delay = self._backoff(key)
                log.warning("reconcile of %s failed, retrying in %.0fs: %s", key, delay, type(exc).__name__)
                return delay
            return await self._failed(key, exc)
        self._failures.pop(key, None)
        self._poisoned.pop(key, None)
        return delay

    async def _failed(self, key: str, exc: Exception) -> float | None:
        """A reconcile failed in a way that does not heal by itself (the operator's own code raised, or the API
        server refused what it was sent). Retried with backoff `quarantine_after` times in all; then, or at
        once if the sequence's deadline has passed, the execution is ended (Reconciler.refuse): Failed with
        reason InternalError, or TimedOut past its deadline, so it holds no run slot and is not retried
        forever; one that has finished already is only let go (its Jobs deleted, its slot freed). Transient
        failures (kube.transient) are not counted. Logged with the exception's type and where it was raised,
        never its message (it may quote the object)."""
        delay = self._backoff(key)
        failures = self._poisoned[key] = self._poisoned.get(key, 0) + 1
        log.error("reconcile of %s failed (%d of %d): %s", key, failures, self.quarantine_after, logsafe.described(exc))
        body = self.reconciler.newest(key)
        if body is None:
            return delay
        past_deadline = deadline_passed(body, self.now())
        if failures < self.quarantine_after and not past_deadline and not finished(body):
            return delay
        what = f"{failures} reconciles of this execution failed ({type(exc).__name__})"
        try:
            if past_deadline:
                message = f"the sequence passed its deadline while the operator could not reconcile it: {what}"
                await self.reconciler.refuse(body, models.Reason.TIMEOUT, message, models.Phase.TIMED_OUT)
            else:
                message = f"{what}; it was stopped rather than retried forever (a bug of schedexec: please report it)"
                await self.reconciler.refuse(body, models.Reason.INTERNAL_ERROR, message)
        except Exception as again:
            log.error("%s could not be stopped (%s); retrying in %.0fs", key, type(again).__name__, delay)
            return delay
        self._failures.pop(key, None)
        self._poisoned.pop(key, None)
        return None

    async def _refresh(self, key: str) -> float:
        """After a conflict: read the execution again rather than retry on a stale copy."""
        kept = self.reconciler.newest(key)
        uid = None if kept is None else kept["metadata"].get("uid", "")
        try:
            fresh = await self.cluster.get_execution(*split_key(key))
        except Exception as exc:  # whatever it is, the worker goes on: the next look retries
            log.warning("reading %s after a conflict failed: %s", key, type(exc).__name__)
            return self._backoff(key)
        if fresh is None:
            if uid is not None:
                self.forget(key, uid)  # the one read about (a new one may be kept by now)
        else:
            self.reconciler.writes.recorded(fresh)
        return 0.0

    def _backoff(self, key: str) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(MAX_BACKOFF_SECONDS, 2 ** (failures - 1)))

    def _export_gauges(self) -> None:
        metrics.observe_slots(len(self.slots.waiting), self.slots.held, self.slots.limit, len(self.timers))
