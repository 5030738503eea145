"""Operator-wide default and maximum resources of runs (SCHEDEXEC_DEFAULT_RUN_RESOURCES, SCHEDEXEC_MAX_RUN_RESOURCES):
the defaults fill what spec.component.resources leaves unset, per resource name, the execution winning; a run
above the maximum fails before its first Job, naming the field, its value and the maximum."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec import decisions, manifests, models, runs
from schedexec.models import Phase, Reason
from schedexec.settings import OperatorSettings
from tests.unit import builders
from tests.unit.builders import T0


def res(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> models.ResourceRequirements:
    return models.ResourceRequirements(requests=requests, limits=limits)


MERGES: list[tuple[str, models.ResourceRequirements | None, models.ResourceRequirements | None, dict[str, Any]]] = [
    ("nothing anywhere", None, None, {}),
    ("the execution's own, no defaults", res({"cpu": "1"}), None, {"requests": {"cpu": "1"}}),
    (
        "defaults alone",
        None,
        res({"cpu": "100m"}, {"memory": "256Mi"}),
        {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
    ),
    (
        "the execution wins per resource",
        res({"cpu": "2"}),
        res({"cpu": "100m", "memory": "64Mi"}),
        {"requests": {"cpu": "2", "memory": "64Mi"}},
    ),
    (
        "limits merge per resource too",
        res(limits={"memory": "1Gi"}),
        res(limits={"memory": "256Mi", "cpu": "1"}),
        {"limits": {"memory": "1Gi", "cpu": "1"}},
    ),
    (
        "no default request where the execution sets the limit",
        res(limits={"cpu": "500m"}),
        res({"cpu": "1"}),
        {"limits": {"cpu": "500m"}},
    ),
    (
        "no default limit below the execution's request",
        res({"memory": "2Gi"}),
        res(limits={"memory": "1Gi"}),
        {"requests": {"memory": "2Gi"}},
    ),
    (
        "a default limit at or above the execution's request",
        res({"memory": "1Gi"}),
        res(limits={"memory": "1Gi"}),
        {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}},
    ),
]
"""(case, spec.component.resources, the operator's default, the container's resources)."""


@pytest.mark.parametrize(("own", "default", "expected"), [m[1:] for m in MERGES], ids=[m[0] for m in MERGES])
def test_defaults_fill_what_the_execution_leaves_unset(
    own: models.ResourceRequirements | None, default: models.ResourceRequirements | None, expected: dict[str, Any]
) -> None:
    assert manifests.run_resources(own, default) == expected


def test_the_jobs_container_carries_the_merged_resources() -> None:
    ex = builders.execution(component={"image": "img", "resources": {"requests": {"cpu": "2"}}})
    pod = builders.pod_defaults(default_run_resources=res({"cpu": "100m", "memory": "64Mi"}, {"memory": "256Mi"}))
    container = manifests.job_manifest(ex, 1, {}, pod)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    plain = manifests.job_manifest(builders.execution(), 1, {}, builders.POD_DEFAULTS)
    assert "resources" not in plain["spec"]["template"]["spec"]["containers"][0]


MAXIMA: list[
    tuple[models.ResourceRequirements | None, models.ResourceRequirements | None, dict[str, str], str | None]
] = [
    (res({"cpu": "2"}), None, {"cpu": "2"}, None),
    (
        res({"cpu": "2001m"}),
        None,
        {"cpu": "2"},
        "spec.component.resources.requests.cpu is 2001m, above the operator's maximum of 2 for cpu",
    ),
    (
        res(limits={"memory": "2Gi"}),
        None,
        {"memory": "1Gi"},
        "spec.component.resources.limits.memory is 2Gi, above the operator's maximum of 1Gi for memory",
    ),
    (
        None,
        res(limits={"memory": "2Gi"}),
        {"memory": "1Gi"},
        "limits.memory (the operator's default run resources) is 2Gi, above the operator's maximum of 1Gi for memory",
    ),
    (res({"nvidia.com/gpu": "1"}), None, {"cpu": "1"}, None),
    (res({"memory": "1G"}), None, {"memory": "1Gi"}, None),
    (
        res({"memory": "1.1Gi"}),
        None,
        {"memory": "1Gi"},
        "spec.component.resources.requests.memory is 1.1Gi, above the operator's maximum of 1Gi for memory",
    ),
]
"""(spec.component.resources, the default, the maximum, the start of the refusal or None)."""


@pytest.mark.parametrize(("own", "default", "maximum", "problem"), MAXIMA)
def test_the_maximum_names_the_field_the_value_and_the_maximum(
    own: models.ResourceRequirements | None,
    default: models.ResourceRequirements | None,
    maximum: dict[str, str],
    problem: str | None,
) -> None:
    found = manifests.resources_over(own, default, maximum)
    assert (found is None) == (problem is None)
    if problem is not None:
        assert found is not None and found.startswith(problem) and "SCHEDEXEC_MAX_RUN_RESOURCES" in found


def test_a_run_above_the_maximum_fails_before_its_first_job() -> None:
    ex = builders.execution(component={"image": "img", "resources": {"limits": {"memory": "8Gi"}}})
    policy = builders.policy(max_run_resources={"memory": "4Gi"})
    d = decisions.decide(ex, runs.MISSING, T0, True, policy)
    assert d.start_run is None
    assert d.status.phase is Phase.FAILED
    assert d.status.error is not None and d.status.error.reason == Reason.RESOURCES_EXCEED_MAXIMUM
    assert d.status.error.message.startswith("spec.component.resources.limits.memory is 8Gi")
    assert [e.reason for e in d.events] == [Reason.RESOURCES_EXCEED_MAXIMUM]
    within = decisions.decide(ex, runs.MISSING, T0, True, builders.policy(max_run_resources={"memory": "8Gi"}))
    assert within.start_run is not None


@given(st.integers(1, 10_000), st.integers(1, 10_000))
def test_a_request_is_refused_exactly_when_it_is_above_the_maximum(request: int, maximum: int) -> None:
    problem = manifests.resources_over(res({"cpu": f"{request}m"}), None, {"cpu": f"{maximum}m"})
    assert (problem is not None) == (request > maximum)


def test_the_settings_read_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDEXEC_DEFAULT_RUN_RESOURCES", '{"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}')
    monkeypatch.setenv("SCHEDEXEC_MAX_RUN_RESOURCES", '{"memory": "4Gi"}')
    settings = OperatorSettings()
    assert settings.pod_defaults().default_run_resources == res({"cpu": "100m"}, {"memory": "1Gi"})
    assert settings.policy().max_run_resources == {"memory": "4Gi"}


def test_a_setting_that_is_no_quantity_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDEXEC_MAX_RUN_RESOURCES", '{"memory": "lots"}')
    with pytest.raises(ValueError, match="max_run_resources"):
        OperatorSettings()
