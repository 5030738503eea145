"""Which of an execution's Jobs a decision deletes: the whole plan, so the reconciler only carries it out.

Every Job but the one a run needs goes: the current run's while it runs, the next run's while the sequence
waits (a Job made before a crash is that run, adopted when due), the last run's while it is kept for its logs
(a run that died without an outcome, Policy.failed_run_retention_seconds); none once the execution ended
otherwise.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedexec import decisions, manifests
from schedexec.decisions import Decision, decide
from schedexec.runs import RunObservation, RunState
from schedexec_runner import envelope

from .builders import POLICY, at, execution, finished, policy, run_job, running

CRASHED = RunObservation(RunState.FAILED, exit_code=3, failure_reason="BackoffLimitExceeded")
RETENTION = POLICY.failed_run_retention_seconds
NO_RETENTION = policy(failed_run_retention_seconds=0)


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
        # a run that returned: its Job goes first, then the strays
        (running(), finished(envelope.done(1)), 5, POLICY, [run_job(1), run_job(7)], (run_job(1), run_job(7))),
        # a run that scheduled another: its Job goes; the next run's Job (made before a crash) is kept
        (running(), finished(envelope.schedule(30, {})), 5, POLICY, [run_job(1), run_job(2)], (run_job(1),)),
        (waiting_for_run_2(), RunObservation(RunState.MISSING), 6, POLICY, [run_job(2), run_job(9)], (run_job(9),)),
        # a run that died without an outcome: its Job is kept for its logs, a stray goes
        (running(), CRASHED, 5, POLICY, [run_job(1), run_job(7)], (run_job(7),)),
        (crashed_and_kept(), CRASHED, 5 + RETENTION - 1, POLICY, [run_job(1)], ()),
        # ... until the retention ends; without retention at once
        (crashed_and_kept(), CRASHED, 5 + RETENTION, POLICY, [run_job(1)], (run_job(1),)),
        (running(), CRASHED, 5, NO_RETENTION, [run_job(1), run_job(7)], (run_job(1), run_job(7))),
        # a run whose Job is missing (RunLost): its name is deleted all the same, as a cache may lag; strays go
        (running(), RunObservation(RunState.MISSING), 5, POLICY, [run_job(7)], (run_job(1), run_job(7))),
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
    d = decide(execution(running()), finished(envelope.done(1)), at(5), True, POLICY)
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
    d = decide(execution(status), finished(envelope.schedule(30, {})), at(5), True, POLICY, [legacy(1)])
    assert d.delete_jobs == (legacy(1),)
    kept = decide(execution(status), CRASHED, at(5), True, POLICY, [legacy(1)])
    assert kept.delete_jobs == () and kept.status.error is not None and f"job/{legacy(1)}" in kept.status.error.message
    later = kept.status.model_dump(mode="json", by_alias=True)
    expired = decide(execution(later), CRASHED, at(5 + RETENTION), True, POLICY, [legacy(1)])
    assert expired.delete_jobs == (legacy(1),), "the Job kept for its logs goes when its retention ends"
