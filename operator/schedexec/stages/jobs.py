"""Which of an execution's Jobs a run needs, and so which a decision deletes (the strays).

Kept: the current run's Job; while the sequence waits, the next run's (made before a crash, it is adopted when
due, never deleted and made again; adopted only if it is the Job the operator makes for that run,
manifests.made_for: one planted under its name with the execution as owner fails the run, JobNameTaken); and
the Job of every run in status.history until its logsUntil (kept for its log: Step.close_run sets it,
spec.runRetentionSeconds after the outcome was recorded, so a Job is kept only once the status that records
its outcome is written). Every other Job of the execution goes: one whose retention ended, one of a run that
left the history (so at most HISTORY_LIMIT finished pods per execution), one no run made.
"""

from __future__ import annotations

from datetime import datetime

from schedexec.stages.step import Step


def retained_jobs(step: Step) -> dict[str, datetime]:
    """The Jobs of the recorded runs that are still kept for their logs, by name: until when. Only those
    the execution has (a Job deleted already needs no look)."""
    return {
        record.job: record.logs_until
        for record in step.status.history
        if record.job is not None
        and record.logs_until is not None
        and record.logs_until > step.now
        and record.job in step.jobs
    }


def next_retention_end(step: Step) -> datetime | None:
    """When the next kept Job's retention ends: the decision looks again then, to delete it."""
    return min(retained_jobs(step).values(), default=None)


def kept_jobs(step: Step) -> set[str]:
    """The Jobs of the execution that are no strays: the current run's; while the sequence goes on without
    one, the next run's (a previous operator, or leader, created it and stopped before the status named it:
    it is that run, adopted when it is due, never deleted and created again); the recorded runs' whose
    retention has not ended."""
    status = step.status
    kept = set(retained_jobs(step))
    if status.current_run is not None:
        kept.add(status.current_run.job)
    elif status.phase is None or not status.phase.finished:
        kept.add(step.run_job(status.runs + 1))
    return kept


def strays(step: Step) -> tuple[str, ...]:
    """The execution's Jobs that no run needs, once the status is decided: all but those it keeps."""
    keep = kept_jobs(step)
    return tuple(job for job in step.jobs if job not in keep and job != step.delete_job)
