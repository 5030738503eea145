"""What to do next with an execution: a pure function of the object, its run and the clock.

`decide` is the whole behaviour of the operator. It gets the execution as
last read, what the cluster says about its current run, the time, and
whether a run slot is free, and the names of its Jobs, and returns a
`Decision`: the status to write, at most one Job to create, every Job to
delete (the run's, and any other that no run needs), events to post, and
when to look again.
The controller and the reconciler only carry these out, so every rule
(polling, the minimum interval, the sequence deadline, retries, queueing,
cancellation, TTL, runs whose pod cannot start, args too large to deliver)
is unit-tested here without a cluster.

A run whose pod cannot start (`runs.judge_start`: ImagePullFailed,
ConfigError, Unschedulable) fails the execution and does not consume
`spec.retries`: the kubelet (or scheduler) already retried during the grace,
and a new pod of the same immutable spec would fail the same way. Retries
are for pods that started and died.

One clock: every time in status (startedAt, deadline, nextRunAt, run start and finish) is `now`, the
operator's clock, and every deadline is compared with `now`; never with the API server's
creationTimestamp, so clock skew between machines cannot end a sequence early or late. A sequence
starts when the operator first sees its execution.

Order of effects (see `schedexec.reconciler`): a run's Job is created before
the status that names it is written, and deleted only after the status that
records its outcome is written. A crash between the two steps is repaired by
the next reconcile, because Job names are deterministic: no run is lost and
no run index executes twice.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schedexec import models, runs
from schedexec.models import (
    Condition,
    ConditionStatus,
    ConditionType,
    EventType,
    ExecutionError,
    Phase,
    Reason,
    RunOutcome,
    RunRecord,
)
from schedexec_runner import bounds, contract
from schedexec_runner import envelope as envelopes


@dataclass(frozen=True)
class Policy:
    """Operator-wide settings the decisions depend on."""

    min_interval_seconds: int = 10
    """Floor for next_run_in_seconds, as in XSOAR."""
    overdue_grace_seconds: int = 60
    """Watchdog: a run still unfinished this long after its run timeout is stopped and failed (RunOverdue).
    The Job controller normally ends it at the timeout; this catches a run whose Job nobody ends
    (controller or node down, pod never scheduled), so no execution stays Running until its sequence deadline."""
    start_failure_grace_seconds: int = 30
    """A run whose scheduled pod keeps failing to pull its image or to create its container (or to mount a
    volume) this long fails (ImagePullFailed, ConfigError); see runs.judge_start."""
    unschedulable_grace_seconds: int = 120
    """A run whose pod the scheduler keeps refusing this long fails (Unschedulable)."""
    log_tail_in_status: bool = False
    """Copy the end of a crashed run's log into status.error and its Event (opt-in: component output may hold
    anything, credentials included, and status and Events are readable by anyone who may read executions)."""
    failed_run_retention_seconds: int = 3600
    """How long the Job (and pod) of a run that died without an outcome is kept, so `kubectl logs` shows why."""
    progress_events: bool = False
    """Post RunStarted, RunScheduled and Succeeded as Kubernetes Events too (they are always logged)."""
    inline_result_bytes: int = 16 * 1024
    """A result larger than this (its JSON) is kept in a ConfigMap owned by the execution (status.resultRef)."""


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    """A `Reason`, or a component's own error reason."""
    message: str
    posted: bool = True
    """Posted as a Kubernetes Event; False: only logged (progress of a healthy sequence, unless
    Policy.progress_events: an Event per run is two API writes per execution that tell nothing
    `kubectl get sx` does not show)."""


PROGRESS = frozenset({Reason.RUN_STARTED, Reason.RUN_SCHEDULED, Reason.SUCCEEDED})
"""Normal events of a healthy sequence; failures, waits (Queued) and PollIntervalRaised are always posted."""

