"""Small builders of executions, statuses, run observations and the operator's policy for the table-driven
decision tests.

The policy and pod defaults are the operator's own: built from `OperatorSettings` defaults (the one place a
default is written, settings.py), never from the environment of the shell that runs the tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from schedexec import decisions, manifests, models
from schedexec.runs import RunObservation, RunState
from schedexec.settings import OperatorSettings
from schedexec_runner import envelope


class DefaultSettings(OperatorSettings):
    """The operator's settings from their defaults and the values given alone: no SCHEDEXEC_* variable."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
POLICY = DefaultSettings().policy()
"""The operator's default policy."""
POD_DEFAULTS = DefaultSettings().pod_defaults()
"""The operator's default pod defaults."""


def policy(**changes: Any) -> decisions.Policy:
    """The default policy with `changes`: the values a test depends on, written in the test (not validated, so
    a test may probe a value the settings refuse, such as no overdue grace)."""
    return dataclasses.replace(POLICY, **changes)


def pod_defaults(**changes: Any) -> manifests.PodDefaults:
    """The default pod defaults with `changes`."""
    return dataclasses.replace(POD_DEFAULTS, **changes)


METADATA = {
    "name": "sx1",
    "namespace": "ns",
    "uid": "u1",
    "generation": 1,
    "resourceVersion": "5",
    "creationTimestamp": T0.isoformat(),
}
"""The metadata of every built (and generated) execution: the decisions read little else of it."""


def run_job(index: int) -> str:
    """The name of run `index`'s Job of the built execution (manifests.job_name of METADATA)."""
    return manifests.job_name(METADATA["name"], METADATA["uid"], index)


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
        "currentRun": {"index": index, "job": run_job(index), "startedAt": T0.isoformat()},
        **status,
    }


def finished(env: dict[str, Any], exit_code: int = 0) -> RunObservation:
    """A run that reported the envelope `env` (as the runner writes it: schedexec_runner.envelope.done, ...)."""
    return RunObservation(RunState.SUCCEEDED, envelope=envelope.parse(env), exit_code=exit_code)
