"""The XSOAR layer: polling_function, PollResult, CommandResults and ScheduledCommand behave as in
Cortex XSOAR's CommonServerPython, become the right envelopes, and a command written in XSOAR's
style runs a whole polling sequence through the runner process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schedexec_runner import Component, PollResult, RunContext, Schedule, contract, envelope
from schedexec_runner.xsoar import (
    CommandResults,
    DemistoException,
    ScheduledCommand,
    arg_to_number,
    argToBoolean,
    polling_function,
)

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
HIDE = {"hide_polling_output": True}


def scheduled(args: dict[str, Any], interval: int = 30, timeout: int | None = 600) -> ScheduledCommand:
    return ScheduledCommand(command="cmd", next_run_in_seconds=interval, args=args, timeout_in_seconds=timeout)


def first_poll(args: dict[str, Any], **kw: Any) -> CommandResults:
    """What the first run of a command that goes on polling returns: the poll message and the schedule."""
    return CommandResults(readable_output="Fetching Results:", scheduled_command=scheduled(args, **kw))


@pytest.mark.parametrize(
    ("args", "polled", "options", "expected"),
    [
        pytest.param({}, PollResult("r", True), {}, "r", id="no polling arg: runs once, returns the response"),
        pytest.param({"polling": "false"}, PollResult("r", True), {}, "r", id="polling arg false: runs once"),
        pytest.param({"polling": "No"}, PollResult("r", True), {}, "r", id="polling arg no: runs once"),
        pytest.param(
            {"polling": "true"},
            PollResult("r", True),
            {},
            first_poll({"polling": "true", **HIDE}),
            id="first run: the poll message, the same args, hide_polling_output for later runs",
        ),
        pytest.param(
            {"polling": True, **HIDE},
            PollResult("r", True),
            {},
            CommandResults(scheduled_command=scheduled({"polling": True, **HIDE})),
            id="later run: no output",
        ),
        pytest.param({"polling": True}, PollResult("r", False), {}, "r", id="done: the response"),
        pytest.param({"polling": True}, PollResult("r"), {}, "r", id="continue_to_poll defaults to false"),
        pytest.param({"polling": True}, PollResult("r", lambda: False), {}, "r", id="continue_to_poll callable, false"),
        pytest.param(
            {"polling": True},
            PollResult("r", lambda: True),
            {},
            first_poll({"polling": True, **HIDE}),
            id="continue_to_poll callable, true",
        ),
        pytest.param(
            {"polling": True, "a": 1},
            PollResult(None, True, args_for_next_run={"polling": True, "b": 2}),
            {},
            first_poll({"polling": True, "b": 2, **HIDE}),
            id="args_for_next_run replace the args (not merged)",
        ),
        pytest.param(
            {"polling": True, "a": 1},
            PollResult(None, True, args_for_next_run={"b": 2}),
            {},
            first_poll({"b": 2, **HIDE}),
            id="as in XSOAR the polling arg is not added to args_for_next_run",
        ),
        pytest.param(
            {"polling": True, "a": 1},
            PollResult(None, True, args_for_next_run={}),
            {},
            first_poll({"polling": True, "a": 1, **HIDE}),
            id="empty args_for_next_run fall back to the same args",
        ),
        pytest.param(
            {"polling": True, **HIDE},
            PollResult(None, True, partial_result=CommandResults(outputs={"jobId": "j"}, readable_output="running")),
            {},
            CommandResults(
                outputs={"jobId": "j"},
                readable_output="running",
                scheduled_command=scheduled({"polling": True, **HIDE}),
            ),
            id="a partial result is shown, on later runs too",
        ),
        pytest.param(
            {"polling": True},
            PollResult(None, True, partial_result={"jobId": "j"}),
            {},
            CommandResults(outputs={"jobId": "j"}, scheduled_command=scheduled({"polling": True, **HIDE})),
            id="a JSON partial result becomes the outputs",
        ),
        pytest.param(
            {},
            PollResult(None, True),
            {"requires_polling_arg": False},
            first_poll(HIDE),
            id="requires_polling_arg false: polls without the arg",
        ),
        pytest.param(
            {"ongoing": "yes"},
            PollResult(None, True),
            {"polling_arg_name": "ongoing"},
            first_poll({"ongoing": "yes", **HIDE}),
            id="polling_arg_name names the arg",
        ),
        pytest.param(
            {"polling": True},
            PollResult("r", True),
            {"polling_arg_name": "ongoing"},
            "r",
            id="polling_arg_name: other args do not count",
        ),
        pytest.param(
            {"polling": True},
            PollResult(None, True),
            {"interval": 15, "timeout": 120, "poll_message": "Detonating..."},
            CommandResults(
                readable_output="Detonating...",
                scheduled_command=scheduled({"polling": True, **HIDE}, interval=15, timeout=120),
            ),
            id="interval, timeout and poll_message of the decorator",
        ),
        pytest.param(
            {"polling": True, "interval_in_seconds": "45", "timeout_in_seconds": 90},
            PollResult(None, True),
            {"interval": 15, "timeout": 120},
            first_poll(
                {"polling": True, "interval_in_seconds": "45", "timeout_in_seconds": 90, **HIDE},
                interval=45,
                timeout=90,
            ),
            id="interval_in_seconds and timeout_in_seconds args override the decorator",
        ),
        pytest.param(
            {"polling": True, "interval_in_seconds": ""},
            PollResult(None, True, next_run_in_seconds=5),
            {},
            first_poll({"polling": True, "interval_in_seconds": "", **HIDE}, interval=5),
            id="next_run_in_seconds overrides the interval once; an empty arg is no override",
        ),
    ],
)
def test_polling_function_behaves_as_in_xsoar(
    args: dict[str, Any], polled: PollResult, options: dict[str, Any], expected: Any
) -> None:
    given = json.loads(json.dumps(args))

    @polling_function("cmd", **options)
    def command(args: dict[str, Any], client: str) -> PollResult:
        assert client == "client"
        return polled

    assert command(args, "client") == expected
    assert args == given, "the decorator must not change the args it was given"


@pytest.mark.parametrize(
    ("args", "polled", "error", "complaint"),
    [
        ({"polling": "maybe"}, PollResult(None, True), ValueError, "boolean-like"),
        ({"polling": True}, "not a PollResult", TypeError, "must return PollResult, not str"),
        ({"polling": True}, PollResult(None, "yes"), TypeError, "must be a bool or a callable"),  # type: ignore[arg-type]
        ({"polling": True, "interval_in_seconds": "soon"}, PollResult(None, True), ValueError, "Invalid number"),
    ],
)
def test_polling_function_refuses_what_xsoar_would_fail_on(
    args: dict[str, Any], polled: Any, error: type[Exception], complaint: str
) -> None:
    command = polling_function("cmd")(lambda args: polled)
    with pytest.raises(error, match=complaint):
        command(args)


def run_command(fn: Callable[[dict[str, Any], RunContext], Any], args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope of one run of `fn`, registered as the command `cmd` of a component."""
    component = Component("x")
    component.command("cmd")(fn)
    return component.run(args or {}, RunContext(method="cmd"))


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (CommandResults(), envelope.done(None)),
        (CommandResults(outputs={"a": 1}), envelope.done({"outputs": {"a": 1}})),
        (
            CommandResults(
                outputs_prefix="Sandbox.Report",
                outputs_key_field="jobId",
                outputs={"jobId": "j"},
                readable_output="done",
                raw_response={"raw": True},
            ),
            envelope.done(
                {
                    "outputsPrefix": "Sandbox.Report",
                    "outputsKeyField": "jobId",
                    "outputs": {"jobId": "j"},
                    "readableOutput": "done",
                    "rawResponse": {"raw": True},
                }
            ),
        ),
        (
            CommandResults(scheduled_command=ScheduledCommand("other-command", 30, {"x": 1}, 600, 3)),
            envelope.schedule(30, {"x": 1}, command="other-command", timeout_in_seconds=600, items_remaining=3),
        ),
        (
            CommandResults(readable_output="Fetching Results:", scheduled_command=ScheduledCommand("c", 30)),
            envelope.schedule(30, {}, {"readableOutput": "Fetching Results:"}, command="c"),
        ),
        (  # the operator raises it to its floor and records that it did
            CommandResults(scheduled_command=ScheduledCommand("c", 5, {})),
            envelope.schedule(5, {}, command="c"),
        ),
        (
            CommandResults(scheduled_command=ScheduledCommand("c", -3, {}, timeout_in_seconds=0, items_remaining=0)),
            envelope.schedule(0, {}, command="c", items_remaining=0),
        ),
        (
            CommandResults(scheduled_command=ScheduledCommand("c", 12.2, {})),
            envelope.schedule(13, {}, command="c"),
        ),
        ("plain", envelope.done("plain")),
        (
            Schedule(30, {"n": 2}, {"id": "r1"}, command="next", timeout_in_seconds=60, items_remaining=2),
            envelope.schedule(30, {"n": 2}, {"id": "r1"}, command="next", timeout_in_seconds=60, items_remaining=2),
        ),
    ],
)
def test_results_become_envelopes(returned: Any, expected: dict[str, Any]) -> None:
    assert run_command(lambda args, ctx: returned) == expected


