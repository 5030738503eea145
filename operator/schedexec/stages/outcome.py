"""Recording the outcome of a run that ended: its result (done), the next run it asked for (schedule), its
error, or none at all (the pod died, wrote garbage, or its Job disappeared).

A schedule's XSOAR integration context (envelopes.Schedule.context: it may hold tokens) goes only into the
Secret the decision keeps it in (`Step.context_secret`, written before the status that schedules the next
run), never into the status or an event."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from schedexec import manifests, runs
from schedexec.models import EventType, ExecutionError, Phase, Reason, RunOutcome
from schedexec.stages.step import Step, bounded_partial, clip
from schedexec_runner import envelope as envelopes


def lost(step: Step) -> None:
    """The current run's Job disappeared before it reported an outcome (RunLost)."""
    current = step.status.current_run
    assert current is not None
    message = f"the Job {current.job} of run {current.index} disappeared before it reported an outcome"
    step.fail(RunOutcome.LOST, Reason.RUN_LOST, message)


def record(step: Step, run: runs.RunObservation) -> None:
    """The current run ended (`run` finished): record its outcome, or its failure if it reported none."""
    current = step.status.current_run
    assert current is not None
    outcome = run.envelope
    if outcome is None:
        _record_failure(step, run)
        return
    if isinstance(outcome, envelopes.Done):
        step.close_run(RunOutcome.DONE, run)
        _keep_result(step, outcome.result)
        step.status.partial_result = None
        step.finish(Phase.SUCCEEDED, None)
        step.event(EventType.NORMAL, Reason.SUCCEEDED, f"run {current.index} returned the result")
    elif isinstance(outcome, envelopes.Failure):
        step.close_run(RunOutcome.ERROR, run, outcome.reason)
        step.finish(Phase.FAILED, ExecutionError(reason=outcome.reason, message=clip(outcome.message)))
        step.event(EventType.WARNING, outcome.reason, f"run {current.index} failed: {outcome.message}")
    elif step.status.runs + 1 >= step.execution.spec.max_runs:
        step.close_run(RunOutcome.SCHEDULED, run, Reason.MAX_RUNS_EXCEEDED)
        _show_partial(step, outcome)
        message = f"run {current.index} scheduled another run, but spec.maxRuns is {step.execution.spec.max_runs}"
        step.finish(Phase.FAILED, ExecutionError(reason=Reason.MAX_RUNS_EXCEEDED, message=message))
        step.event(EventType.WARNING, Reason.MAX_RUNS_EXCEEDED, message)
    else:
        _schedule(step, outcome, run)


def _schedule(step: Step, outcome: envelopes.Schedule, run: runs.RunObservation) -> None:
    """The run scheduled another (XSOAR's ScheduledCommand): when, with which args and command, and
    possibly a shorter sequence timeout; a wait below the minimum interval is raised to it, and says so."""
    current, status, spec = step.status.current_run, step.status, step.execution.spec
    assert current is not None
    requested = outcome.next_run_in_seconds
    delay = max(requested, step.policy.min_interval_seconds)
    step.close_run(RunOutcome.SCHEDULED, run, requested_next_run_in_seconds=requested if delay > requested else None)
    status.phase = Phase.WAITING
    status.next_run_at = step.now + timedelta(seconds=delay)
    status.next_args = outcome.args
    if outcome.command is not None:
        status.next_method = None if outcome.command == spec.method else outcome.command
    if outcome.timeout_in_seconds is not None and status.started_at is not None:
        seconds = min(outcome.timeout_in_seconds, spec.timeout_seconds)
        status.deadline = status.started_at + timedelta(seconds=seconds)
    status.items_remaining = outcome.items_remaining
    if outcome.context is not None:
        step.context_secret = manifests.xsoar_context_secret(step.execution, outcome.context)
    _show_partial(step, outcome)
    if delay > requested:
        step.event(
            EventType.NORMAL,
            Reason.POLL_INTERVAL_RAISED,
            f"run {current.index} asked for its next run in {requested}s; raised to the minimum interval of {delay}s",
        )
    what = f" ({status.next_method})" if status.next_method else ""
    step.event(EventType.NORMAL, Reason.RUN_SCHEDULED, f"run {current.index} asked for another run{what} in {delay}s")


def _show_partial(step: Step, outcome: envelopes.Schedule) -> None:
    """Show the partial result a schedule reported, if it reported one (else the one shown stays)."""
    if outcome.partial_result is not envelopes.ABSENT:
        step.status.partial_result = bounded_partial(outcome.partial_result)


def _keep_result(step: Step, result: Any) -> None:
    """In the status if small, else in a ConfigMap the status names (etcd objects are capped at 1.5 MiB,
    and every watcher of executions receives the whole object on every change)."""
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) <= step.policy.inline_result_bytes:
        step.status.result = result
        return
    step.result_config_map, step.status.result_ref = manifests.result_config_map(step.execution, text)


def _record_failure(step: Step, run: runs.RunObservation) -> None:
    """The run ended without a valid envelope: the pod died or wrote garbage."""
    reason: str
    if run.envelope_problem is not None and run.state is runs.RunState.SUCCEEDED:
        reason, what = Reason.INVALID_ENVELOPE, f"reported an invalid outcome: {run.envelope_problem}"
    elif run.failure_reason == manifests.JOB_FAILED_BY_POLICY:
        reason, what = Reason.RUN_DISRUPTED, "was disrupted (its pod was evicted, preempted or lost its node)"
    elif run.failure_reason == runs.JOB_DEADLINE_EXCEEDED:
        reason, what = (
            Reason.RUN_TIMED_OUT,
            f"exceeded spec.runTimeoutSeconds ({step.execution.spec.run_timeout}s)",
        )
    else:
        reason = run.failure_reason or Reason.RUN_FAILED
        what = f"died without reporting an outcome after {step.execution.spec.retries} retries"
    current = step.status.current_run
    assert current is not None
    detail = f": {run.failure_message}" if run.failure_message else ""
    if step.policy.log_tail_in_status and run.log_tail:
        detail += f": {run.log_tail}"
    retention = step.retention_seconds()
    if retention > 0 and run.state is not runs.RunState.MISSING:  # Step.close_run keeps its Job that long
        detail += f" (its log: {step.logs_command(current.job)}; kept for {retention}s)"
    step.fail(RunOutcome.LOST, reason, f"run {current.index} {what}{detail}", run)
