"""What to do next with an execution: a pure function of the object, its run and the clock.

`decide` is the whole behaviour of the operator. It gets the execution as
last read, what the cluster says about its current run, the time, and
whether a run slot is free, and returns a `Decision`: the status to write,
at most one Job to create or delete, events to post, and when to look again.
The Kopf handlers and the scheduler only carry these out, so every rule
(polling, the minimum interval, the sequence deadline, retries, queueing,
cancellation, TTL) is unit-tested here without a cluster.

Order of effects (see `schedexec.controller`): a run's Job is created before
the status that names it is written, and deleted only after the status that
records its outcome is written. A crash between the two steps is repaired by
the next reconcile, because Job names are deterministic: no run is lost and
no run index executes twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schedexec import models, runs
from schedexec.models import Condition, ConditionStatus, ExecutionError, Phase, RunOutcome, RunRecord
from schedexec_runner import envelope as envelopes

SUCCEEDED = "Succeeded"
"""Unknown while the execution runs (reason Queued, Running or Waiting); True on success;
False with the error's reason on failure, timeout or cancellation."""
FINISHED = "Finished"
"""True once the execution reached a final phase: `kubectl wait --for=condition=Finished`."""
TIMED_OUT = "TimedOut"
"""True when the sequence passed its deadline (spec.timeoutSeconds)."""

CONDITION_TYPES = (SUCCEEDED, FINISHED, TIMED_OUT)

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True)
class Policy:
    """Operator-wide settings the decisions depend on."""

    min_interval_seconds: int = 10
    """Floor for next_run_in_seconds, as in XSOAR."""
    overdue_grace_seconds: int = 60
    """Watchdog: a run still unfinished this long after its run timeout is stopped and failed (RunOverdue).
    The Job controller normally ends it at the timeout; this catches a run whose Job nobody ends
    (controller or node down, pod never scheduled), so no execution stays Running until its sequence deadline."""


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class StartRun:
    index: int
    args: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    status: models.ScheduledExecutionStatus
    start_run: StartRun | None = None
    delete_job: str | None = None
    """A Job to delete: the finished run's (cleanup) or the running one (timeout, cancel)."""
    delete_execution: bool = False
    wake_at: datetime | None = None
    events: list[Event] = field(default_factory=list)
    queued: bool = False
    """Due to start a run, but no run slot is free."""


def decide(
    execution: models.ScheduledExecution,
    run: runs.RunObservation,
    now: datetime,
    slot_free: bool,
    policy: Policy = Policy(),
) -> Decision:
    """The next step for `execution`, given its current `run` (MISSING if none)."""
    status = execution.status.model_copy(deep=True)
    step = _Step(execution, status, now, policy)
    if status.phase is not None and status.phase.finished:
        return step.after_finish(run)
    if status.phase is None:
        step.begin()
    if status.current_run is not None and run.state.finished:
        step.record_outcome(run)
    elif status.current_run is not None and run.state is runs.RunState.MISSING:
        step.fail(
            RunOutcome.LOST,
            "RunLost",
            f"the Job {status.current_run.job} of run "
            f"{status.current_run.index} disappeared before it reported an outcome",
        )
    if not status.phase.finished and execution.spec.cancel:  # type: ignore[union-attr]
        step.stop(Phase.CANCELLED, "Cancelled", "spec.cancel was set")
    if not status.phase.finished and status.deadline is not None and now >= status.deadline:  # type: ignore[union-attr]
        step.stop(Phase.TIMED_OUT, "Timeout", f"the sequence exceeded its timeout of {execution.spec.timeout_seconds}s")
    if not status.phase.finished and status.current_run is not None:  # type: ignore[union-attr]
        step.fail_if_overdue(run)
    if not status.phase.finished and status.current_run is None:  # type: ignore[union-attr]
        step.start_if_due(slot_free)
    return step.decision()


