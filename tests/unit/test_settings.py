"""Every operator setting a decision or a run's pod reads reaches it: settings.py builds `decisions.Policy` and
`manifests.PodDefaults` field by field (no reflection), and is the one place their defaults are written."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from schedexec import decisions, manifests, models
from schedexec.settings import OperatorSettings
from tests.unit.builders import POD_DEFAULTS, POLICY, DefaultSettings

POLICY_CHANGES: list[tuple[str, Any]] = [
    ("min_interval_seconds", 11),
    ("overdue_grace_seconds", 61),
    ("start_failure_grace_seconds", 31),
    ("unschedulable_grace_seconds", 121),
    ("log_tail_in_status", True),
    ("run_retention_seconds", 0),
    ("job_ttl_seconds", 7200),
    ("progress_events", True),
    ("inline_result_bytes", 2048),
    ("default_run_resources", models.ResourceRequirements(requests={"cpu": "100m"})),
    ("max_run_resources", {"cpu": "2"}),
]
"""A setting of each Policy field, and a value other than its default."""

POD_CHANGES: list[tuple[str, Any]] = [
    ("run_as_user", 1000),
    ("job_ttl_seconds", 7200),
    ("max_result_bytes", 0),
    ("run_pod_template", models.RunPodTemplate(priority_class_name="batch")),
    ("default_run_resources", models.ResourceRequirements(limits={"memory": "256Mi"})),
    ("elasticio_receiver_image", "registry.example/runner:1"),
]
"""A setting of each PodDefaults field, and a value other than its default."""


@pytest.mark.parametrize(
    ("kind", "changes"), [(decisions.Policy, POLICY_CHANGES), (manifests.PodDefaults, POD_CHANGES)]
)
def test_the_tables_name_every_field(kind: Any, changes: list[tuple[str, Any]]) -> None:
    assert [name for name, _ in changes] == [field.name for field in dataclasses.fields(kind)]


@pytest.mark.parametrize(("setting", "value"), POLICY_CHANGES)
def test_each_policy_field_is_the_setting_of_the_same_name(setting: str, value: Any) -> None:
    assert getattr(POLICY, setting) != value
    policy = DefaultSettings.model_validate({setting: value}).policy()
    assert policy == dataclasses.replace(POLICY, **{setting: value}), "that field changed, and no other"


@pytest.mark.parametrize(("setting", "value"), POD_CHANGES)
def test_each_pod_default_is_the_setting_of_the_same_name(setting: str, value: Any) -> None:
    assert getattr(POD_DEFAULTS, setting) != value
    defaults = DefaultSettings.model_validate({setting: value}).pod_defaults()
    assert defaults == dataclasses.replace(POD_DEFAULTS, **{setting: value}), "that field changed, and no other"


def test_the_environment_reaches_the_policy_and_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDEXEC_MIN_INTERVAL_SECONDS", "42")
    monkeypatch.setenv("SCHEDEXEC_RUN_AS_USER", "4242")
    settings = OperatorSettings()
    assert settings.policy().min_interval_seconds == 42
    assert settings.pod_defaults().run_as_user == 4242


CONFIGURATION = Path(__file__).parents[2] / "docs" / "configuration.md"


def shown_default(value: Any) -> str:
    """A default as the configuration table (docs/configuration.md) shows it."""
    return "unset" if value is None else f"`{json.dumps(value) if isinstance(value, bool | list) else value}`"


def test_the_configuration_docs_list_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(SCHEDEXEC_[A-Z_]+)` \| ([^|]*?) \|", CONFIGURATION.read_text(), re.MULTILINE))
    settings = DefaultSettings()
    expected = {
        f"SCHEDEXEC_{name.upper()}": shown_default(getattr(settings, name)) for name in OperatorSettings.model_fields
    }
    assert {name: rows.get(name) for name in expected} == expected


def test_a_run_retention_past_the_jobs_own_ttl_is_refused_at_start() -> None:
    """The Job controller deletes a finished Job at its TTL: a longer retention would be a promise the status
    cannot keep."""
    with pytest.raises(ValueError, match=r"run_retention_seconds \(7200\) must not exceed job_ttl_seconds"):
        DefaultSettings.model_validate({"run_retention_seconds": 7200, "job_ttl_seconds": 3600})
    assert DefaultSettings.model_validate({"run_retention_seconds": 3600, "job_ttl_seconds": 3600})
