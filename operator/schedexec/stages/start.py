"""Starting runs: begin a sequence, start the next run when it is due (or queue it for a slot, or fail it
when its args cannot reach it or its resources are above the operator's maximum), follow its Job's admission
by Kueue (Queued while suspended), and watch its pod start (fail a pod that cannot, starts.judge_start).

Run slots and Kueue: a run whose Job waits, suspended, in a Kueue LocalQueue holds its operator run slot
(SCHEDEXEC_MAX_RUNNING) like any run in progress. The slot bounds the Jobs the operator keeps outstanding and
watches, and a run is started (its Job created) before anyone knows when Kueue admits it; so with Kueue doing
the queueing, set SCHEDEXEC_MAX_RUNNING above what the LocalQueues admit at once, or executions that use no
queue wait behind suspended Jobs (docs/kueue.md).

A run whose pod cannot start (ImagePullFailed, ConfigError, Unschedulable) fails the execution and does not
consume spec.retries: the kubelet (or scheduler) already retried during the grace, and a new pod of the same
immutable spec would fail the same way. Retries are for pods that started and died.
"""

from __future__ import annotations

from datetime import timedelta

from schedexec import manifests, models, runs, starts
from schedexec.models import ConditionType, EventType, Phase, Reason, RunOutcome
from schedexec.stages import conditions
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
    if _args_too_large(step) or _resources_over_maximum(step):
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
    queue = step.execution.queue
    status.phase = Phase.RUNNING if queue is None else Phase.PENDING
    status.current_run = models.CurrentRun(
        index=index,
        job=job,
        started_at=step.now,
        due_at=status.next_run_at,
        method=status.next_method,
        queue=queue,
        suspended=queue is not None or None,  # its Job is created suspended, for Kueue to admit (manifests)
    )
    status.next_run_at = None
    status.items_remaining = None
    step.event(EventType.NORMAL, Reason.RUN_STARTED, f"run {index} started as Job {status.current_run.job}")
    if queue is not None:
        step.event(EventType.NORMAL, Reason.QUEUED, conditions.queued_message(status.current_run))


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


def _resources_over_maximum(step: Step) -> bool:
    """Fail, before any Job exists, when the run's container would ask for more than the operator allows
    (SCHEDEXEC_MAX_RUN_RESOURCES); every run of the execution has the same resources."""
    policy = step.policy
    if not policy.max_run_resources:
        return False
    problem = manifests.resources_over(
        step.execution.spec.component.resources, policy.default_run_resources, policy.max_run_resources
    )
    if problem is None:
        return False
    step.fail(RunOutcome.NOT_STARTED, Reason.RESOURCES_EXCEED_MAXIMUM, problem)
    return True


def _was_queued(step: Step) -> bool:
    """Whether the execution was waiting for a run slot already (not for Kueue: a run of its own then)."""
    return step.execution.status.current_run is None and any(
        c.type == ConditionType.SUCCEEDED and c.reason == Reason.QUEUED for c in step.execution.status.conditions
    )


def watch(step: Step, run: runs.RunObservation) -> None:
    """An active run: Queued while its Job is suspended (`_follow_admission`); else fail it if its pod cannot
    start (starts.judge_start), else show why it waits, if it does."""
    current = step.status.current_run
    assert current is not None
    if _follow_admission(step, run):
        return
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


def _follow_admission(step: Step, run: runs.RunObservation) -> bool:
    """Follow the suspension of the run's Job (docs/kueue.md); True while it is suspended.

    A suspended Job runs nothing: the run is Queued (phase Pending), posted once when it becomes so (its Job
    created suspended, or suspended again: Kueue preempted it, and its pod was deleted). When the Job is seen
    unsuspended (Kueue admitted it), the run runs from now: admittedAt, from which the watchdog counts, as the
    Job controller counts activeDeadlineSeconds from the Job's resume."""
    current = step.status.current_run
    assert current is not None
    if run.suspended:
        if not current.suspended:
            current.suspended = True
            current.admitted_at = None
            current.queue = current.queue or run.queue
            step.event(EventType.NORMAL, Reason.QUEUED, conditions.queued_message(current))
        current.waiting = None
        step.status.phase = Phase.PENDING
        return True
    if current.suspended:
        current.suspended = None
        current.admitted_at = step.now
        step.status.phase = Phase.RUNNING
        where = f" from LocalQueue {current.queue}" if current.queue else ""
        step.event(
            EventType.NORMAL, Reason.RUN_ADMITTED, f"run {current.index}'s Job {current.job} was admitted{where}"
        )
    return False


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
