"""Starting runs: begin a sequence, start the next run when it is due (or queue it for a slot, or fail it
when its args cannot reach it), and watch its pod start (fail a pod that cannot, starts.judge_start).

A run whose pod cannot start (ImagePullFailed, ConfigError, Unschedulable) fails the execution and does not
consume spec.retries: the kubelet (or scheduler) already retried during the grace, and a new pod of the same
immutable spec would fail the same way. Retries are for pods that started and died.
"""

from __future__ import annotations

from datetime import timedelta

from schedexec import manifests, models, runs, starts
from schedexec.models import ConditionType, EventType, Phase, Reason, RunOutcome
from schedexec.stages.step import StartRun, Step
from schedexec_runner import bounds, contract


def begin(step: Step) -> None:
    """A new sequence: it starts now, ends at spec.timeoutSeconds from now, and its first run is due."""
    spec = step.execution.spec
    started = step.now  # the API server's clock as estimated (clock.py), like every time deadlines are compared with
    step.status.phase = Phase.PENDING
    step.status.started_at = started
    step.status.deadline = started + timedelta(seconds=spec.timeout_seconds)
    step.status.next_run_at = started
    step.status.next_args = dict(spec.args)


def if_due(step: Step, slot_free: bool) -> None:
    """Start the next run if it is due and its args can reach it; wait for a slot if none is free."""
    status = step.status
    if status.next_run_at is not None and step.now < status.next_run_at:
        return
    if _args_too_large(step):
        return
    if not slot_free:
        if not _was_queued(step):
            step.event(EventType.NORMAL, Reason.QUEUED, "waiting for a free run slot (operator concurrency limit)")
        status.phase = Phase.PENDING
        step.queued = True
        return
    index = status.runs + 1
    job = step.run_job(index)  # its Job may exist already (made before a crash): the same name, adopted
    step.start = StartRun(index=index, job=job, args=dict(status.next_args or {}), method=status.next_method)
    status.phase = Phase.RUNNING
    status.current_run = models.CurrentRun(
        index=index,
        job=job,
        started_at=step.now,
        method=status.next_method,
    )
    status.next_run_at = None
    status.items_remaining = None
    step.event(EventType.NORMAL, Reason.RUN_STARTED, f"run {index} started as Job {status.current_run.job}")


def _args_too_large(step: Step) -> bool:
    """Fail, before any Job exists, when the next run's args cannot reach it (see contract.MAX_ARGS_BYTES)."""
    index = step.status.runs + 1
    named = "spec.args" if index == 1 else f"the args run {index - 1} scheduled for run {index}"
    # screened before the store keeps them (screening.py); checked here too, so decide is safe on its own
    problem = bounds.problem(step.status.next_args or {}, named)
    if problem is not None:
        step.fail(RunOutcome.STOPPED, Reason.INVALID_SPEC if index == 1 else Reason.INVALID_ENVELOPE, problem)
        return True
    size = manifests.args_size(step.status.next_args or {})
    if size <= contract.MAX_ARGS_BYTES:
        return False
    step.fail(RunOutcome.STOPPED, Reason.ARGS_TOO_LARGE, manifests.args_too_large(f"{named} are", size))
    return True


def _was_queued(step: Step) -> bool:
    return any(
        c.type == ConditionType.SUCCEEDED and c.reason == Reason.QUEUED for c in step.execution.status.conditions
    )


def watch(step: Step, run: runs.RunObservation) -> None:
    """An active run: fail it if its pod cannot start (starts.judge_start), else show why it waits, if it does."""
    current = step.status.current_run
    assert current is not None
    verdict = starts.judge_start(
        run.waiting, step.now, step.policy.start_failure_grace_seconds, step.policy.unschedulable_grace_seconds
    )
    waiting = run.waiting
    if verdict.failure is not None and waiting is not None:
        step.fail(RunOutcome.NOT_STARTED, verdict.failure.value, _start_failure(step, verdict.failure, waiting), run)
        return
    current.waiting = (
        models.RunWaiting(reason=waiting.reason, message=waiting.message[: models.WAITING_MESSAGE_LIMIT])
        if verdict.shown and waiting is not None
        else None
    )
    step.look_again_at = verdict.look_again_at


def _start_failure(step: Step, failure: starts.StartFailure, waiting: starts.PodWaiting) -> str:
    current = step.status.current_run
    assert current is not None
    policy, spec = step.policy, step.execution.spec
    detail = waiting.message[: models.WAITING_MESSAGE_LIMIT]
    cause = f"{waiting.reason}: {detail}" if detail else waiting.reason
    if failure is starts.StartFailure.IMAGE_PULL:
        what = f"its image {waiting.image!r} cannot be pulled"
        if waiting.reason not in starts.FAILS_AT_ONCE:
            what += f" (still failing {policy.start_failure_grace_seconds}s after the pod was scheduled)"
    elif failure is starts.StartFailure.CONFIG:
        what = (
            "its container cannot be set up "
            f"(still failing {policy.start_failure_grace_seconds}s after the pod was scheduled)"
        )
        if spec.credentials_secret_ref is not None:
            what += f"; spec.credentialsSecretRef names the Secret {spec.credentials_secret_ref.name!r}"
    else:
        what = f"no node accepted its pod for {policy.unschedulable_grace_seconds}s"
    return f"run {current.index} could not start: {what}: {cause}"
