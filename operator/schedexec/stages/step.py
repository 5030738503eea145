"""What every stage of a decision shares: the settings (`Policy`), the step's state and its common moves.

A `Step` holds the copy of the status a decision changes and the effects it gathers (a run to start, the
run's Job to delete, events, ...); its methods close a run, end the sequence and post events, the moves
every stage makes the same way.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schedexec import manifests, models, runs
from schedexec.models import EventType, ExecutionError, Phase, Reason, RunOutcome, RunRecord


@dataclass(frozen=True)
class Policy:
    """Operator-wide settings the decisions depend on.

    No defaults here: each field is the operator setting of the same name, whose default, bounds and meaning
    `settings.OperatorSettings` holds, and `OperatorSettings.policy()` builds it (tests: builders.POLICY)."""

    min_interval_seconds: int
    """Floor for next_run_in_seconds, as in XSOAR."""
    overdue_grace_seconds: int
    """Watchdog: a run still unfinished this long after its run timeout is stopped and failed (RunOverdue).
    The Job controller normally ends it at the timeout; this catches a run whose Job nobody ends
    (controller or node down, pod never scheduled), so no execution stays Running until its sequence deadline."""
    start_failure_grace_seconds: int
    """A run whose scheduled pod keeps failing to pull its image or to create its container (or to mount a
    volume) this long fails (ImagePullFailed, ConfigError); see starts.judge_start."""
    unschedulable_grace_seconds: int
    """A run whose pod the scheduler keeps refusing this long fails (Unschedulable)."""
    log_tail_in_status: bool
    """Copy the end of a crashed run's log into status.error and its Event (opt-in: component output may hold
    anything, credentials included, and status and Events are readable by anyone who may read executions)."""
    run_retention_seconds: int
    """How long a finished run's Job (and pod, and so its log) is kept once its outcome is recorded, unless its
    execution says (spec.runRetentionSeconds); 0: deleted at once."""
    job_ttl_seconds: int
    """The Job controller deletes a finished Job this long after it finished (ttlSecondsAfterFinished): no
    retention is longer."""
    progress_events: bool
    """Post RunStarted, RunScheduled and Succeeded as Kubernetes Events too (they are always logged)."""
    inline_result_bytes: int
    """A result larger than this (its JSON) is kept in a ConfigMap owned by the execution (status.resultRef)."""
    default_run_resources: models.ResourceRequirements | None
    """Requests and limits of each run's container where the execution leaves them unset (manifests.run_resources):
    the run's effective resources, which max_run_resources bounds."""
    max_run_resources: Mapping[str, str]
    """The most of each resource (name → quantity) a run's container may request or be limited to; an execution
    whose run would exceed it fails before its first Job (ResourcesExceedMaximum)."""


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


RETAINED = frozenset({RunOutcome.DONE, RunOutcome.SCHEDULED, RunOutcome.ERROR, RunOutcome.LOST})
"""Outcomes whose run's Job (and pod) is kept for its log (Step.retention_seconds): every run whose pod ended by
itself. A run stopped (a timeout, a cancellation, the watchdog) or that never started has its Job deleted at
once: stopping a pod deletes it, whoever stops it (the Job controller too, at activeDeadlineSeconds or when a
Job is suspended), and its log goes with it."""

PROGRESS = frozenset({Reason.RUN_STARTED, Reason.RUN_ADMITTED, Reason.RUN_SCHEDULED, Reason.SUCCEEDED})
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
    job: str
    """The name of its Job (manifests.run_job)."""
    args: dict[str, Any]
    method: str | None = None
    """The command to run instead of spec.method (a previous run's schedule named it)."""


