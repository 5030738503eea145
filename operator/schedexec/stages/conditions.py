"""The execution's conditions (Succeeded, Finished, TimedOut, Ready, Reconciling, Stalled), set from the
decided status as Kueue sets its own: lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from datetime import datetime

from schedexec import models
from schedexec.models import Condition, ConditionStatus, ConditionType, Phase, Reason
from schedexec.stages.step import Step, clip


def set_conditions(step: Step) -> None:
    phase = step.status.phase
    assert phase is not None
    succeeded = _succeeded_condition(step, phase)
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
            else (ConditionStatus.FALSE, Reason.WITHIN_DEADLINE, f"deadline {_iso(step.status.deadline)}")
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
        step.status.conditions = set_condition(
            step.status.conditions, type_, state, why, detail, step.now, step.execution.metadata.generation
        )


def _succeeded_condition(step: Step, phase: Phase) -> tuple[ConditionStatus, str, str]:
    """The Succeeded condition: the execution's outcome, or the progress of its sequence."""
    error = step.status.error
    if phase is Phase.SUCCEEDED:
        return (ConditionStatus.TRUE, Reason.DONE, "the execution returned its result")
    if phase.finished:
        assert error is not None
        return (ConditionStatus.FALSE, error.reason, error.message)
    current = step.status.current_run
    if current is not None and current.suspended:
        return (ConditionStatus.UNKNOWN, Reason.QUEUED, queued_message(current))
    if current is not None and current.waiting is not None:
        waiting = current.waiting
        message = f"run {current.index} is waiting to start: {waiting.reason}"
        return (
            ConditionStatus.UNKNOWN,
            waiting.reason,
            f"{message}: {waiting.message}" if waiting.message else message,
        )
    return (ConditionStatus.UNKNOWN, Reason.QUEUED if step.queued else phase.value, _progress(step.status))


def queued_message(current: models.CurrentRun) -> str:
    """Why a run whose Job is suspended does not run: the LocalQueue it waits in."""
    if current.queue is None:
        return f"run {current.index}'s Job {current.job} is suspended (spec.suspend): waiting for it to be resumed"
    return f"waiting for Kueue to admit run {current.index}'s Job {current.job} in LocalQueue {current.queue}"


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
