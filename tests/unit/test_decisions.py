"""Every decision of the operator, without a cluster: object + run + clock → decision."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import datetime
from typing import Any

import pytest

from schedexec import decisions, manifests, models, runs
from schedexec.decisions import decide
from schedexec.models import Phase
from schedexec.runs import RunObservation, RunState
from schedexec_runner import envelope
from tests.unit.builders import POD_DEFAULTS, POLICY, T0, at, execution, finished, policy, run_job, running


def condition(status: models.ScheduledExecutionStatus, type_: str) -> models.Condition:
    return next(c for c in status.conditions if c.type == type_)


def test_a_new_execution_starts_run_1_with_spec_args_and_sets_every_condition() -> None:
    d = decide(execution(), runs.MISSING, at(1), slot_free=True, policy=POLICY)
    assert d.start_run == decisions.StartRun(index=1, job=run_job(1), args={"a": 1})
    assert d.status.phase is Phase.RUNNING
    assert d.status.current_run is not None and d.status.current_run.job == run_job(1)
    assert d.status.deadline == at(1 + 600), "the sequence starts when the operator first sees it (its clock)"
    assert {c.type for c in d.status.conditions} == {
        "Succeeded",
        "Finished",
        "TimedOut",
        "Ready",
        "Reconciling",
        "Stalled",
    }
    assert condition(d.status, "Succeeded").status is models.ConditionStatus.UNKNOWN
    assert d.wake_at == at(1 + 300 + 60), "the watchdog's moment: run timeout (default 300 s) + grace"
    assert [e.reason for e in d.events] == ["RunStarted"]


def test_without_a_free_slot_the_execution_is_queued_and_started_later() -> None:
    d = decide(execution(), runs.MISSING, at(1), slot_free=False, policy=POLICY)
    assert d.start_run is None and d.queued
    assert d.status.phase is Phase.PENDING
    assert condition(d.status, "Succeeded").reason == "Queued"
    assert [e.reason for e in d.events] == ["Queued"]
    queued = execution(d.status.model_dump(mode="json", by_alias=True))
    assert decide(queued, runs.MISSING, at(2), slot_free=False, policy=POLICY).events == []
    again = decide(queued, runs.MISSING, at(2), slot_free=True, policy=POLICY)
    assert again.start_run is not None and again.start_run.index == 1


def test_an_active_run_changes_nothing_and_wakes_at_the_deadline_or_the_watchdog() -> None:
    ex = execution(running())
    d = decide(ex, RunObservation(RunState.ACTIVE), at(5), slot_free=True, policy=POLICY)
    assert d.start_run is None and d.delete_job is None
    assert d.status.phase is Phase.RUNNING
    assert d.wake_at == at(360)
    long_runs = execution(running(), runTimeoutSeconds=3600)
    assert decide(long_runs, RunObservation(RunState.ACTIVE), at(5), True, POLICY).wake_at == at(600)


def test_a_run_nobody_ends_after_its_run_timeout_is_stopped_by_the_watchdog() -> None:
    ex = execution(running(2, runs=1, partialResult={"job": "j-1"}), runTimeoutSeconds=100)
    before = decide(ex, RunObservation(RunState.ACTIVE), at(159), True, POLICY)
    assert before.status.phase is Phase.RUNNING and before.wake_at == at(160)
    d = decide(ex, RunObservation(RunState.ACTIVE), at(160), True, POLICY)
    assert d.status.phase is Phase.FAILED
    assert d.status.error is not None and d.status.error.reason == "RunOverdue"
    assert "runTimeoutSeconds (100s)" in d.status.error.message
    assert d.delete_job == run_job(2), "the stuck Job is stopped"
    assert d.status.partial_result == {"job": "j-1"}
    assert d.status.history[-1].outcome is models.RunOutcome.STOPPED
    assert [e.reason for e in d.events] == ["RunOverdue"]
    patient = policy(min_interval_seconds=10, overdue_grace_seconds=300)
    assert decide(ex, RunObservation(RunState.ACTIVE), at(160), True, patient).status.phase is Phase.RUNNING


def test_done_succeeds_with_the_result_and_keeps_the_job_for_its_log() -> None:
    d = decide(execution(running()), finished(envelope.done({"x": 1})), at(5), slot_free=True, policy=POLICY)
    assert d.status.phase is Phase.SUCCEEDED
    assert d.status.result == {"x": 1}
    assert d.status.completed_at == at(5)
    assert d.delete_job is None, "kept for its log"
    assert d.status.history[-1].outcome is models.RunOutcome.DONE
    assert d.status.history[-1].logs_until == at(5 + POLICY.run_retention_seconds)
    assert decide(
        execution(running()), finished(envelope.done(1)), at(5), True, policy(run_retention_seconds=0)
    ).delete_job == run_job(1)
    assert condition(d.status, "Succeeded").status is models.ConditionStatus.TRUE
    assert condition(d.status, "Finished").status is models.ConditionStatus.TRUE


def test_error_fails_with_reason_and_message() -> None:
    d = decide(execution(running()), finished(envelope.error("BadInput", "no such shop")), at(5), True, POLICY)
    assert d.status.phase is Phase.FAILED
    assert d.status.error == models.ExecutionError(reason="BadInput", message="no such shop")
    assert condition(d.status, "Succeeded").reason == "BadInput"
    assert [e.type for e in d.events] == ["Warning"]


@pytest.mark.parametrize(
    ("asked", "expected_delay"),
    [(0, 10), (3, 10), (10, 10), (42, 42)],
)
def test_schedule_waits_at_least_the_minimum_interval(asked: int, expected_delay: int) -> None:
    env = envelope.schedule(asked, {"cursor": 2}, partial_result={"job": "j-1"})
    d = decide(execution(running()), finished(env), at(5), slot_free=True, policy=POLICY)
    assert d.status.phase is Phase.WAITING
    assert d.status.next_run_at == at(5 + expected_delay)
    assert d.status.next_args == {"cursor": 2}
    assert d.status.partial_result == {"job": "j-1"}
    assert d.status.runs == 1 and d.status.current_run is None
    assert d.wake_at == at(5 + expected_delay)
    assert d.delete_job is None and d.status.history[-1].job == run_job(1), "kept for its log"


def test_a_waiting_execution_starts_the_next_run_with_the_scheduled_args_when_due() -> None:
    status = {
        "phase": "Waiting",
        "runs": 1,
        "startedAt": T0.isoformat(),
        "deadline": at(600).isoformat(),
        "nextRunAt": at(20).isoformat(),
        "nextArgs": {"cursor": 2},
    }
    early = decide(execution(status), runs.MISSING, at(19), True, POLICY)
    assert early.start_run is None and early.wake_at == at(20)
    due = decide(execution(status), runs.MISSING, at(20), True, POLICY)
    assert due.start_run == decisions.StartRun(index=2, job=run_job(2), args={"cursor": 2})
    assert due.status.current_run is not None and due.status.current_run.job == run_job(2)


def test_the_deadline_stops_a_running_run_and_keeps_the_partial_result() -> None:
    ex = execution(running(2, runs=1, partialResult={"job": "j-1"}))
    d = decide(ex, RunObservation(RunState.ACTIVE), at(600), True, POLICY)
    assert d.status.phase is Phase.TIMED_OUT
    assert d.delete_job == run_job(2)
    assert d.status.partial_result == {"job": "j-1"}
    assert d.status.error is not None and d.status.error.reason == "Timeout"
    assert condition(d.status, "TimedOut").status is models.ConditionStatus.TRUE
    assert d.status.history[-1].outcome is models.RunOutcome.STOPPED


def test_the_deadline_ends_a_waiting_sequence() -> None:
    status = {
        "phase": "Waiting",
        "runs": 1,
        "startedAt": T0.isoformat(),
        "deadline": at(600).isoformat(),
        "nextRunAt": at(900).isoformat(),
        "nextArgs": {},
    }
    early = decide(execution(status), runs.MISSING, at(10), True, POLICY)
    assert early.wake_at == at(600)
    d = decide(execution(status), runs.MISSING, at(600), True, POLICY)
    assert d.status.phase is Phase.TIMED_OUT and d.start_run is None and d.delete_job is None


def test_a_result_reported_before_the_deadline_wins_over_the_timeout() -> None:
    d = decide(execution(running()), finished(envelope.done(1)), at(601), True, POLICY)
    assert d.status.phase is Phase.SUCCEEDED


def test_a_schedule_at_max_runs_fails() -> None:
    ex = execution(running(3, runs=2), maxRuns=3)
    d = decide(ex, finished(envelope.schedule(10, {})), at(5), True, POLICY)
    assert d.status.phase is Phase.FAILED
    assert d.status.error is not None and d.status.error.reason == "MaxRunsExceeded"


@pytest.mark.parametrize(
    ("observation", "reason"),
    [
        (
            RunObservation(
                RunState.FAILED, failure_reason="BackoffLimitExceeded", failure_message="Traceback: boom", exit_code=1
            ),
            "BackoffLimitExceeded",
        ),
        (RunObservation(RunState.FAILED, failure_reason="DeadlineExceeded"), "RunTimedOut"),
        (RunObservation(RunState.SUCCEEDED, envelope_problem="not JSON", exit_code=0), "InvalidEnvelope"),
        (runs.MISSING, "RunLost"),
    ],
)
def test_a_run_without_an_outcome_fails_with_a_clear_reason(observation: RunObservation, reason: str) -> None:
    d = decide(execution(running()), observation, at(5), True, POLICY)
    assert d.status.phase is Phase.FAILED
    assert d.status.error is not None and d.status.error.reason == reason
    assert d.status.history[-1].outcome is models.RunOutcome.LOST
    if observation.failure_message:
        assert observation.failure_message in d.status.error.message


def test_cancel_stops_the_run() -> None:
    d = decide(execution(running(), cancel=True), RunObservation(RunState.ACTIVE), at(5), True, POLICY)
    assert d.status.phase is Phase.CANCELLED and d.delete_job == run_job(1)


def test_a_finished_execution_is_deleted_after_its_ttl() -> None:
    done = decide(execution(running(), ttlSecondsAfterFinished=30), finished(envelope.done(1)), at(5), True, POLICY)
    ex = execution(done.status.model_dump(mode="json", by_alias=True), ttlSecondsAfterFinished=30)
    early = decide(ex, runs.MISSING, at(20), True, POLICY)
    assert not early.delete_execution and early.wake_at == at(35)
    assert decide(ex, runs.MISSING, at(35), True, POLICY).delete_execution


def test_reconciling_a_finished_execution_again_changes_nothing() -> None:
    done = decide(execution(running()), finished(envelope.done(1)), at(5), True, POLICY)
    ex = execution(done.status.model_dump(mode="json", by_alias=True))
    again = decide(ex, runs.MISSING, at(50), True, POLICY)
    assert again.status == ex.status and not again.events and again.delete_job is None


def test_last_transition_time_moves_only_when_the_status_flips() -> None:
    first = decide(execution(), runs.MISSING, at(1), True, POLICY)
    ex = execution(first.status.model_dump(mode="json", by_alias=True))
    waiting = decide(ex, finished(envelope.schedule(10, {})), at(5), True, POLICY)
    assert condition(waiting.status, "Succeeded").reason == "Waiting"
    assert condition(waiting.status, "Succeeded").last_transition_time == at(1)
    ex2 = execution(waiting.status.model_dump(mode="json", by_alias=True))
    done = decide(ex2, runs.MISSING, at(15), True, POLICY)
    ex3 = execution(done.status.model_dump(mode="json", by_alias=True))
    final = decide(ex3, finished(envelope.done(1)), at(20), True, POLICY)
    assert condition(final.status, "Succeeded").last_transition_time == at(20)


def test_history_is_bounded() -> None:
    history = [{"index": i, "outcome": "Scheduled"} for i in range(1, 11)]
    ex = execution(running(11, runs=10, history=history))
    d = decide(ex, finished(envelope.schedule(10, {})), at(5), True, POLICY)
    assert len(d.status.history) == models.HISTORY_LIMIT
    assert d.status.history[-1].index == 11 and d.status.history[0].index == 2


# --- everything XSOAR's ScheduledCommand carries -------------------------------------------------


def test_a_schedule_naming_another_command_runs_that_command_next_and_says_so() -> None:
    scheduled = envelope.schedule(30, {"job": "j-1"}, command="fetch-report")
    d = decide(execution(running()), finished(scheduled), at(5), slot_free=True, policy=POLICY)
    assert d.status.next_method == "fetch-report"
    started = decide(execution(d.status.model_dump(mode="json", by_alias=True)), runs.MISSING, at(35), True, POLICY)
    assert started.start_run == decisions.StartRun(index=2, job=run_job(2), args={"job": "j-1"}, method="fetch-report")
    assert started.status.current_run is not None and started.status.current_run.method == "fetch-report"
    manifest = manifests.job_manifest(execution(), 2, {}, POD_DEFAULTS, method="fetch-report")
    env = {e["name"]: e.get("value") for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SCHEDEXEC_METHOD"] == "fetch-report"
    back = envelope.schedule(30, {}, command="poll")  # naming spec.method again returns to it
    again = decide(execution(running(2, nextMethod="fetch-report")), finished(back), at(40), True, POLICY)
    assert again.status.next_method is None


@pytest.mark.parametrize(
    ("timeout_in_seconds", "deadline"),
    [
        (25, at(25)),  # counted from startedAt
        (6000, at(600)),  # never beyond spec.timeoutSeconds (600)
    ],
)
def test_a_schedule_may_shorten_the_sequence_timeout_but_never_extend_it(
    timeout_in_seconds: int, deadline: datetime
) -> None:
    scheduled = envelope.schedule(10, {}, timeout_in_seconds=timeout_in_seconds)
    d = decide(execution(running(), timeoutSeconds=600), finished(scheduled), at(5), True, POLICY)
    assert d.status.deadline == deadline


def test_a_sequence_past_the_timeout_a_run_set_ends_timed_out_and_names_that_timeout() -> None:
    scheduled = envelope.schedule(10, {}, partial_result={"done": 3}, timeout_in_seconds=25)
    waiting = decide(execution(running()), finished(scheduled), at(5), True, POLICY).status
    d = decide(execution(waiting.model_dump(mode="json", by_alias=True)), runs.MISSING, at(26), True, POLICY)
    assert d.status.phase is Phase.TIMED_OUT and d.status.partial_result == {"done": 3}
    assert d.status.error is not None and "timeout of 25s that a run set (timeoutInSeconds)" in d.status.error.message


def test_items_remaining_show_while_waiting_and_clear_when_the_next_run_starts() -> None:
    scheduled = envelope.schedule(10, {}, items_remaining=42)
    waiting = decide(execution(running()), finished(scheduled), at(5), True, POLICY).status
    assert waiting.items_remaining == 42
    started = decide(execution(waiting.model_dump(mode="json", by_alias=True)), runs.MISSING, at(15), True, POLICY)
    assert started.status.items_remaining is None


@pytest.mark.parametrize(("asked", "waits", "raised"), [(3, 10, True), (10, 10, False), (30, 30, False)])
def test_the_minimum_interval_is_applied_and_recorded_when_a_run_asks_for_less(
    asked: int, waits: int, raised: bool
) -> None:
    d = decide(execution(running()), finished(envelope.schedule(asked, {})), at(5), True, POLICY)
    assert d.status.next_run_at == at(5 + waits)
    assert (decisions.Reason.POLL_INTERVAL_RAISED in [e.reason for e in d.events]) is raised
    assert d.status.history[-1].requested_next_run_in_seconds == (asked if raised else None)


def test_a_disrupted_run_fails_with_run_disrupted_and_is_not_started_again() -> None:
    disrupted = RunObservation(
        RunState.FAILED, failure_reason=manifests.JOB_FAILED_BY_POLICY, failure_message="evicted"
    )
    d = decide(execution(running(), retries=3), disrupted, at(5), True, POLICY)
    assert d.status.phase is Phase.FAILED and d.start_run is None
    assert d.status.error is not None and d.status.error.reason == "RunDisrupted"
    manifest = manifests.job_manifest(execution(), 1, {}, POD_DEFAULTS)
    assert manifest["spec"]["podReplacementPolicy"] == "Failed"
    assert manifest["spec"]["podFailurePolicy"]["rules"] == [manifests.DISRUPTION_FAILS_THE_RUN]


def test_a_refused_job_fails_the_execution_without_a_run() -> None:
    d = decisions.job_refused(execution(), 1, at(1), POLICY, ("JobRejected", "exceeded quota"))
    assert d.status.phase is Phase.FAILED and d.start_run is None and d.status.current_run is None
    assert d.status.error == models.ExecutionError(
        reason="JobRejected", message="the Job of run 1 was refused: exceeded quota"
    )


def kstatus(execution_status: models.ScheduledExecutionStatus, generation: int = 1) -> str:
    """kstatus's generic rules for a custom resource (sigs.k8s.io/cli-utils pkg/kstatus/status, GenericStatus):
    observedGeneration behind → InProgress; Reconciling=True → InProgress; Stalled=True → Failed; else Current."""
    if execution_status.observed_generation != generation:
        return "InProgress"
    conditions = {c.type: c.status for c in execution_status.conditions}
    if conditions.get("Reconciling") == "True":
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    return "Current"


@pytest.mark.parametrize(
    ("status", "run", "now", "expected", "ready"),
    [
        (None, runs.MISSING, 1, "InProgress", "Unknown"),  # run 1 starts
        (running(), RunObservation(RunState.ACTIVE), 5, "InProgress", "Unknown"),
        (running(), finished(envelope.schedule(30, {})), 5, "InProgress", "Unknown"),  # waiting for run 2
        (running(), finished(envelope.done(1)), 5, "Current", "True"),
        (running(), finished(envelope.error("Nope", "no")), 5, "Failed", "False"),
        (running(), RunObservation(RunState.ACTIVE), 601, "Failed", "False"),  # timed out
    ],
)
def test_gitops_tools_wait_for_the_result_kstatus_and_ready(
    status: dict[str, Any] | None, run: RunObservation, now: float, expected: str, ready: str
) -> None:
    d = decide(execution(status), run, at(now), slot_free=True, policy=POLICY)
    assert kstatus(d.status) == expected
    assert condition(d.status, "Ready").status == ready


# --- results too large for the status ---------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "key"),
    [
        (20_000, "result.json"),  # over the inline limit: a ConfigMap, readable with kubectl
        (1_020_000, "result.json.gz"),  # over what a ConfigMap holds as text: gzip-compressed binaryData
    ],
)
def test_a_large_result_is_kept_in_a_config_map_the_status_names(size: int, key: str) -> None:
    result = {"schema": "x" * size}
    d = decide(execution(running()), finished(envelope.done(result)), at(5), slot_free=True, policy=POLICY)
    assert d.status.phase is Phase.SUCCEEDED and d.status.result is None
    ref = d.status.result_ref
    text = json.dumps(result, separators=(",", ":"))
    assert ref == models.ResultRef(
        config_map=f"sx1-{manifests.execution_tag('u1')}-result",
        key=key,
        bytes=len(text),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    config_map = d.result_config_map
    assert config_map is not None and config_map["metadata"]["ownerReferences"][0]["uid"] == "u1"
    stored = config_map.get("data", {}).get(key) or gzip.decompress(base64.b64decode(config_map["binaryData"][key]))
    assert json.loads(stored) == result


def test_a_small_result_stays_in_the_status() -> None:
    d = decide(execution(running()), finished(envelope.done({"x": 1})), at(5), slot_free=True, policy=POLICY)
    assert d.status.result == {"x": 1} and d.status.result_ref is None and d.result_config_map is None


# --- a crashed run's output never reaches status or Events by default ----------------------------

CRASHED = RunObservation(
    RunState.FAILED,
    exit_code=3,
    failure_reason="BackoffLimitExceeded",
    failure_message="Job has reached the specified backoff limit",
    log_tail="Authorization: Bearer s3cr3t-canary; segfault",
    attempts=2,
)


def test_a_crashed_runs_log_tail_stays_out_of_status_and_events_and_its_job_is_kept_for_its_logs() -> None:
    d = decide(execution(running()), CRASHED, at(5), slot_free=True, policy=POLICY)
    assert d.status.phase is Phase.FAILED and d.status.error is not None
    assert "s3cr3t-canary" not in d.status.model_dump_json() and all("s3cr3t" not in e.message for e in d.events)
    assert f"kubectl logs -n ns job/{run_job(1)}" in d.status.error.message
    assert d.delete_job is None, "the Job (and its pod's log) is kept"
    assert d.status.history[-1].attempts == 2, "a retried run index is counted in its record"
    retention = POLICY.run_retention_seconds
    assert decide(execution(running()), CRASHED, at(5), True, POLICY, [run_job(1)]).wake_at == at(5 + retention)
    later = execution(d.status.model_dump(mode="json", by_alias=True))
    expired = decide(later, CRASHED, at(5 + retention), True, POLICY, [run_job(1)])
    assert expired.delete_jobs == (run_job(1),), "deleted once the retention ended"


def test_the_log_tail_in_status_is_an_explicit_opt_in() -> None:
    opted = policy(log_tail_in_status=True)
    d = decide(execution(running()), CRASHED, at(5), slot_free=True, policy=opted)
    assert d.status.error is not None and "Bearer s3cr3t-canary; segfault" in d.status.error.message
    assert d.delete_job is None, "the Job is kept for its log all the same"


def test_a_decision_changes_a_copy_never_the_execution_it_was_given() -> None:
    ex = execution(running(2, partialResult={"job": {"id": 1}}, nextArgs={"cursor": [1, 2]}))
    before = ex.status.model_dump()
    d = decide(
        ex, finished(envelope.schedule(30, {"cursor": [3]}, partial_result={"job": {"id": 2}})), at(5), True, POLICY
    )
    assert d.status.phase is Phase.WAITING and d.status.next_args == {"cursor": [3]}
    assert ex.status.model_dump() == before
    d.status.history.clear()
    d.status.conditions.clear()
    assert ex.status.model_dump() == before, "the decided status shares nothing with the given one"


def test_each_run_records_when_it_was_due_so_its_lateness_can_be_read() -> None:
    """Run 1 is due when the sequence starts; a later run at the nextRunAt it waited for. A run started late (no
    free slot at first) keeps its due time, so startedAt - dueAt is its lateness (kubectl sx describe)."""
    queued = decide(execution(), runs.MISSING, at(1), slot_free=False, policy=POLICY)
    first = decide(execution(queued.status.model_dump(mode="json", by_alias=True)), runs.MISSING, at(4), True, POLICY)
    assert first.status.current_run is not None
    assert (first.status.current_run.due_at, first.status.current_run.started_at) == (at(1), at(4))
    scheduled = finished(envelope.schedule(30, {"b": 2}))
    waiting = decide(execution(first.status.model_dump(mode="json", by_alias=True)), scheduled, at(6), True, POLICY)
    assert waiting.status.history[-1].due_at == at(1) and waiting.status.history[-1].started_at == at(4)
    due = waiting.status.next_run_at
    assert due == at(6 + 30)
    second = decide(
        execution(waiting.status.model_dump(mode="json", by_alias=True)), runs.MISSING, at(40), True, POLICY
    )
    assert second.status.current_run is not None and second.status.current_run.due_at == due