class _Step:
    """Accumulates the effects of one decision on a copy of the status."""

    def __init__(
        self,
        execution: models.ScheduledExecution,
        status: models.ScheduledExecutionStatus,
        now: datetime,
        policy: Policy,
    ):
        self.execution = execution
        self.status = status
        self.now = now
        self.policy = policy
        self.start: StartRun | None = None
        self.delete_job: str | None = None
        self.delete_execution = False
        self.events: list[Event] = []
        self.queued = False
        self.wake_at: datetime | None = None

    def decision(self) -> Decision:
        phase = self.status.phase
        assert phase is not None
        if phase.finished:
            self.wake_at = self._ttl_expiry()
        elif self.status.current_run is not None:
            overdue = self._overdue_at()
            self.wake_at = overdue if self.status.deadline is None else min(overdue, self.status.deadline)
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
            delete_execution=self.delete_execution,
            wake_at=self.wake_at,
            events=self.events,
            queued=self.queued,
        )

    def begin(self) -> None:
        spec = self.execution.spec
        started = self.execution.metadata.creation_timestamp or self.now
        self.status.phase = Phase.PENDING
        self.status.started_at = started
        self.status.deadline = started + timedelta(seconds=spec.timeout_seconds)
        self.status.next_run_at = started
        self.status.next_args = dict(spec.args)

    def start_if_due(self, slot_free: bool) -> None:
        status = self.status
        if status.next_run_at is not None and self.now < status.next_run_at:
            return
        if not slot_free:
            if not self._was_queued():
                self._event(NORMAL, "Queued", "waiting for a free run slot (operator concurrency limit)")
            status.phase = Phase.PENDING
            self.queued = True
            return
        index = status.runs + 1
        self.start = StartRun(index=index, args=dict(status.next_args or {}))
        status.phase = Phase.RUNNING
        status.current_run = models.CurrentRun(
            index=index, job=runs.job_name(self.execution.metadata.name, index), started_at=self.now
        )
        status.next_run_at = None
        self._event(NORMAL, "RunStarted", f"run {index} started as Job {status.current_run.job}")

    def record_outcome(self, run: runs.RunObservation) -> None:
        current = self.status.current_run
        assert current is not None
        outcome = run.envelope
        if outcome is None:
            self._record_failure(run)
            return
        kind = outcome["outcome"]
        if kind == envelopes.DONE:
            self._close_run(RunOutcome.DONE, run)
            self.status.result = outcome["result"]
            self.status.partial_result = None
            self._finish(Phase.SUCCEEDED, None)
            self._event(NORMAL, "Succeeded", f"run {current.index} returned the result")
        elif kind == envelopes.ERROR:
            self._close_run(RunOutcome.ERROR, run, outcome["reason"])
            self._finish(Phase.FAILED, ExecutionError(reason=outcome["reason"], message=outcome["message"]))
            self._event(WARNING, outcome["reason"], f"run {current.index} failed: {outcome['message']}")
        elif self.status.runs + 1 >= self.execution.spec.max_runs:
            self._close_run(RunOutcome.SCHEDULED, run, "MaxRunsExceeded")
            self.status.partial_result = outcome.get("partialResult", self.status.partial_result)
            message = f"run {current.index} scheduled another run, but spec.maxRuns is {self.execution.spec.max_runs}"
            self._finish(Phase.FAILED, ExecutionError(reason="MaxRunsExceeded", message=message))
            self._event(WARNING, "MaxRunsExceeded", message)
        else:
            self._close_run(RunOutcome.SCHEDULED, run)
            delay = max(outcome["nextRunInSeconds"], self.policy.min_interval_seconds)
            self.status.phase = Phase.WAITING
            self.status.next_run_at = self.now + timedelta(seconds=delay)
            self.status.next_args = outcome["args"]
            if "partialResult" in outcome:
                self.status.partial_result = outcome["partialResult"]
            self._event(NORMAL, "RunScheduled", f"run {current.index} asked for another run in {delay}s")

    def _record_failure(self, run: runs.RunObservation) -> None:
        """The run ended without a valid envelope: the pod died or wrote garbage."""
        if run.envelope_problem is not None and run.state is runs.RunState.SUCCEEDED:
            reason, what = "InvalidEnvelope", f"reported an invalid outcome: {run.envelope_problem}"
        elif run.failure_reason == "DeadlineExceeded":
            reason, what = (
                "RunTimedOut",
                f"exceeded spec.runTimeoutSeconds ({self.execution.spec.run_timeout_seconds}s)",
            )
        else:
            reason = run.failure_reason or "RunFailed"
            what = f"died without reporting an outcome after {self.execution.spec.retries} retries"
        detail = f": {run.failure_message}" if run.failure_message else ""
        self.fail(RunOutcome.LOST, reason, f"run {self.status.current_run.index} {what}{detail}", run)  # type: ignore[union-attr]

    def fail_if_overdue(self, run: runs.RunObservation) -> None:
        """The watchdog: stop a run that nothing ended well past its run timeout."""
        current, spec = self.status.current_run, self.execution.spec
        assert current is not None
        if self.now < self._overdue_at():
            return
        self.fail(
            RunOutcome.STOPPED,
            "RunOverdue",
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
        self._finish(Phase.FAILED, ExecutionError(reason=reason, message=message))
        self._event(WARNING, reason, message)

    def stop(self, phase: Phase, reason: str, message: str) -> None:
        """End a sequence that is still going: stop its running run, keep the partial result."""
        if self.status.current_run is not None:
            self._close_run(RunOutcome.STOPPED, None, reason)
        self._finish(phase, ExecutionError(reason=reason, message=message))
        self._event(WARNING, reason, message)

    def after_finish(self, run: runs.RunObservation) -> Decision:
        if (expiry := self._ttl_expiry()) is not None and self.now >= expiry:
            self.delete_execution = True
        return self.decision()

    def _close_run(self, outcome: RunOutcome, run: runs.RunObservation | None, reason: str | None = None) -> None:
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

    def _ttl_expiry(self) -> datetime | None:
        ttl = self.execution.spec.ttl_seconds_after_finished
        if ttl is None or self.status.completed_at is None:
            return None
        return self.status.completed_at + timedelta(seconds=ttl)

    def _was_queued(self) -> bool:
        return any(c.type == SUCCEEDED and c.reason == "Queued" for c in self.execution.status.conditions)

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def _set_conditions(self) -> None:
        phase = self.status.phase
        assert phase is not None
        error = self.status.error
        if phase is Phase.SUCCEEDED:
            succeeded = (ConditionStatus.TRUE, "Done", "the execution returned its result")
        elif phase.finished:
            assert error is not None
            succeeded = (ConditionStatus.FALSE, error.reason, error.message)
        else:
            reason = "Queued" if self.queued else phase.value
            succeeded = (ConditionStatus.UNKNOWN, reason, _progress(self.status))
        finished = (
            (ConditionStatus.TRUE, phase.value, f"the execution ended {phase.value}")
            if phase.finished
            else (ConditionStatus.FALSE, "InProgress", "the execution has not ended")
        )
        timed_out = (
            (ConditionStatus.TRUE, "Timeout", error.message if error else "")
            if phase is Phase.TIMED_OUT
            else (ConditionStatus.FALSE, "WithinDeadline", f"deadline {_iso(self.status.deadline)}")
        )
        for type_, (state, reason, message) in zip(CONDITION_TYPES, (succeeded, finished, timed_out), strict=True):
            self.status.conditions = set_condition(
                self.status.conditions, type_, state, reason, message, self.now, self.execution.metadata.generation
            )


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
    type_: str,
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
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    return (
        [c for c in conditions if c.type != type_] + [updated]
        if existing is None
        else [updated if c.type == type_ else c for c in conditions]
    )
