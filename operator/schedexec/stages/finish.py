"""Ending: the watchdog of an overdue run, the sequence's timeout message, what an ended execution still
waits for (its TTL), and when a decision needs another look (a Job kept for its log going, too)."""

from __future__ import annotations

from datetime import datetime

from schedexec import models, runs
from schedexec.models import Reason, RunOutcome
from schedexec.stages import jobs
from schedexec.stages.step import Step


def fail_if_overdue(step: Step, run: runs.RunObservation) -> None:
    """The watchdog: stop a run that nothing ended well past its run timeout."""
    current, spec = step.status.current_run, step.execution.spec
    assert current is not None
    overdue_at = step.overdue_at()
    if run.suspended or overdue_at is None or step.now < overdue_at:
        return  # a suspended Job runs nothing: Kueue queues it (or preempted it), the sequence deadline bounds it
    step.fail(
        RunOutcome.STOPPED,
        Reason.RUN_OVERDUE,
        f"run {current.index} did not finish within spec.runTimeoutSeconds ({spec.run_timeout}s) "
        f"and {step.policy.overdue_grace_seconds}s of grace{' after Kueue admitted it' if current.admitted_at else ''}"
        "; its Job was stopped "
        "(is the Job controller running, and a node for its pod?)",
        run,
    )


def after_finish(step: Step) -> None:
    """An execution that ended: deleted once its TTL is over (its runs' Jobs kept for their logs go when their
    retention ends: stages.jobs, or with the execution)."""
    if (expiry := step.ttl_expiry()) is not None and step.now >= expiry:
        step.delete_execution = True


def wake_at(step: Step) -> datetime | None:
    """When the decided execution needs another look: an ended one at its TTL, a run at its watchdog, deadline
    or next look at its pod, a queued one at its deadline (a free slot wakes it), a waiting one at its next
    run; any of them sooner when a Job kept for its log is due to go (stages.jobs)."""
    phase = step.status.phase
    assert phase is not None
    retention_ends = jobs.next_retention_end(step)
    if phase.finished:
        ends = [t for t in (step.ttl_expiry(), retention_ends) if t is not None and t > step.now]
        return min(ends, default=step.ttl_expiry())
    moments: tuple[datetime | None, ...]
    if step.status.current_run is not None:
        moments = (step.overdue_at(), step.status.deadline, step.look_again_at, retention_ends)
    elif step.queued:
        moments = (step.status.deadline, retention_ends)
    else:
        moments = (step.status.next_run_at, step.status.deadline, retention_ends)
    return min(t for t in moments if t is not None)


def timeout_message(execution: models.ScheduledExecution, status: models.ScheduledExecutionStatus) -> str:
    spec_timeout = execution.spec.timeout_seconds
    if status.deadline is None or status.started_at is None:
        return f"the sequence exceeded its timeout of {spec_timeout}s"
    seconds = round((status.deadline - status.started_at).total_seconds())
    if seconds < spec_timeout:
        return f"the sequence exceeded the timeout of {seconds}s that a run set (timeoutInSeconds)"
    return f"the sequence exceeded its timeout of {spec_timeout}s"