@pytest.mark.parametrize(
    ("returned", "complaint"),
    [
        (CommandResults(scheduled_command=ScheduledCommand("bad name", 30)), "schedule.command must be a method name"),
        (CommandResults(scheduled_command=ScheduledCommand("c", "30")), "must be a number, not str"),  # type: ignore[arg-type]
        (CommandResults(scheduled_command=ScheduledCommand("c", 30, timeout_in_seconds=10**9)), "timeoutInSeconds"),
        (CommandResults(scheduled_command=ScheduledCommand("c", 30, items_remaining=-1)), "itemsRemaining"),
        (Schedule(30, {}, command="a b"), "schedule.command"),
    ],
)
def test_an_invalid_schedule_is_an_invalid_result_that_says_why(returned: Any, complaint: str) -> None:
    outcome = run_command(lambda args, ctx: returned)
    assert outcome["reason"] == "InvalidResult"
    assert complaint in outcome["message"] and type(returned).__name__ in outcome["message"]


def test_exceptions_fail_the_run_as_component_errors() -> None:
    def fail(args: dict[str, Any], ctx: RunContext) -> Any:
        raise DemistoException("the sandbox refused the sample")

    assert run_command(fail) == envelope.error("ComponentError", "DemistoException: the sandbox refused the sample")