EVENT_MESSAGE_LIMIT = 1024
"""The longest Event (and log line) message: a Kubernetes Event's message is meant for one line of
`kubectl describe`."""
PARTIAL_RESULT_LIMIT = 64 * 1024
"""The largest partial result (its compact JSON, in bytes) the status keeps; a larger one is replaced by
a marker saying how large it was (partial results are shown while polling, the final result may be
larger: it goes to a ConfigMap)."""
OMITTED = "schedexec.io/omitted"


def clip(message: str, limit: int = models.MESSAGE_LIMIT) -> str:
    """`message` cut to `limit` characters, with a marker saying how long it was; a lone surrogate (which no
    status, Event or log line can encode) shown as its escape."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(message) <= limit:
        return message
    marker = f"... [cut: {len(message)} characters in all]"
    return message[: limit - len(marker)] + marker


def bounded_partial(value: Any) -> Any:
    """A partial result as the status keeps it: itself if its JSON fits PARTIAL_RESULT_LIMIT, else a marker
    object {"schedexec.io/omitted": "<why>"}."""
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size <= PARTIAL_RESULT_LIMIT:
        return value
    return {OMITTED: f"the partial result is {size} bytes as JSON; the status keeps at most {PARTIAL_RESULT_LIMIT}"}


@dataclass(frozen=True)
class StartRun:
    index: int
    args: dict[str, Any]
    method: str | None = None
    """The command to run instead of spec.method (a previous run's schedule named it)."""


@dataclass(frozen=True)
class Decision:
    status: models.ScheduledExecutionStatus
    start_run: StartRun | None = None
    delete_job: str | None = None
    """The run's Job to delete: the finished run's (cleanup) or the running one (timeout, cancel)."""
    strays: tuple[str, ...] = ()
    """The execution's other Jobs that no run needs (one created just before a crash, say): deleted too, after
    a read of the execution from the API server confirms the view they were decided on (reconciler)."""
    delete_execution: bool = False
    wake_at: datetime | None = None
    events: list[Event] = field(default_factory=list)
    queued: bool = False
    """Due to start a run, but no run slot is free."""
    result_config_map: dict[str, Any] | None = None
    """A ConfigMap to create before the status that names it (a result too large for the status)."""

    @property
    def delete_jobs(self) -> tuple[str, ...]:
        """Every Job to delete: the run's, then the strays."""
        return self.strays if self.delete_job is None else (self.delete_job, *self.strays)


def _copy(status: models.ScheduledExecutionStatus) -> models.ScheduledExecutionStatus:
    """A deep copy for a decision to change: dumped and validated again, which is about five times faster than
    pydantic's deep copy of the same status (a waiting execution's: 12 against 58 µs; issue 17)."""
    return models.ScheduledExecutionStatus.model_validate(status.model_dump())


def decide(
    execution: models.ScheduledExecution,
    run: runs.RunObservation,
    now: datetime,
    slot_free: bool,
    policy: Policy = Policy(),
    jobs: Collection[str] = (),
) -> Decision:
    """The next step for `execution`, given its current `run` (MISSING if none) and the names of its `jobs`
    (those not being deleted already): the Decision deletes every one of them that no run needs."""
    status = _copy(execution.status)
    step = _DecisionBuilder(execution, status, now, policy, jobs)
    if status.phase is not None and status.phase.finished:
        return step.after_finish(run)
    if status.phase is None:
        step.begin()
    if status.current_run is not None and run.state.finished:
        step.record_outcome(run)
    elif status.current_run is not None and run.state is runs.RunState.MISSING:
        step.fail(
            RunOutcome.LOST,
            Reason.RUN_LOST,
            f"the Job {status.current_run.job} of run "
            f"{status.current_run.index} disappeared before it reported an outcome",
        )
    if not status.phase.finished and execution.spec.cancel:  # type: ignore[union-attr]
        step.stop(Phase.CANCELLED, Reason.CANCELLED, "spec.cancel was set")
    if not status.phase.finished and status.deadline is not None and now >= status.deadline:  # type: ignore[union-attr]
        step.stop(Phase.TIMED_OUT, Reason.TIMEOUT, _timeout_message(execution, status))
    if not status.phase.finished and status.current_run is not None:  # type: ignore[union-attr]
        step.fail_if_overdue(run)
    if not status.phase.finished and status.current_run is not None and run.state is runs.RunState.ACTIVE:  # type: ignore[union-attr]
        step.watch_start(run)
    if not status.phase.finished and status.current_run is None:  # type: ignore[union-attr]
        step.start_if_due(slot_free)
    return step.build()


def _retains_failed_runs(policy: Policy) -> bool:
    return policy.failed_run_retention_seconds > 0 and not policy.log_tail_in_status


def _retained_job(name: str, status: models.ScheduledExecutionStatus, policy: Policy) -> tuple[str, datetime] | None:
    """The Job of execution `name`'s last run if it is kept for its logs (the execution finished because that
    run died without an outcome), and until when; None if there is none."""
    last = status.history[-1] if status.history else None
    finished = status.phase is not None and status.phase.finished
    if not finished or last is None or last.outcome is not RunOutcome.LOST or status.completed_at is None:
        return None
    if not _retains_failed_runs(policy) or last.reason == Reason.RUN_LOST:
        return None
    return runs.job_name(name, last.index), status.completed_at + timedelta(seconds=policy.failed_run_retention_seconds)


def failed_outright(
    metadata: models.ObjectMeta,
    prior: models.ScheduledExecutionStatus,
    now: datetime,
    reason: str,
    message: str,
    phase: Phase = Phase.FAILED,
    jobs: Collection[str] = (),
) -> Decision:
    """End an execution that cannot be decided on (the stored object breaks a bound or the models, or its
    reconcile keeps failing) from its metadata and last status alone: `phase` with `reason` and `message`,
    the run in progress (if any) stopped and every one of its `jobs` deleted. Reads no spec: the spec may be
    what broke."""
    execution = models.ScheduledExecution.model_construct(metadata=metadata, spec=None, status=prior)  # type: ignore[arg-type]
    status = _copy(prior)
    step = _DecisionBuilder(execution, status, now, Policy(), jobs)
    status.started_at = status.started_at or now
    step._close_run(RunOutcome.STOPPED, None, reason)
    step.fail_with(phase, reason, message)
    step._set_conditions()
    status.observed_generation = metadata.generation
    return Decision(status=status, delete_job=step.delete_job, strays=step.strays(), events=step.events)


def _kept_job(name: str, status: models.ScheduledExecutionStatus, policy: Policy) -> str | None:
    """The one Job of execution `name` that is no stray: the current run's; while the sequence goes on
    without one, the next run's (a previous operator, or leader, created it and stopped before the status
    named it: it is that run, adopted when it is due, never deleted and created again); once finished,
    the last run's if it is kept for its logs."""
    if status.current_run is not None:
        return status.current_run.job
    if status.phase is None or not status.phase.finished:
        return runs.job_name(name, status.runs + 1)
    retained = _retained_job(name, status, policy)
    return None if retained is None else retained[0]


def job_refused(
    execution: models.ScheduledExecution,
    index: int,
    now: datetime,
    policy: Policy,
    refusal: tuple[str, str],
    jobs: Collection[str] = (),
) -> Decision:
    """The execution fails because the API server refused the Job of run `index` for good (`refusal`:
    reason and the API server's message); nothing was started, so nothing is retried. Of its `jobs`, those no
    run needs are deleted, as `decide` does."""
    status = _copy(execution.status)
    step = _DecisionBuilder(execution, status, now, policy, jobs)
    if status.phase is None:
        step.begin()
    reason, message = refusal
    step.fail(RunOutcome.NOT_STARTED, reason, f"the Job of run {index} was refused: {message}")
    return step.build()


class _DecisionBuilder:
    """Accumulates the effects of one decision on a copy of the status."""

    def __init__(
        self,
        execution: models.ScheduledExecution,
        status: models.ScheduledExecutionStatus,
        now: datetime,
        policy: Policy,
        jobs: Collection[str] = (),
    ):
        self.execution = execution
        self.jobs = jobs
        self.status = status
        self.now = now
        self.policy = policy
        self.start: StartRun | None = None
        self.delete_job: str | None = None
        self.delete_execution = False
        self.events: list[Event] = []
        self.queued = False
        self.wake_at: datetime | None = None
        self.look_again_at: datetime | None = None
        self.result_config_map: dict[str, Any] | None = None

    def build(self) -> Decision:
        phase = self.status.phase
        assert phase is not None
        if phase.finished:
            kept = _retained_job(self.execution.metadata.name, self.status, self.policy)
            ends = [t for t in (self._ttl_expiry(), kept and kept[1]) if t is not None and t > self.now]
            self.wake_at = min(ends, default=self._ttl_expiry())
        elif self.status.current_run is not None:
            self.wake_at = min(
                t for t in (self._overdue_at(), self.status.deadline, self.look_again_at) if t is not None
            )
        elif self.queued:
            self.wake_at = self.status.deadline
        else:
            self.wake_at = min(t for t in (self.status.next_run_at, self.status.deadline) if t is not None)
        self._set_conditions()
        self.status.observed_generation = self.execution.metadata.generation
        return Decision(
            status=self.status,
            start_run=self.start,
            delete_job=self.delete_job,
            strays=self.strays(),
            delete_execution=self.delete_execution,
            wake_at=self.wake_at,
            events=self.events,
            queued=self.queued,
            result_config_map=self.result_config_map,
        )

    def strays(self) -> tuple[str, ...]:
        """The execution's Jobs that no run needs, once the status is decided: all but the one it keeps."""
        keep = _kept_job(self.execution.metadata.name, self.status, self.policy)
        return tuple(job for job in self.jobs if job not in (keep, self.delete_job))

    def begin(self) -> None:
        spec = self.execution.spec
        started = self.now  # the operator's clock, like every time the deadlines are compared with
        self.status.phase = Phase.PENDING
        self.status.started_at = started
        self.status.deadline = started + timedelta(seconds=spec.timeout_seconds)
        self.status.next_run_at = started
        self.status.next_args = dict(spec.args)

    def start_if_due(self, slot_free: bool) -> None:
        status = self.status
        if status.next_run_at is not None and self.now < status.next_run_at:
            return
        if self._args_too_large():
            return
        if not slot_free:
            if not self._was_queued():
                self._event(EventType.NORMAL, Reason.QUEUED, "waiting for a free run slot (operator concurrency limit)")
            status.phase = Phase.PENDING
            self.queued = True
            return
        index = status.runs + 1
        self.start = StartRun(index=index, args=dict(status.next_args or {}), method=status.next_method)
        status.phase = Phase.RUNNING
        status.current_run = models.CurrentRun(
            index=index,
            job=runs.job_name(self.execution.metadata.name, index),
            started_at=self.now,
            method=status.next_method,
        )
        status.next_run_at = None
        status.items_remaining = None
        self._event(EventType.NORMAL, Reason.RUN_STARTED, f"run {index} started as Job {status.current_run.job}")

    def _args_too_large(self) -> bool:
        """Fail, before any Job exists, when the next run's args cannot reach it (see contract.MAX_ARGS_BYTES)."""
        index = self.status.runs + 1
        named = "spec.args" if index == 1 else f"the args run {index - 1} scheduled for run {index}"
        # screened before the store keeps them (screening.py); checked here too, so decide is safe on its own
        problem = bounds.problem(self.status.next_args or {}, named)
        if problem is not None:
            self.fail(RunOutcome.STOPPED, Reason.INVALID_SPEC if index == 1 else Reason.INVALID_ENVELOPE, problem)
            return True
        size = runs.args_size(self.status.next_args or {})
        if size <= contract.MAX_ARGS_BYTES:
            return False
        self.fail(RunOutcome.STOPPED, Reason.ARGS_TOO_LARGE, runs.args_too_large(f"{named} are", size))
        return True

    def watch_start(self, run: runs.RunObservation) -> None:
        """An active run: fail it if its pod cannot start (runs.judge_start), else show why it waits, if it does."""
        current = self.status.current_run
        assert current is not None
        verdict = runs.judge_start(
            run.waiting, self.now, self.policy.start_failure_grace_seconds, self.policy.unschedulable_grace_seconds
        )
        waiting = run.waiting
        if verdict.failure is not None and waiting is not None:
            self.fail(RunOutcome.NOT_STARTED, verdict.failure.value, self._start_failure(verdict.failure, waiting), run)
            return
        current.waiting = (
            models.RunWaiting(reason=waiting.reason, message=waiting.message[: models.WAITING_MESSAGE_LIMIT])
            if verdict.shown and waiting is not None
            else None
        )
        self.look_again_at = verdict.look_again_at

    def _start_failure(self, failure: runs.StartFailure, waiting: runs.PodWaiting) -> str:
        current = self.status.current_run
        assert current is not None
        policy, spec = self.policy, self.execution.spec
        detail = waiting.message[: models.WAITING_MESSAGE_LIMIT]
        cause = f"{waiting.reason}: {detail}" if detail else waiting.reason
        if failure is runs.StartFailure.IMAGE_PULL:
            what = f"its image {waiting.image!r} cannot be pulled"
            if waiting.reason not in runs.FAILS_AT_ONCE:
                what += f" (still failing {policy.start_failure_grace_seconds}s after the pod was scheduled)"
        elif failure is runs.StartFailure.CONFIG:
            what = (
                "its container cannot be set up "
                f"(still failing {policy.start_failure_grace_seconds}s after the pod was scheduled)"
            )
            if spec.credentials_secret_ref is not None:
                what += f"; spec.credentialsSecretRef names the Secret {spec.credentials_secret_ref.name!r}"
        else:
            what = f"no node accepted its pod for {policy.unschedulable_grace_seconds}s"
        return f"run {current.index} could not start: {what}: {cause}"

    def record_outcome(self, run: runs.RunObservation) -> None:
        current = self.status.current_run
        assert current is not None
        outcome = run.envelope
        if outcome is None:
            self._record_failure(run)
            return
        if isinstance(outcome, envelopes.Done):
            self._close_run(RunOutcome.DONE, run)
            self._keep_result(outcome.result)
            self.status.partial_result = None
            self._finish(Phase.SUCCEEDED, None)
            self._event(EventType.NORMAL, Reason.SUCCEEDED, f"run {current.index} returned the result")
        elif isinstance(outcome, envelopes.Failure):
            self._close_run(RunOutcome.ERROR, run, outcome.reason)
            self._finish(Phase.FAILED, ExecutionError(reason=outcome.reason, message=clip(outcome.message)))
            self._event(EventType.WARNING, outcome.reason, f"run {current.index} failed: {outcome.message}")
        elif self.status.runs + 1 >= self.execution.spec.max_runs:
            self._close_run(RunOutcome.SCHEDULED, run, Reason.MAX_RUNS_EXCEEDED)
            self._show_partial(outcome)
            message = f"run {current.index} scheduled another run, but spec.maxRuns is {self.execution.spec.max_runs}"
            self._finish(Phase.FAILED, ExecutionError(reason=Reason.MAX_RUNS_EXCEEDED, message=message))
            self._event(EventType.WARNING, Reason.MAX_RUNS_EXCEEDED, message)
        else:
            self._schedule(outcome, run)

    def _schedule(self, outcome: envelopes.Schedule, run: runs.RunObservation) -> None:
        """The run scheduled another (XSOAR's ScheduledCommand): when, with which args and command, and
        possibly a shorter sequence timeout; a wait below the minimum interval is raised to it, and says so."""
        current, status, spec = self.status.current_run, self.status, self.execution.spec
        assert current is not None
        requested = outcome.next_run_in_seconds
        delay = max(requested, self.policy.min_interval_seconds)
        self._close_run(
            RunOutcome.SCHEDULED, run, requested_next_run_in_seconds=requested if delay > requested else None
        )
        status.phase = Phase.WAITING
        status.next_run_at = self.now + timedelta(seconds=delay)
        status.next_args = outcome.args
        if outcome.command is not None:
            status.next_method = None if outcome.command == spec.method else outcome.command
        if outcome.timeout_in_seconds is not None and status.started_at is not None:
            seconds = min(outcome.timeout_in_seconds, spec.timeout_seconds)
            status.deadline = status.started_at + timedelta(seconds=seconds)
        status.items_remaining = outcome.items_remaining
        self._show_partial(outcome)
        if delay > requested:
            self._event(
                EventType.NORMAL,
                Reason.POLL_INTERVAL_RAISED,
                f"run {current.index} asked for its next run in {requested}s; "
                f"raised to the minimum interval of {delay}s",
            )
        what = f" ({status.next_method})" if status.next_method else ""
        self._event(
            EventType.NORMAL, Reason.RUN_SCHEDULED, f"run {current.index} asked for another run{what} in {delay}s"
        )

    def _show_partial(self, outcome: envelopes.Schedule) -> None:
        """Show the partial result a schedule reported, if it reported one (else the one shown stays)."""
        if outcome.partial_result is not envelopes.ABSENT:
            self.status.partial_result = bounded_partial(outcome.partial_result)

    def _keep_result(self, result: Any) -> None:
        """In the status if small, else in a ConfigMap the status names (etcd objects are capped at 1.5 MiB,
        and every watcher of executions receives the whole object on every change)."""
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode("utf-8")) <= self.policy.inline_result_bytes:
            self.status.result = result
            return
        self.result_config_map, self.status.result_ref = runs.result_config_map(self.execution, text)

    def _record_failure(self, run: runs.RunObservation) -> None:
        """The run ended without a valid envelope: the pod died or wrote garbage."""
        reason: str
        if run.envelope_problem is not None and run.state is runs.RunState.SUCCEEDED:
            reason, what = Reason.INVALID_ENVELOPE, f"reported an invalid outcome: {run.envelope_problem}"
        elif run.failure_reason == runs.JOB_FAILED_BY_POLICY:
            reason, what = Reason.RUN_DISRUPTED, "was disrupted (its pod was evicted, preempted or lost its node)"
        elif run.failure_reason == runs.JOB_DEADLINE_EXCEEDED:
            reason, what = (
                Reason.RUN_TIMED_OUT,
                f"exceeded spec.runTimeoutSeconds ({self.execution.spec.run_timeout_seconds}s)",
            )
        else:
            reason = run.failure_reason or Reason.RUN_FAILED
            what = f"died without reporting an outcome after {self.execution.spec.retries} retries"
        current = self.status.current_run
        assert current is not None
        detail = f": {run.failure_message}" if run.failure_message else ""
        keep = _retains_failed_runs(self.policy) and run.state is not runs.RunState.MISSING
        if self.policy.log_tail_in_status and run.log_tail:
            detail += f": {run.log_tail}"
        elif keep:
            namespace = self.execution.metadata.namespace
            detail += (
                f" (its log: kubectl logs -n {namespace} job/{current.job}; "
                f"kept for {self.policy.failed_run_retention_seconds}s)"
            )
        self.fail(RunOutcome.LOST, reason, f"run {current.index} {what}{detail}", run)
        if keep:
            self.delete_job = None  # kept for its logs: after_finish deletes it when the retention ends

    def fail_if_overdue(self, run: runs.RunObservation) -> None:
        """The watchdog: stop a run that nothing ended well past its run timeout."""
        current, spec = self.status.current_run, self.execution.spec
        assert current is not None
        if self.now < self._overdue_at():
            return
        self.fail(
            RunOutcome.STOPPED,
            Reason.RUN_OVERDUE,
            f"run {current.index} did not finish within spec.runTimeoutSeconds ({spec.run_timeout_seconds}s) "
            f"and {self.policy.overdue_grace_seconds}s of grace; its Job was stopped "
            "(is the Job controller running, and a node for its pod?)",
            run,
        )

    def _overdue_at(self) -> datetime:
        current = self.status.current_run
        assert current is not None
        return current.started_at + timedelta(
            seconds=self.execution.spec.run_timeout_seconds + self.policy.overdue_grace_seconds
        )

    def fail(self, outcome: RunOutcome, reason: str, message: str, run: runs.RunObservation | None = None) -> None:
        self._close_run(outcome, run, reason)
        self.fail_with(Phase.FAILED, reason, message)

    def stop(self, phase: Phase, reason: str, message: str) -> None:
        """End a sequence that is still going: stop its running run, keep the partial result."""
        if self.status.current_run is not None:
            self._close_run(RunOutcome.STOPPED, None, reason)
        self.fail_with(phase, reason, message)

    def fail_with(self, phase: Phase, reason: str, message: str) -> None:
        """End in `phase` (not Succeeded) with the error `reason`: `message` clipped for the status."""
        self._finish(phase, ExecutionError(reason=reason, message=clip(message)))
        self._event(EventType.WARNING, reason, message)

    def after_finish(self, run: runs.RunObservation) -> Decision:
        if (expiry := self._ttl_expiry()) is not None and self.now >= expiry:
            self.delete_execution = True
        kept = _retained_job(self.execution.metadata.name, self.status, self.policy)
        if kept is not None and self.now >= kept[1] and run.state is not runs.RunState.MISSING:
            self.delete_job = kept[0]
        return self.build()

    def _close_run(
        self,
        outcome: RunOutcome,
        run: runs.RunObservation | None,
        reason: str | None = None,
        requested_next_run_in_seconds: int | None = None,
    ) -> None:
        current = self.status.current_run
        if current is None:
            return
        record = RunRecord(
            index=current.index,
            outcome=outcome,
            started_at=current.started_at,
            finished_at=self.now,
            exit_code=None if run is None else run.exit_code,
            reason=reason,
            method=current.method,
            attempts=None if run is None else run.attempts,
            requested_next_run_in_seconds=requested_next_run_in_seconds,
        )
        self.status.history = [*self.status.history, record][-models.HISTORY_LIMIT :]
        self.status.runs = max(self.status.runs, current.index)
        if run is None or run.state is not runs.RunState.MISSING:
            self.delete_job = current.job
        self.status.current_run = None

    def _finish(self, phase: Phase, error: ExecutionError | None) -> None:
        self.status.phase = phase
        self.status.error = error
        self.status.completed_at = self.now
        self.status.next_run_at = None
        self.status.next_args = None
        self.status.next_method = None
        self.status.items_remaining = None

    def _ttl_expiry(self) -> datetime | None:
        ttl = self.execution.spec.ttl_seconds_after_finished
        if ttl is None or self.status.completed_at is None:
            return None
        return self.status.completed_at + timedelta(seconds=ttl)  # at most MAX_TTL_SECONDS: the model says so

    def _was_queued(self) -> bool:
        return any(
            c.type == ConditionType.SUCCEEDED and c.reason == Reason.QUEUED for c in self.execution.status.conditions
        )

    def _event(self, type_: EventType, reason: str, message: str) -> None:
        posted = self.policy.progress_events or reason not in PROGRESS
        self.events.append(Event(type_, reason, clip(message, EVENT_MESSAGE_LIMIT), posted))

    def _set_conditions(self) -> None:
        phase = self.status.phase
        assert phase is not None
        succeeded = self._succeeded_condition(phase)
        ended = phase.finished
        failed = ended and phase is not Phase.SUCCEEDED
        _, reason, message = succeeded
        kept = "the execution has not ended"
        values = {
            ConditionType.SUCCEEDED: succeeded,
            ConditionType.FINISHED: (
                (ConditionStatus.TRUE, phase.value, f"the execution ended {phase.value}")
                if ended
                else (ConditionStatus.FALSE, Reason.IN_PROGRESS, kept)
            ),
            ConditionType.TIMED_OUT: (
                (ConditionStatus.TRUE, Reason.TIMEOUT, message)
                if phase is Phase.TIMED_OUT
                else (ConditionStatus.FALSE, Reason.WITHIN_DEADLINE, f"deadline {_iso(self.status.deadline)}")
            ),
            ConditionType.READY: succeeded if ended else (ConditionStatus.UNKNOWN, Reason.IN_PROGRESS, message),
            ConditionType.RECONCILING: (
                (ConditionStatus.FALSE, Reason.ENDED, f"the execution ended {phase.value}")
                if ended
                else (ConditionStatus.TRUE, reason, message)
            ),
            ConditionType.STALLED: (
                (ConditionStatus.TRUE, reason, message) if failed else (ConditionStatus.FALSE, Reason.IN_PROGRESS, kept)
            ),
        }
        if ended and not failed:
            values[ConditionType.STALLED] = (ConditionStatus.FALSE, Reason.DONE, "the execution returned its result")
        for type_, (state, why, detail) in values.items():
            self.status.conditions = set_condition(
                self.status.conditions, type_, state, why, detail, self.now, self.execution.metadata.generation
            )

    def _succeeded_condition(self, phase: Phase) -> tuple[ConditionStatus, str, str]:
        """The Succeeded condition: the execution's outcome, or the progress of its sequence."""
        error = self.status.error
        if phase is Phase.SUCCEEDED:
            return (ConditionStatus.TRUE, Reason.DONE, "the execution returned its result")
        if phase.finished:
            assert error is not None
            return (ConditionStatus.FALSE, error.reason, error.message)
        current = self.status.current_run
        if current is not None and current.waiting is not None:
            waiting = current.waiting
            message = f"run {current.index} is waiting to start: {waiting.reason}"
            return (
                ConditionStatus.UNKNOWN,
                waiting.reason,
                f"{message}: {waiting.message}" if waiting.message else message,
            )
        return (ConditionStatus.UNKNOWN, Reason.QUEUED if self.queued else phase.value, _progress(self.status))


