"""Which of an execution's Jobs a run needs, and so which a decision deletes (the strays).

One Job at most is kept: the current run's; while the sequence waits, the next run's (made before a crash,
it is adopted when due, never deleted and made again; adopted only if it is the Job the operator makes for that
run, manifests.made_for: one planted under its name with the execution as owner fails the run, JobNameTaken);
once the execution ended, the last run's while it is kept for its logs (Policy.failed_run_retention_seconds).
Every other Job of the execution goes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from schedexec.models import Reason, RunOutcome
from schedexec.stages.step import Policy, Step


def retains_failed_runs(policy: Policy) -> bool:
    return policy.failed_run_retention_seconds > 0 and not policy.log_tail_in_status


def retained_job(step: Step) -> tuple[str, datetime] | None:
    """The Job of the execution's last run if it is kept for its logs (the execution finished because that
    run died without an outcome), and until when; None if there is none."""
    status, policy = step.status, step.policy
    last = status.history[-1] if status.history else None
    finished = status.phase is not None and status.phase.finished
    if not finished or last is None or last.outcome is not RunOutcome.LOST or status.completed_at is None:
        return None
    if not retains_failed_runs(policy) or last.reason == Reason.RUN_LOST:
        return None
    return step.run_job(last.index), status.completed_at + timedelta(seconds=policy.failed_run_retention_seconds)


def kept_job(step: Step) -> str | None:
    """The one Job of the execution that is no stray: the current run's; while the sequence goes on
    without one, the next run's (a previous operator, or leader, created it and stopped before the status
    named it: it is that run, adopted when it is due, never deleted and created again); once finished,
    the last run's if it is kept for its logs."""
    status = step.status
    if status.current_run is not None:
        return status.current_run.job
    if status.phase is None or not status.phase.finished:
        return step.run_job(status.runs + 1)
    retained = retained_job(step)
    return None if retained is None else retained[0]


def strays(step: Step) -> tuple[str, ...]:
    """The execution's Jobs that no run needs, once the status is decided: all but the one it keeps."""
    keep = kept_job(step)
    return tuple(job for job in step.jobs if job not in (keep, step.delete_job))