def test_the_native_polling_helper_takes_a_callable_continue_to_poll_too() -> None:
    c = Component("x")
    c.polling("p", interval_seconds=12)(lambda args, ctx: PollResult("r", lambda: bool(args.get("more"))))
    assert c.run({"more": 1}, RunContext(method="p")) == envelope.schedule(12, {"more": 1})
    assert c.run({}, RunContext(method="p")) == envelope.done("r")


def test_scheduled_commands_are_always_supported() -> None:
    assert ScheduledCommand.supports_polling()
    ScheduledCommand.raise_error_if_not_supported()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("True", True), ("yes", True), ("false", False), ("NO", False)],
)
def test_arg_to_boolean(value: Any, expected: bool) -> None:
    assert argToBoolean(value) is expected


@pytest.mark.parametrize("value", ["", "maybe", 1, None])
def test_arg_to_boolean_refuses_other_values(value: Any) -> None:
    with pytest.raises(ValueError, match="boolean-like"):
        argToBoolean(value)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), (5, 5), ("30", 30), ("2.7", 2), (4.9, 4), ("-3", -3)]
)
def test_arg_to_number(value: Any, expected: int | None) -> None:
    assert arg_to_number(value, "n") == expected


@pytest.mark.parametrize(
    ("value", "required", "complaint"),
    [
        (None, True, 'Missing "n"'),
        ("soon", False, 'Invalid number: "n"'),
        (True, False, "Invalid"),
        ("inf", False, "Invalid"),
    ],
)
def test_arg_to_number_refuses(value: Any, required: bool, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        arg_to_number(value, "n", required=required)


def run_sequence(
    tmp_path: Path, method: str, args: dict[str, Any], limit: int = 10
) -> list[tuple[str, dict[str, Any]]]:
    """Runs the runner process as the operator would: each run's args (and command, if it names one)
    are what the previous run scheduled. Returns (method, envelope) per run."""
    runs: list[tuple[str, dict[str, Any]]] = []
    for index in range(1, limit + 1):
        (tmp_path / "args.json").write_text(json.dumps(args), encoding="utf-8")
        log = tmp_path / "termination-log"
        log.unlink(missing_ok=True)
        environ = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(COMPONENTS), *sys.path]),
            contract.COMPONENT: "testcomponent:component",
            contract.TERMINATION_LOG: str(log),
            contract.ARGS_FILE: str(tmp_path / "args.json"),
            contract.METHOD: method,
            contract.RUN_INDEX: str(index),
        }
        done = subprocess.run([sys.executable, "-m", "schedexec_runner"], env=environ, capture_output=True, timeout=60)
        assert done.returncode == contract.EXIT_REPORTED, done.stderr
        outcome = envelope.decode(log.read_text(encoding="utf-8"))
        runs.append((method, outcome))
        if outcome["outcome"] != envelope.SCHEDULE:
            return runs
        method, args = outcome.get("command", method), outcome["args"]
    raise AssertionError(f"the sequence did not end within {limit} runs: {runs}")


