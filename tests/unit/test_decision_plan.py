"""Which of an execution's Jobs a decision deletes: the whole plan, so the reconciler only carries it out.

Every Job but those a run needs goes: the current run's while it runs, the next run's while the sequence
waits (a Job made before a crash is that run, adopted when due), and each recorded run's in status.history
while it is kept for its log (every outcome but a stopped run, Policy.run_retention_seconds or
spec.runRetentionSeconds); a Job whose retention ended, or whose run left the history, goes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedexec import decisions, manifests, models
from schedexec.decisions import Decision, decide
from schedexec.runs import RunObservation, RunState
from schedexec_runner import envelope

from .builders import POLICY, at, execution, finished, policy, run_job, running

CRASHED = RunObservation(RunState.FAILED, exit_code=3, failure_reason="BackoffLimitExceeded")
RETENTION = POLICY.run_retention_seconds
NO_RETENTION = policy(run_retention_seconds=0)


def crashed_and_kept() -> dict[str, object]:
    """The status of an execution whose run 1 died without an outcome at 5s: its Job is kept for its logs."""
    return decide(execution(running()), CRASHED, at(5), True, POLICY).status.model_dump(mode="json", by_alias=True)


def waiting_for_run_2() -> dict[str, object]:
    done = decide(execution(running()), finished(envelope.schedule(30, {})), at(5), True, POLICY)
    return done.status.model_dump(mode="json", by_alias=True)


@pytest.mark.parametrize(
    ("status", "run", "seconds", "policy", "jobs", "deleted"),
    [
        # the current run's Job is kept while it runs; a stray goes
        (running(), RunObservation(RunState.ACTIVE), 5, POLICY, [run_job(1), run_job(7)], (run_job(7),)),
        (running(), RunObservation(RunState.ACTIVE), 5, POLICY, [run_job(1)], ()),
        # a run that returned: its Job is kept for its log, the strays go; without retention it goes first
        (running(), finished(envelope.done(1)), 5, POLICY, [run_job(1), run_job(7)], (run_job(7),)),
        (running(), finished(envelope.done(1)), 5, NO_RETENTION, [run_job(1), run_job(7)], (run_job(1), run_job(7))),
        # a run that reported an error: kept for its log (its traceback) too
        (running(), finished(envelope.error("Boom", "no")), 5, POLICY, [run_job(1)], ()),
        # a run that scheduled another: its Job is kept for its log; the next run's Job (made before a crash) too
        (running(), finished(envelope.schedule(30, {})), 5, POLICY, [run_job(1), run_job(2)], ()),
        (running(), finished(envelope.schedule(30, {})), 5, NO_RETENTION, [run_job(1), run_job(2)], (run_job(1),)),
        (
            waiting_for_run_2(),
            RunObservation(RunState.MISSING),
            6,
            POLICY,
            [run_job(1), run_job(2), run_job(9)],
            (run_job(9),),
        ),
        # ... until the retention of run 1's Job ends
        (waiting_for_run_2(), RunObservation(RunState.MISSING), 5 + RETENTION, POLICY, [run_job(1)], (run_job(1),)),
        # a run that died without an outcome: its Job is kept for its logs, a stray goes
        (running(), CRASHED, 5, POLICY, [run_job(1), run_job(7)], (run_job(7),)),
        (crashed_and_kept(), CRASHED, 5 + RETENTION - 1, POLICY, [run_job(1)], ()),
        # ... until the retention ends; without retention at once
        (crashed_and_kept(), CRASHED, 5 + RETENTION, POLICY, [run_job(1)], (run_job(1),)),
        (running(), CRASHED, 5, NO_RETENTION, [run_job(1), run_job(7)], (run_job(1), run_job(7))),
        # a run whose Job is missing (RunLost): its name is deleted all the same, as a cache may lag; strays go
        (running(), RunObservation(RunState.MISSING), 5, POLICY, [run_job(7)], (run_job(1), run_job(7))),
        # a run stopped by the sequence's deadline: its pod is stopped (its Job deleted) whatever the retention
        (running(), RunObservation(RunState.ACTIVE), 600, POLICY, [run_job(1)], (run_job(1),)),
    ],
)
def test_a_decision_deletes_every_job_no_run_needs(
    status: dict[str, object],
    run: RunObservation,
    seconds: int,
    policy: decisions.Policy,
    jobs: list[str],
    deleted: tuple[str, ...],
) -> None:
    d = decide(execution(status), run, at(seconds), True, policy, jobs)
    assert d.delete_jobs == deleted
    assert d.delete_job is None or d.delete_jobs[0] == d.delete_job, "the run's Job first"
    assert set(d.strays) == set(deleted) - {d.delete_job}


def test_strays_are_the_jobs_besides_the_runs_own() -> None:
    d = Decision(status=execution().status, delete_job=run_job(1), strays=(run_job(7),))
    assert d.delete_jobs == (run_job(1), run_job(7))
    assert Decision(status=execution().status).delete_jobs == ()


def test_a_decision_without_jobs_named_deletes_only_the_runs_own() -> None:
    d = decide(execution(running()), finished(envelope.done(1)), at(5), True, NO_RETENTION)
    assert d.delete_jobs == (run_job(1),)


def test_an_execution_failed_outright_lets_every_job_go() -> None:
    ex = execution(running())
    d = decisions.failed_outright(
        ex.metadata, ex.status, at(5), "InvalidSpec", "broken", jobs=[run_job(1), run_job(7)], policy=POLICY
    )
    assert d.delete_jobs == (run_job(1), run_job(7))


def test_a_refused_job_fails_the_execution_and_its_strays_go() -> None:
    refusal = ("JobRejected", "exceeded quota")
    d = decisions.job_refused(execution(), 1, at(1), POLICY, refusal, jobs=[run_job(9)])
    assert d.status.error is not None and d.status.error.reason == "JobRejected"
    assert d.delete_jobs == (run_job(9),)


def test_an_execution_failed_outright_lets_the_jobs_kept_for_their_logs_go_too() -> None:
    ex = execution(waiting_for_run_2())
    d = decisions.failed_outright(ex.metadata, ex.status, at(6), "InternalError", "x", jobs=[run_job(1)], policy=POLICY)
    assert d.delete_jobs == (run_job(1),)


def test_the_retained_job_is_kept_until_its_retention_ends_and_then_deleted_once() -> None:
    kept = execution(crashed_and_kept())
    end = at(5) + timedelta(seconds=RETENTION)
    assert decide(kept, CRASHED, at(6), True, POLICY, [run_job(1)]).wake_at == end
    assert decide(kept, CRASHED, end, True, POLICY, [run_job(1)]).delete_jobs == (run_job(1),)
    gone = decide(kept, RunObservation(RunState.MISSING), end, True, POLICY, [])
    assert gone.delete_jobs == (), "a Job already gone is not deleted again"


# --- runs in progress across an upgrade: Jobs named as operators before the uid tag named them ------------


def legacy(index: int) -> str:
    """Run `index`'s Job as an operator before the uid tag named it."""
    return manifests.legacy_job_name("sx1", index)


