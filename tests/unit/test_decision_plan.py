"""Which of an execution's Jobs a decision deletes: the whole plan, so the reconciler only carries it out.

Every Job but the one a run needs goes: the current run's while it runs, the next run's while the sequence
waits (a Job made before a crash is that run, adopted when due), the last run's while it is kept for its logs
(a run that died without an outcome, Policy.failed_run_retention_seconds); none once the execution ended
otherwise.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedexec import decisions
from schedexec.decisions import Decision, decide
from schedexec.runs import RunObservation, RunState
from schedexec_runner import envelope

from .builders import POLICY, at, execution, finished, policy, running

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
        (running(), RunObservation(RunState.ACTIVE), 5, POLICY, ["sx1-r1", "sx1-r7"], ("sx1-r7",)),
        (running(), RunObservation(RunState.ACTIVE), 5, POLICY, ["sx1-r1"], ()),
        # a run that returned: its Job goes first, then the strays
        (running(), finished(envelope.done(1)), 5, POLICY, ["sx1-r1", "sx1-r7"], ("sx1-r1", "sx1-r7")),
        # a run that scheduled another: its Job goes; the next run's Job (made before a crash) is kept
        (running(), finished(envelope.schedule(30, {})), 5, POLICY, ["sx1-r1", "sx1-r2"], ("sx1-r1",)),
        (waiting_for_run_2(), RunObservation(RunState.MISSING), 6, POLICY, ["sx1-r2", "sx1-r9"], ("sx1-r9",)),
        # a run that died without an outcome: its Job is kept for its logs, a stray goes
        (running(), CRASHED, 5, POLICY, ["sx1-r1", "sx1-r7"], ("sx1-r7",)),
        (crashed_and_kept(), CRASHED, 5 + RETENTION - 1, POLICY, ["sx1-r1"], ()),
        # ... until the retention ends; without retention at once
        (crashed_and_kept(), CRASHED, 5 + RETENTION, POLICY, ["sx1-r1"], ("sx1-r1",)),
        (running(), CRASHED, 5, NO_RETENTION, ["sx1-r1", "sx1-r7"], ("sx1-r1", "sx1-r7")),
        # a run whose Job is missing (RunLost): its name is deleted all the same, as a cache may lag; strays go
        (running(), RunObservation(RunState.MISSING), 5, POLICY, ["sx1-r7"], ("sx1-r1", "sx1-r7")),
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
    d = Decision(status=execution().status, delete_job="sx1-r1", strays=("sx1-r7",))
    assert d.delete_jobs == ("sx1-r1", "sx1-r7")
    assert Decision(status=execution().status).delete_jobs == ()


def test_a_decision_without_jobs_named_deletes_only_the_runs_own() -> None:
    d = decide(execution(running()), finished(envelope.done(1)), at(5), True, POLICY)
    assert d.delete_jobs == ("sx1-r1",)


def test_an_execution_failed_outright_lets_every_job_go() -> None:
    ex = execution(running())
    d = decisions.failed_outright(
        ex.metadata, ex.status, at(5), "InvalidSpec", "broken", jobs=["sx1-r1", "sx1-r7"], policy=POLICY
    )
    assert d.delete_jobs == ("sx1-r1", "sx1-r7")


def test_a_refused_job_fails_the_execution_and_its_strays_go() -> None:
    refusal = ("JobRejected", "exceeded quota")
    d = decisions.job_refused(execution(), 1, at(1), POLICY, refusal, jobs=["sx1-r9"])
    assert d.status.error is not None and d.status.error.reason == "JobRejected"
    assert d.delete_jobs == ("sx1-r9",)


def test_the_retained_job_is_kept_until_its_retention_ends_and_then_deleted_once() -> None:
    kept = execution(crashed_and_kept())
    end = at(5) + timedelta(seconds=RETENTION)
    assert decide(kept, CRASHED, at(6), True, POLICY, ["sx1-r1"]).wake_at == end
    assert decide(kept, CRASHED, end, True, POLICY, ["sx1-r1"]).delete_jobs == ("sx1-r1",)
    gone = decide(kept, RunObservation(RunState.MISSING), end, True, POLICY, [])
    assert gone.delete_jobs == (), "a Job already gone is not deleted again"