class Step:
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
        """The names of the execution's Jobs (not being deleted yet)."""
        self.status = status
        self.now = now
        self.policy = policy
        self.start: StartRun | None = None
        self.delete_job: str | None = None
        self.delete_execution = False
        self.events: list[Event] = []
        self.queued = False
        self.look_again_at: datetime | None = None
        self.result_config_map: dict[str, Any] | None = None
        self.context_secret: dict[str, Any] | None = None
        """The Secret keeping the integration context a run left for the next (manifests.xsoar_context_secret)."""

    def fail(self, outcome: RunOutcome, reason: str, message: str, run: runs.RunObservation | None = None) -> None:
        self.close_run(outcome, run, reason)
        self.fail_with(Phase.FAILED, reason, message)

    def stop(self, phase: Phase, reason: str, message: str) -> None:
        """End a sequence that is still going: stop its running run, keep the partial result."""
        if self.status.current_run is not None:
            self.close_run(RunOutcome.STOPPED, None, reason)
        self.fail_with(phase, reason, message)

    def fail_with(self, phase: Phase, reason: str, message: str) -> None:
        """End in `phase` (not Succeeded) with the error `reason`: `message` clipped for the status."""
        self.finish(phase, ExecutionError(reason=reason, message=clip(message)))
        self.event(EventType.WARNING, reason, message)

    def close_run(
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
            due_at=current.due_at,
            finished_at=self.now,
            exit_code=None if run is None else run.exit_code,
            reason=reason,
            method=current.method,
            attempts=None if run is None else run.attempts,
            requested_next_run_in_seconds=requested_next_run_in_seconds,
            job=current.job,
        )
        there = run is None or run.state is not runs.RunState.MISSING
        retention = self.retention_seconds() if outcome in RETAINED and run is not None and there else 0
        if retention > 0:  # kept for its logs: stages.jobs deletes it when logs_until is past
            record.logs_until = self.now + timedelta(seconds=retention)
            record.logs = self.logs_command(current.job)
        elif there:
            self.delete_job = current.job
        self.status.history = [*self.status.history, record][-models.HISTORY_LIMIT :]
        self.status.runs = max(self.status.runs, current.index)
        self.status.current_run = None

    def finish(self, phase: Phase, error: ExecutionError | None) -> None:
        self.status.phase = phase
        self.status.error = error
        self.status.completed_at = self.now
        self.status.next_run_at = None
        self.status.next_args = None
        self.status.next_method = None
        self.status.items_remaining = None
        self.context_secret = None  # an ended sequence has no next run to read a context

    def run_job(self, index: int) -> str:
        """The name of run `index`'s Job: the legacy name if the execution owns a Job of that name (made
        before an upgrade), else this operator's (manifests.run_job)."""
        meta = self.execution.metadata
        return manifests.run_job(meta.name, meta.uid, index, self.jobs)

    def retention_seconds(self) -> int:
        """How long this execution's finished runs keep their Jobs: its spec.runRetentionSeconds, else the
        operator's; never past the Job's own TTL."""
        spec = self.execution.spec.run_retention_seconds
        chosen = self.policy.run_retention_seconds if spec is None else spec
        return min(chosen, self.policy.job_ttl_seconds)

    def logs_command(self, job: str) -> str:
        """The command that shows the log of the run of Job `job` (while it is kept)."""
        return f"kubectl logs -n {self.execution.metadata.namespace} job/{job}"

    def ttl_expiry(self) -> datetime | None:
        ttl = self.execution.spec.ttl_seconds_after_finished
        if ttl is None or self.status.completed_at is None:
            return None
        return self.status.completed_at + timedelta(seconds=ttl)  # at most MAX_TTL_SECONDS: the model says so

    def overdue_at(self) -> datetime | None:
        """When the watchdog stops the current run: its run timeout and the grace after it was admitted (a Job
        created suspended for Kueue: the Job controller counts activeDeadlineSeconds from its resume too), or
        after its Job was created; None while its Job is suspended (only the sequence deadline counts then)."""
        current = self.status.current_run
        assert current is not None
        if current.suspended:
            return None
        return (current.admitted_at or current.started_at) + timedelta(
            seconds=self.execution.spec.run_timeout + self.policy.overdue_grace_seconds
        )

    def event(self, type_: EventType, reason: str, message: str) -> None:
        posted = self.policy.progress_events or reason not in PROGRESS
        self.events.append(Event(type_, reason, clip(message, EVENT_MESSAGE_LIMIT), posted))