def test_a_next_runs_job_made_before_the_upgrade_is_adopted_when_due_never_made_again() -> None:
    """The old operator created run 2's Job and stopped before the status named it (an upgrade's restart): the new
    operator keeps it while waiting, then starts run 2 under that name (its creation answers 409: adopted)."""
    waiting = decide(execution(waiting_for_run_2()), RunObservation(RunState.MISSING), at(6), True, POLICY, [legacy(2)])
    assert waiting.delete_jobs == (), "the next run's Job is no stray"
    due = decide(execution(waiting_for_run_2()), RunObservation(RunState.MISSING), at(35), True, POLICY, [legacy(2)])
    assert due.start_run is not None and due.start_run.job == legacy(2)
    assert due.status.current_run is not None and due.status.current_run.job == legacy(2)
    fresh = decide(execution(waiting_for_run_2()), RunObservation(RunState.MISSING), at(35), True, POLICY, [])
    assert fresh.start_run is not None and fresh.start_run.job == run_job(2), "new runs get the new name"


def test_a_run_in_progress_under_its_legacy_name_ends_and_its_job_goes() -> None:
    status = running(1) | {"currentRun": {"index": 1, "job": legacy(1), "startedAt": at(0).isoformat()}}
    d = decide(execution(status), finished(envelope.schedule(30, {})), at(5), True, NO_RETENTION, [legacy(1)])
    assert d.delete_jobs == (legacy(1),)
    kept_for_log = decide(execution(status), finished(envelope.schedule(30, {})), at(5), True, POLICY, [legacy(1)])
    assert kept_for_log.delete_jobs == () and kept_for_log.status.history[-1].job == legacy(1)
    kept = decide(execution(status), CRASHED, at(5), True, POLICY, [legacy(1)])
    assert kept.delete_jobs == () and kept.status.error is not None and f"job/{legacy(1)}" in kept.status.error.message
    later = kept.status.model_dump(mode="json", by_alias=True)
    expired = decide(execution(later), CRASHED, at(5 + RETENTION), True, POLICY, [legacy(1)])
    assert expired.delete_jobs == (legacy(1),), "the Job kept for its logs goes when its retention ends"


