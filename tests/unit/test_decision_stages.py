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
    ("reported", "phase", "deleted"),
    [
        (envelope.done(1), Phase.SUCCEEDED, run_job(1)),
        (envelope.error("Nope", "no"), Phase.FAILED, run_job(1)),
        (envelope.schedule(30, {}), Phase.WAITING, run_job(1)),
    ],
)
def test_record_an_outcome(reported: dict[str, Any], phase: Phase, deleted: str) -> None:
    s = step(running())
    outcome.record(s, finished(reported))
    assert s.status.phase is phase and s.delete_job == deleted and s.status.current_run is None


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
