"""Small builders of executions, statuses and run observations for the table-driven decision tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schedexec import decisions, models
from schedexec.runs import RunObservation, RunState
from schedexec_runner import envelope

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
POLICY = decisions.Policy(min_interval_seconds=10)
METADATA = {
    "name": "sx1",
    "namespace": "ns",
    "uid": "u1",
    "generation": 1,
    "resourceVersion": "5",
    "creationTimestamp": T0.isoformat(),
}
"""The metadata of every built (and generated) execution: the decisions read little else of it."""


def execution(status: dict[str, Any] | None = None, **spec: Any) -> models.ScheduledExecution:
    body = {
        "metadata": dict(METADATA),
        "spec": {"component": {"image": "img"}, "method": "poll", "args": {"a": 1}, **spec},
        "status": status or {},
    }
    return models.ScheduledExecution.model_validate(body)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(index: int = 1, **status: Any) -> dict[str, Any]:
    """Status of an execution whose run `index` is running since T0."""
    return {
        "phase": "Running",
        "runs": index - 1,
        "startedAt": T0.isoformat(),
        "deadline": at(600).isoformat(),
        "currentRun": {"index": index, "job": f"sx1-r{index}", "startedAt": T0.isoformat()},
        **status,
    }


def finished(env: dict[str, Any], exit_code: int = 0) -> RunObservation:
    """A run that reported the envelope `env` (as the runner writes it: schedexec_runner.envelope.done, ...)."""
    return RunObservation(RunState.SUCCEEDED, envelope=envelope.parse(env), exit_code=exit_code)