# --- Jobs kept for their logs: bounded by the history, looked at again when they go ---------------------------


def kept_history(last: int, until: float) -> list[dict[str, object]]:
    """Records of runs 1..`last` (the last HISTORY_LIMIT of them) whose Jobs are kept until `until`."""
    records = [
        {"index": i, "outcome": "Scheduled", "job": run_job(i), "logsUntil": at(until).isoformat()}
        for i in range(1, last + 1)
    ]
    return records[-models.HISTORY_LIMIT :]


def test_only_the_runs_in_the_history_keep_their_jobs() -> None:
    """Run 11 records its outcome: run 1 leaves the history, and its Job goes though its retention has not
    ended; the ten recorded runs' Jobs stay (at most HISTORY_LIMIT finished pods per execution)."""
    last = models.HISTORY_LIMIT + 1
    status = running(last, history=kept_history(last - 1, 1000))
    jobs = [run_job(i) for i in range(1, last + 1)]
    d = decide(execution(status), finished(envelope.schedule(30, {})), at(5), True, POLICY, jobs)
    assert [r.index for r in d.status.history] == list(range(2, last + 1))
    assert d.delete_jobs == (run_job(1),)


def test_a_sequence_looks_again_when_a_kept_job_is_due_to_go() -> None:
    """Waiting for run 3 at 30s, the Job of run 1 kept until 20s: the decision looks again at 20s and then
    deletes it, and keeps run 2's."""
    history = [*kept_history(1, 20), *[{**r, "logsUntil": at(900).isoformat()} for r in kept_history(2, 0)[1:]]]
    status = {
        "phase": "Waiting",
        "runs": 2,
        "startedAt": at(0).isoformat(),
        "deadline": at(600).isoformat(),
        "nextRunAt": at(30).isoformat(),
        "history": history,
    }
    jobs = [run_job(1), run_job(2)]
    idle = RunObservation(RunState.MISSING)
    assert decide(execution(status), idle, at(6), True, POLICY, jobs).wake_at == at(20)
    due = decide(execution(status), idle, at(20), True, POLICY, jobs)
    assert due.delete_jobs == (run_job(1),) and due.wake_at == at(30)
    error = {"reason": "Cancelled", "message": "spec.cancel was set"}
    finished_status = {
        **status,
        "phase": "Cancelled",
        "completedAt": at(6).isoformat(),
        "nextRunAt": None,
        "error": error,
    }
    assert decide(execution(finished_status), idle, at(21), True, POLICY, [run_job(2)]).wake_at == at(900)
    assert decide(execution(finished_status), idle, at(900), True, POLICY, [run_job(2)]).delete_jobs == (run_job(2),)
