"""The stages of a decision on their own (schedexec.stages): each a small table on a `Step`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from schedexec.models import Phase
from schedexec.stages import finish, outcome, start
from schedexec.stages.step import Step
from schedexec_runner import envelope

from .builders import POLICY, at, execution, finished, run_job, running


def step(status: dict[str, Any] | None = None, seconds: float = 5, **spec: Any) -> Step:
    ex = execution(status, **spec)
    return Step(ex, ex.status.model_copy(deep=True), at(seconds), POLICY)


@pytest.mark.parametrize(
    ("status", "queued", "wake"),
    [
        (running(), False, at(360)),  # the watchdog: spec.runTimeoutSeconds (300) + 60s of grace, before the deadline
        ({"phase": "Waiting", "deadline": at(600).isoformat(), "nextRunAt": at(30).isoformat()}, False, at(30)),
        ({"phase": "Pending", "deadline": at(600).isoformat(), "nextRunAt": at(0).isoformat()}, True, at(600)),
        ({"phase": "Succeeded", "completedAt": at(1).isoformat()}, False, None),
    ],
)
def test_wake_at(status: dict[str, Any], queued: bool, wake: datetime | None) -> None:
    s = step(status)
    s.queued = queued
    assert finish.wake_at(s) == wake


@pytest.mark.parametrize(
    ("reported", "phase"),
    [
        (envelope.done(1), Phase.SUCCEEDED),
        (envelope.error("Nope", "no"), Phase.FAILED),
        (envelope.schedule(30, {}), Phase.WAITING),
    ],
)
@pytest.mark.parametrize(("retention", "kept"), [(POLICY.run_retention_seconds, True), (0, False), (None, True)])
def test_record_an_outcome_keeps_the_runs_job_for_its_log(
    reported: dict[str, Any], phase: Phase, retention: int | None, kept: bool
) -> None:
    """Every outcome: the Job stays for the execution's retention (else the operator's) and the record says
    where its log is and until when; with none it is deleted at once."""
    s = step(running(), runRetentionSeconds=retention) if retention is not None else step(running())
    outcome.record(s, finished(reported))
    record = s.status.history[-1]
    assert s.status.phase is phase and s.status.current_run is None and record.job == run_job(1)
    if kept:
        assert s.delete_job is None
        assert record.logs_until == at(5 + (retention or POLICY.run_retention_seconds))
        assert record.logs == f"kubectl logs -n ns job/{run_job(1)}"
    else:
        assert s.delete_job == run_job(1) and record.logs_until is None and record.logs is None


def test_the_retention_never_outlasts_the_jobs_own_ttl() -> None:
    ex = execution(running(), runRetentionSeconds=7 * 24 * 3600)
    s = Step(ex, ex.status.model_copy(deep=True), at(5), POLICY)
    outcome.record(s, finished(envelope.done(1)))
    assert s.status.history[-1].logs_until == at(5 + POLICY.job_ttl_seconds)


def test_a_stopped_run_has_its_job_deleted_whatever_the_retention() -> None:
    s = step(running(), runRetentionSeconds=3600)
    s.stop(Phase.CANCELLED, "Cancelled", "spec.cancel was set")
    record = s.status.history[-1]
    assert s.delete_job == run_job(1) and record.job == run_job(1) and record.logs_until is None


def test_a_lost_run_fails_naming_its_job() -> None:
    s = step(running())
    outcome.lost(s)
    assert s.status.error is not None and s.status.error.reason == "RunLost" and run_job(1) in s.status.error.message


@pytest.mark.parametrize(("slot_free", "started", "queued"), [(True, True, False), (False, False, True)])
def test_start_if_due(slot_free: bool, started: bool, queued: bool) -> None:
    s = step()
    start.begin(s)
    start.if_due(s, slot_free)
    assert (s.start is not None) is started and s.queued is queued


def test_a_run_not_yet_due_is_not_started() -> None:
    s = step({"phase": "Waiting", "deadline": at(600).isoformat(), "nextRunAt": at(30).isoformat()})
    start.if_due(s, True)
    assert s.start is None and s.status.phase is Phase.WAITING
