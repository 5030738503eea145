"""One run's deadline (ScheduledExecutionSpec.run_timeout): spec.runTimeoutSeconds, or when unset 300 s capped
at the sequence's timeoutSeconds.

The CRD once defaulted runTimeoutSeconds to 300 server-side, so the CEL rule "runTimeoutSeconds must not exceed
timeoutSeconds" refused `timeoutSeconds: 60` alone with a message about a field the user never wrote. Now the
field has no CRD default and the operator computes the deadline; an explicit runTimeoutSeconds above
timeoutSeconds is still refused (tests/cluster/test_admission.py checks both on a real API server).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schedexec import manifests, models
from tests.unit.builders import POD_DEFAULTS, execution
from tests.unit.strategies import apply_defaults, spec_schema

TIMEOUTS = st.integers(1, 7 * 24 * 3600)
RUN_TIMEOUTS = st.integers(1, 24 * 3600)


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        ({}, 300),
        ({"timeoutSeconds": 60}, 60),
        ({"timeoutSeconds": 1}, 1),
        ({"timeoutSeconds": 299}, 299),
        ({"timeoutSeconds": 300}, 300),
        ({"timeoutSeconds": 3600}, 300),
        ({"runTimeoutSeconds": 30}, 30),
        ({"timeoutSeconds": 60, "runTimeoutSeconds": 30}, 30),
        ({"timeoutSeconds": 60, "runTimeoutSeconds": 60}, 60),
        ({"timeoutSeconds": 3600, "runTimeoutSeconds": 300}, 300),
        ({"timeoutSeconds": 7200, "runTimeoutSeconds": 3600}, 3600),
    ],
)
def test_the_run_timeout_is_the_given_one_else_300_or_the_shorter_sequence_timeout(
    timeouts: dict[str, int], expected: int
) -> None:
    ex = execution(**timeouts)
    assert ex.spec.run_timeout == expected
    assert manifests.job_manifest(ex, 1, {}, POD_DEFAULTS)["spec"]["activeDeadlineSeconds"] == expected


@given(timeout=TIMEOUTS, run_timeout=st.none() | RUN_TIMEOUTS)
def test_a_run_never_outlives_its_sequence_and_an_explicit_run_timeout_wins(
    timeout: int, run_timeout: int | None
) -> None:
    given_ = {} if run_timeout is None else {"runTimeoutSeconds": run_timeout}
    if run_timeout is not None and run_timeout > timeout:
        with pytest.raises(ValidationError, match=r"spec\.runTimeoutSeconds must not exceed"):
            execution(timeoutSeconds=timeout, **given_)
        return
    spec = execution(timeoutSeconds=timeout, **given_).spec
    assert spec.run_timeout == (run_timeout if run_timeout is not None else min(300, timeout))
    assert 1 <= spec.run_timeout <= timeout


@given(timeout=TIMEOUTS)
def test_the_crd_leaves_run_timeout_unset_so_a_short_sequence_timeout_alone_is_admitted(timeout: int) -> None:
    """The API server's defaulting, mirrored from the generated CRD: no runTimeoutSeconds appears, so the CEL
    rule (has() on both) has nothing to compare."""
    stored = apply_defaults(spec_schema(), {"component": {"image": "i"}, "method": "m", "timeoutSeconds": timeout})
    assert "runTimeoutSeconds" not in stored
    assert models.ScheduledExecutionSpec.model_validate(stored).run_timeout == min(300, timeout)


@given(timeout=st.integers(300, 7 * 24 * 3600))
def test_an_object_stored_with_the_old_default_gets_the_same_job_as_one_without(timeout: int) -> None:
    """Objects stored while the CRD defaulted runTimeoutSeconds to 300 (which the CEL rule admitted only with
    timeoutSeconds >= 300) keep their deadline, and their running Job is still the one the operator makes."""
    old: dict[str, Any] = {"timeoutSeconds": timeout, "runTimeoutSeconds": 300}
    before, after = execution(**old), execution(timeoutSeconds=timeout)
    assert before.spec.run_timeout == after.spec.run_timeout == 300
    assert manifests.job_manifest(before, 1, {}, POD_DEFAULTS) == manifests.job_manifest(after, 1, {}, POD_DEFAULTS)