def test_an_xsoar_polling_command_submits_polls_three_times_and_returns(tmp_path: Path) -> None:
    runs = run_sequence(tmp_path, "xsoar-poll", {"polling": True, "sample": "s1"})
    assert [method for method, _ in runs] == ["xsoar-poll"] * 5
    first, *polls, last = [outcome for _, outcome in runs]
    job = {"polling": True, "sample": "s1", "job_id": "job-s1", "hide_polling_output": True}
    assert first == envelope.schedule(
        10, job, {"readableOutput": "Fetching Results:"}, command="xsoar-poll", timeout_in_seconds=600
    )
    assert polls == [
        envelope.schedule(
            10,
            {**job, "polls": n},
            {
                "outputsPrefix": "Sandbox.Job",
                "outputs": {"jobId": "job-s1", "status": "running", "polls": n},
                "readableOutput": f"Job job-s1 is still running (poll {n})",
            },
            command="xsoar-poll",
            timeout_in_seconds=600,
        )
        for n in (1, 2, 3)
    ]
    assert last == envelope.done(
        {
            "outputsPrefix": "Sandbox.Report",
            "outputsKeyField": "jobId",
            "outputs": {"jobId": "job-s1", "verdict": "benign", "polls": 4},
            "readableOutput": "Job job-s1: benign",
        }
    )


def test_a_schedule_naming_another_command_runs_that_command_next(tmp_path: Path) -> None:
    runs = run_sequence(
        tmp_path,
        "xsoar-submit",
        {"sample": "s2", "polls_needed": 1, "interval_in_seconds": 20, "timeout_in_seconds": 25},
    )
    assert [method for method, _ in runs] == ["xsoar-submit", "xsoar-poll", "xsoar-poll"]
    submitted = runs[0][1]
    assert submitted["command"] == "xsoar-poll" and submitted["itemsRemaining"] == 1
    assert submitted["partialResult"]["outputs"] == {"jobId": "job-s2"}
    # the component's timeout and interval travel with every schedule of the sequence
    assert [(o["nextRunInSeconds"], o["timeoutInSeconds"]) for _, o in runs[:2]] == [(20, 25), (20, 25)]
    assert runs[-1][1]["result"]["outputs"]["verdict"] == "benign"


def test_an_xsoar_polling_command_without_the_polling_arg_runs_once(tmp_path: Path) -> None:
    runs = run_sequence(tmp_path, "xsoar-poll", {"sample": "s3"})
    assert runs == [
        ("xsoar-poll", envelope.done({"outputsPrefix": "Sandbox.Submission", "outputs": {"jobId": "job-s3"}}))
    ]