def _timeout_message(execution: models.ScheduledExecution, status: models.ScheduledExecutionStatus) -> str:
    spec_timeout = execution.spec.timeout_seconds
    if status.deadline is None or status.started_at is None:
        return f"the sequence exceeded its timeout of {spec_timeout}s"
    seconds = round((status.deadline - status.started_at).total_seconds())
    if seconds < spec_timeout:
        return f"the sequence exceeded the timeout of {seconds}s that a run set (timeoutInSeconds)"
    return f"the sequence exceeded its timeout of {spec_timeout}s"


def _progress(status: models.ScheduledExecutionStatus) -> str:
    if status.current_run is not None:
        return f"run {status.current_run.index} is running"
    if status.phase is Phase.WAITING:
        return f"run {status.runs + 1} starts at {_iso(status.next_run_at)}"
    return f"run {status.runs + 1} is pending"


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """`conditions` with `type_` set; lastTransitionTime moves only when status flips."""
    existing = next((c for c in conditions if c.type == type_), None)
    transition = existing.last_transition_time if existing is not None and existing.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=clip(message),
        last_transition_time=transition,
        observed_generation=generation,
    )
    return (
        [c for c in conditions if c.type != type_] + [updated]
        if existing is None
        else [updated if c.type == type_ else c for c in conditions]
    )
