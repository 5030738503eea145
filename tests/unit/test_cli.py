"""`schedexec operator` and `schedexec api` with invalid settings: one line per bad variable, naming it and the
reason, exit code 2, no traceback, nothing started (operator/schedexec/cli.py). A pod in CrashLoopBackOff shows
that line as its last log."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec import cli
from tests.unit import podtemplates


@pytest.fixture(autouse=True, scope="module")
def nothing_starts() -> Iterator[None]:
    """Invalid settings stop the command before the operator or the API would start."""

    def started(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("started with invalid settings")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "run_operator", started)
        patch.setattr(cli.api, "run", started)
        yield


def refused(command: str, **environment: str) -> list[str]:
    """The lines `schedexec COMMAND` prints on stderr with `environment`; it must exit with code 2."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for name, value in environment.items():
            patch.setenv(name, value)
        assert cli.main([command]) == cli.INVALID_SETTINGS
    assert out.getvalue() == "" and "Traceback" not in err.getvalue()
    return err.getvalue().splitlines()


@pytest.mark.parametrize(("template", "message"), podtemplates.REFUSED)
def test_a_refused_default_pod_template_stops_the_operator_with_one_line(
    template: dict[str, Any], message: str
) -> None:
    """The same message `kubectl apply` gives for the execution's template (models.RunPodTemplate)."""
    (line,) = refused("operator", SCHEDEXEC_RUN_POD_TEMPLATE=json.dumps(template))
    assert line.startswith("schedexec operator: invalid setting SCHEDEXEC_RUN_POD_TEMPLATE: ")
    assert message in line


def test_where_inside_the_template_is_named() -> None:
    template = {"tolerations": [{"key": "a", "operator": "Exists"}, {"effect": "Sometimes"}]}
    (line,) = refused("operator", SCHEDEXEC_RUN_POD_TEMPLATE=json.dumps(template))
    assert line.startswith("schedexec operator: invalid setting SCHEDEXEC_RUN_POD_TEMPLATE: tolerations.1.effect: ")
    assert "'NoSchedule', 'PreferNoSchedule' or 'NoExecute'" in line


@given(text=st.text(min_size=1).filter(lambda t: not _is_json(t)))
def test_a_value_that_is_not_json_is_named(text: str) -> None:
    for variable in ("SCHEDEXEC_NAMESPACES", "SCHEDEXEC_RUN_POD_TEMPLATE"):
        (line,) = refused("operator", **{variable: text.replace("\0", "")})
        assert line.startswith(f"schedexec operator: invalid setting {variable}: "), line


def _is_json(text: str) -> bool:
    try:
        json.loads(text.replace("\0", ""))
    except ValueError:
        return False
    return True


@given(running=st.integers(max_value=0), port=st.integers(min_value=65536) | st.integers(max_value=0))
def test_each_bad_variable_has_its_line(running: int, port: int) -> None:
    lines = refused("operator", SCHEDEXEC_MAX_RUNNING=str(running), SCHEDEXEC_METRICS_PORT=str(port))
    assert [line.split(":")[1] for line in lines] == [
        " invalid setting SCHEDEXEC_MAX_RUNNING",
        " invalid setting SCHEDEXEC_METRICS_PORT",
    ]
    assert "greater than or equal to 1" in lines[0]


def test_a_rule_across_settings_is_one_line_with_its_reason() -> None:
    (line,) = refused("operator", SCHEDEXEC_JOB_TTL_SECONDS="3600", SCHEDEXEC_RUN_RETENTION_SECONDS="7200")
    assert line.startswith("schedexec operator: invalid setting ")
    assert "run_retention_seconds (7200) must not exceed job_ttl_seconds (3600)" in line


def test_the_api_names_its_own_variables() -> None:
    (line,) = refused("api", SCHEDEXEC_API_AUDIENCES="[]")
    assert line.startswith("schedexec api: invalid setting SCHEDEXEC_API_AUDIENCES: ")
