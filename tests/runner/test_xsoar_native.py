"""XSOAR integrations as they are: an integration's unmodified .py runs through the runner, one command
per run, with `demisto` and CommonServerPython written for schedexec (schedexec_runner.xsoar_native).

The real integrations come from demisto/content, copied byte for byte under tests/thirdparty/
demisto-content (PROVENANCE.md names the repository, the commit and the licence):
- Arcanna.AI (Packs/Arcanna/Integrations/ArcannaAI, ArcannaAI.py at commit
  ff65fac5b311698f34ba8235f2a266a1068a9c34), its polling command `arcanna-get-event-status`
  (`polling_function` + `PollResult`);
- CAPE sandbox (Packs/CapeSandbox/Integrations/CapeSandbox, CapeSandbox.py at commit
  f69c5798837446f455438eb6fda89b0799313339), whose `cape-url-submit` creates a task and schedules
  `cape-task-poll` (`ScheduledCommand`), and which caches its API token in the integration context.
They run against tests/components/xsoar/fakevendor.py, which counts every call. The sequence is carried
out as the operator does: each run's command and args are what the previous run scheduled; the
integration context a schedule envelope carries (`context`) is the next run's context file, as the
operator's Secret (manifests.xsoar_context_secret) makes it."""

from __future__ import annotations

import ast
import builtins
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedexec_runner import contract, envelope, xsoar_native
from schedexec_runner.xsoar_native import IntegrationRun, ParamsError, read_params, run_integration

REPO = Path(__file__).resolve().parents[2]
THIRDPARTY = REPO / "tests" / "thirdparty" / "demisto-content"
ARCANNA = THIRDPARTY / "ArcannaAI" / "ArcannaAI.py"
CAPE = THIRDPARTY / "CapeSandbox" / "CapeSandbox.py"
INTEGRATIONS = [ARCANNA, CAPE]
sys.path.insert(0, str(REPO / "tests" / "components" / "xsoar"))
import fakevendor  # noqa: E402


@pytest.fixture
def vendor() -> Iterator[tuple[str, fakevendor.Vendor]]:
    server, state = fakevendor.serve(0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def run_sequence(
    tmp_path: Path,
    integration: Path,
    method: str,
    args: dict[str, Any],
    params: dict[str, str],
    credentials: dict[str, str],
    limit: int = 10,
) -> list[tuple[str, dict[str, Any], str]]:
    """The runner process, run after run as the operator runs it: (method, envelope, stderr) per run."""
    secrets = tmp_path / "credentials"
    secrets.mkdir(exist_ok=True)
    for key, value in credentials.items():
        (secrets / key).write_text(value, encoding="utf-8")
    context_in = tmp_path / "context.json"
    runs: list[tuple[str, dict[str, Any], str]] = []
    for index in range(1, limit + 1):
        (tmp_path / "args.json").write_text(json.dumps(args), encoding="utf-8")
        log = tmp_path / "termination-log"
        log.unlink(missing_ok=True)
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SCHEDEXEC_")},
            "PYTHONPATH": os.pathsep.join(sys.path),
            xsoar_native.INTEGRATION: str(integration),
            xsoar_native.CONTEXT_FILE: str(context_in),
            contract.CREDENTIALS_DIR: str(secrets),
            contract.TERMINATION_LOG: str(log),
            contract.ARGS_FILE: str(tmp_path / "args.json"),
            contract.METHOD: method,
            contract.RUN_INDEX: str(index),
            **{xsoar_native.PARAM_PREFIX + name: value for name, value in params.items()},
        }
        done = subprocess.run([sys.executable, "-m", "schedexec_runner"], env=environ, capture_output=True, timeout=60)
        assert done.returncode == contract.EXIT_REPORTED, done.stderr
        outcome = envelope.decode(log.read_text(encoding="utf-8"))
        runs.append((method, outcome, done.stderr.decode()))
        if "context" in outcome:  # what the operator keeps in the execution's context Secret
            context_in.write_text(json.dumps(outcome["context"]), encoding="utf-8")
        if outcome["outcome"] != envelope.SCHEDULE:
            return runs
        method, args = outcome.get("command", method), outcome["args"]
    raise AssertionError(f"the sequence did not end within {limit} runs: {[r[:2] for r in runs]}")


ARCANNA_CREDENTIALS = {"credentials.password": fakevendor.API_KEY}


def test_arcanna_polls_an_event_until_its_inference_is_ready(tmp_path: Path, vendor: Any) -> None:
    url, state = vendor
    runs = run_sequence(
        tmp_path,
        ARCANNA,
        "arcanna-get-event-status",
        {"job_id": "7", "event_id": "ev-9", "polling": "true"},
        {"url": url},
        ARCANNA_CREDENTIALS,
    )
    assert [method for method, _, _ in runs] == ["arcanna-get-event-status"] * fakevendor.READY_AFTER
    first, second, last = (outcome for _, outcome, _ in runs)
    polled = {"job_id": "7", "event_id": "ev-9", "polling": "true", "hide_polling_output": True}
    # Arcanna's decorator: interval=arg 'interval' (15), timeout=arg 'timeout' (120)
    assert first == envelope.schedule(
        15, polled, {"readableOutput": "Fetching Results:"}, command="arcanna-get-event-status", timeout_in_seconds=120
    )
    assert second == envelope.schedule(15, polled, None, command="arcanna-get-event-status", timeout_in_seconds=120)
    assert last["outcome"] == "done"
    assert last["result"]["outputs"] == {
        "Arcanna.Event": {"event_id": "ev-9", "status": "OK", "result": "escalate_alert", "confidence_score": 0.93}
    }
    assert last["result"]["readableOutput"].startswith("### Arcanna Event Status\n|event_id|ingest_timestamp|status|")
    assert state.calls == {"GET arcanna-status": fakevendor.READY_AFTER}
    # the API key came from the credentials Secret (credentials.password) and never shows in an outcome or log
    assert all(fakevendor.API_KEY.strip() not in json.dumps(o) + log for _, o, log in runs)


def test_arcanna_interval_and_timeout_come_from_its_args(tmp_path: Path, vendor: Any) -> None:
    url, _ = vendor
    args = {"job_id": "7", "event_id": "ev-1", "polling": "true", "interval": "40", "timeout": "90"}
    runs = run_sequence(tmp_path, ARCANNA, "arcanna-get-event-status", args, {"url": url}, ARCANNA_CREDENTIALS)
    assert {(o["nextRunInSeconds"], o["timeoutInSeconds"]) for _, o, _ in runs[:-1]} == {(40, 90)}


def test_an_arcanna_error_fails_the_run_with_xsoars_message(tmp_path: Path, vendor: Any) -> None:
    url, state = vendor
    runs = run_sequence(
        tmp_path,
        ARCANNA,
        "arcanna-get-event-status",
        {"job_id": "7", "event_id": "missing-1", "polling": "true"},
        {"url": url},
        ARCANNA_CREDENTIALS,
    )
    assert len(runs) == 1
    _, outcome, log = runs[0]
    assert outcome["outcome"] == "error" and outcome["reason"] == "ComponentError"
    # return_error's message, as the integration wrote it, with BaseClient's "Error in API call"
    assert outcome["message"].startswith(
        "Failed to execute arcanna-get-event-status command.\nError:\nError in API call [500] - Internal Server Error"
    )
    assert "event missing-1 is unknown to job 7" in outcome["message"]
    assert "Traceback" in log  # demisto.error(traceback.format_exc()) went to the run's log
    assert state.calls == {"GET arcanna-status": 1}


def test_a_wrong_api_key_is_the_vendors_401_in_xsoars_words(tmp_path: Path, vendor: Any) -> None:
    url, _ = vendor
    runs = run_sequence(
        tmp_path, ARCANNA, "arcanna-get-event-status", {"event_id": "e"}, {"url": url}, {"credentials.password": "x"}
    )
    assert "Error in API call [401] - Unauthorized" in runs[0][1]["message"]


def test_arcanna_sends_an_event_once_a_command_without_polling(tmp_path: Path, vendor: Any) -> None:
    url, state = vendor
    args = {"job_id": "7", "title": "t", "event_json": json.dumps({"a": 1})}
    runs = run_sequence(tmp_path, ARCANNA, "arcanna-send-event", args, {"url": url}, ARCANNA_CREDENTIALS)
    assert len(runs) == 1 and runs[0][1]["outcome"] == "done"
    assert runs[0][1]["result"]["outputs"]["Arcanna.Event(val.job_id && val.job_id === obj.job_id)"]["event_id"]
    assert state.calls == {"POST arcanna-create": 1}


CAPE_CREDENTIALS = {"credentials.identifier": fakevendor.USERNAME, "credentials.password": fakevendor.PASSWORD}


def test_cape_submits_a_url_once_then_polls_its_task_until_reported(tmp_path: Path, vendor: Any) -> None:
    url, state = vendor
    args = {"url": "http://sample.example/x", "polling": "true", "pollingInterval": "10"}
    runs = run_sequence(tmp_path, CAPE, "cape-url-submit", args, {"url": url}, CAPE_CREDENTIALS)
    assert [method for method, _, _ in runs] == ["cape-url-submit"] + ["cape-task-poll"] * fakevendor.READY_AFTER
    submitted, *polls, reported = (outcome for _, outcome, _ in runs)
    assert submitted["outcome"] == "schedule" and submitted["command"] == "cape-task-poll"
    assert (submitted["nextRunInSeconds"], submitted["timeoutInSeconds"]) == (10, 900)  # pollingInterval, 15 min
    assert submitted["args"] == {**args, "task_id": "1", "outputs_prefix": "Cape.Task.Url"}
    assert submitted["partialResult"]["outputs"] == {"id": 1, "target": "http://sample.example/x", "status": "pending"}
    # cape-task-poll: polling_function(interval=60, timeout=900), the status as partial result
    assert all((p["nextRunInSeconds"], p["timeoutInSeconds"]) == (60, 900) for p in polls)
    assert polls[0]["partialResult"]["outputs"] == {"id": "1", "status": "running"}
    assert reported["outcome"] == "done"
    report_file, view = reported["result"]
    assert report_file["File"] == "cape_task_1_report.zip" and report_file["Size"] == 22
    assert view["outputs"] == {"id": 1, "target": "http://sample.example/x", "status": "reported"}
    assert view["readableOutput"].startswith("### CapeSandbox Task 1\n|Id|Target|")
    # the create call once; the token once: the next runs found it in the integration context
    assert state.calls == {
        "POST cape-token": 1,
        "POST cape-create": 1,
        "GET cape-status": fakevendor.READY_AFTER,
        "GET cape-view": 1,
        "GET cape-report": 1,
    }
    # the token travels only as the first schedule's context (kept in a Secret), in no other part of an outcome
    assert submitted["context"]["auth_info"]["token"] == fakevendor.TOKEN
    assert all("context" not in outcome for outcome in (*polls, reported))  # unchanged: the Secret stays
    assert json.loads((tmp_path / "context.json").read_text())["auth_info"]["token"] == fakevendor.TOKEN
    shown = [{k: v for k, v in outcome.items() if k != "context"} for _, outcome, _ in runs]
    assert all(fakevendor.TOKEN not in json.dumps(outcome) for outcome in shown)


def test_a_url_cape_refuses_fails_the_sequence_with_xsoars_message(tmp_path: Path, vendor: Any) -> None:
    url, state = vendor
    args = {"url": "http://refused.example/", "polling": "true"}
    runs = run_sequence(tmp_path, CAPE, "cape-url-submit", args, {"url": url}, CAPE_CREDENTIALS)
    assert [outcome for _, outcome, _ in runs] == [
        envelope.error(
            "ComponentError",
            "Failed to execute command='cape-url-submit'. Error: CapeSandbox API call failed with error: "
            "URL http://refused.example/ refused by the sandbox policy",
        )
    ]
    assert state.calls == {"POST cape-token": 1, "POST cape-create": 1}


def test_cape_without_credentials_says_what_is_missing(tmp_path: Path, vendor: Any) -> None:
    url, state = vendor
    runs = run_sequence(tmp_path, CAPE, "test-module", {}, {"url": url}, {})
    assert runs[0][1] == envelope.error(
        "ComponentError",
        "Failed to execute command='test-module'. Error: Either API token or Username + Password must be provided.",
    )
    assert state.calls == {}


# --- every name the integrations use exists ---------------------------------------------------------------


def free_names(source: str) -> set[str]:
    """The names a module reads without defining, importing or taking them from builtins."""
    tree = ast.parse(source)
    bound: set[str] = set(dir(builtins))
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return read - bound


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=lambda p: p.stem)
def test_every_name_an_integration_takes_from_commonserverpython_exists(integration: Path) -> None:
    sys.path.insert(0, str(xsoar_native.MODULES))
    import CommonServerPython

    star = {name for name in dir(CommonServerPython) if not name.startswith("_")}
    assert free_names(integration.read_text(encoding="utf-8")) - star == set()


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=lambda p: p.stem)
def test_every_demisto_call_of_an_integration_exists(integration: Path) -> None:
    sys.path.insert(0, str(xsoar_native.MODULES))
    import demistomock

    tree = ast.parse(integration.read_text(encoding="utf-8"))
    called = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "demisto"
    }
    assert called and called - set(dir(demistomock)) == set()


# --- every spelling of a scheduled result, in-process ----------------------------------------------------


def run_source(tmp_path: Path, body: str, command: str = "cmd", args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run an integration made of `body` (XSOAR's usual header prepended, `main()` called as XSOAR does)."""
    path = tmp_path / "Integration.py"
    header = "import demistomock as demisto\nfrom CommonServerPython import *\nfrom CommonServerUserPython import *\n"
    footer = "\nif __name__ in ('__main__', '__builtin__', 'builtins'):\n    main()\n"
    path.write_text(header + textwrap.dedent(body) + footer, encoding="utf-8")
    return run_integration(path, IntegrationRun(command=command, args=dict(args or {})))


SPELLINGS = {
    "ScheduledCommand in CommandResults(scheduled_command=)": """
        return_results(CommandResults(readable_output=SHOWN, scheduled_command=ScheduledCommand(
            command=NEXT, next_run_in_seconds=SECONDS, args=ARGS, timeout_in_seconds=TIMEOUT)))
    """,
    "the seed's Common.ScheduledCommandConfiguration in CommandResults(scheduled_command_config=)": """
        schedule_config = Common.ScheduledCommandConfiguration(command=NEXT, next_run_in_seconds=SECONDS,
                                                               args=ARGS, timeout_in_seconds=TIMEOUT)
        return_results(CommandResults(readable_output=SHOWN, scheduled_command_config=schedule_config))
    """,
    "the seed's ScheduleMetadata": """
        return_results(CommandResults(readable_output=SHOWN, scheduled_command_config=ScheduleMetadata(
            command=NEXT, next_run_in_seconds=SECONDS, args=ARGS, timeout_in_seconds=TIMEOUT)))
    """,
    "a raw entry with PollingCommand through demisto.results": """
        demisto.results({'Type': entryTypes['note'], 'ContentsFormat': formats['markdown'], 'HumanReadable': SHOWN,
                         'PollingCommand': NEXT, 'NextRun': str(SECONDS), 'PollingArgs': ARGS,
                         'Timeout': str(TIMEOUT)})
    """,
    "polling_function and PollResult": """
        @polling_function(NEXT, interval=SECONDS, timeout=TIMEOUT, requires_polling_arg=False)
        def poll(args):
            return PollResult(response=None, continue_to_poll=True, args_for_next_run=ARGS,
                              partial_result=CommandResults(readable_output=SHOWN))
    """,
}


def spelled(body: str, command: str, seconds: int, args: dict[str, Any], timeout: int, shown: str) -> str:
    values = {"NEXT": command, "SECONDS": seconds, "ARGS": args, "TIMEOUT": timeout, "SHOWN": shown}
    constants = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    main = "def main():\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    if "polling_function" in body:
        main += "    return_results(poll(demisto.args()))\n"
    return constants + main


@pytest.mark.parametrize("spelling", SPELLINGS, ids=list(SPELLINGS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    seconds=st.integers(min_value=0, max_value=envelope.MAX_NEXT_RUN_SECONDS),
    args=st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=10) | st.integers(), max_size=3
    ),
    timeout=st.integers(min_value=1, max_value=envelope.MAX_TIMEOUT_SECONDS),
    shown=st.text(min_size=1, max_size=20),
)
def test_every_spelling_of_a_scheduled_result_is_a_schedule(
    tmp_path: Path, spelling: str, command: str, seconds: int, args: dict[str, Any], timeout: int, shown: str
) -> None:
    outcome = run_source(tmp_path, spelled(SPELLINGS[spelling], command, seconds, args, timeout, shown))
    expected_args = {**args, "hide_polling_output": True} if "polling_function" in spelling else args
    assert outcome["outcome"] == "schedule", outcome
    assert (outcome["command"], outcome["nextRunInSeconds"], outcome["args"], outcome["timeoutInSeconds"]) == (
        command,
        seconds,
        expected_args,
        timeout,
    )
    shown_in = outcome["partialResult"]
    assert shown in (shown_in.get("readableOutput"), shown_in.get("HumanReadable"))


def test_return_error_ends_the_run_with_its_message_and_nothing_after_it_runs(tmp_path: Path) -> None:
    outcome = run_source(
        tmp_path,
        """
        def main():
            return_error('Failed to execute cmd command.\\nError:\\nquota exceeded')
            return_results('never')
        """,
    )
    assert outcome == envelope.error("ComponentError", "Failed to execute cmd command.\nError:\nquota exceeded")


def test_an_exception_escaping_main_fails_the_run(tmp_path: Path) -> None:
    outcome = run_source(tmp_path, "def main():\n    raise DemistoException('no such sample', res=None)\n")
    assert outcome == envelope.error("ComponentError", "DemistoException: no such sample")


def test_results_become_the_result(tmp_path: Path) -> None:
    one = run_source(tmp_path, "def main():\n    return_results('ok')\n", command="test-module")
    assert one == envelope.done("ok")
    several = run_source(
        tmp_path, "def main():\n    return_results([CommandResults(outputs={'a': 1}), fileResult('r.zip', b'PK')])\n"
    )
    assert several["result"][0] == {"outputs": {"a": 1}}
    assert several["result"][1]["File"] == "r.zip" and several["result"][1]["Size"] == 2
    assert run_source(tmp_path, "def main():\n    pass\n") == envelope.done(None)


def test_two_scheduled_results_are_refused(tmp_path: Path) -> None:
    body = """
    def main():
        s = ScheduledCommand(command='c', next_run_in_seconds=10)
        return_results([CommandResults(scheduled_command=s), CommandResults(scheduled_command=s)])
    """
    outcome = run_source(tmp_path, body)
    assert outcome["reason"] == "InvalidResult" and "2 scheduled results" in outcome["message"]


def test_demisto_reads_the_run(tmp_path: Path) -> None:
    body = """
    def main():
        return_results({'command': demisto.command(), 'args': demisto.args(), 'arg': arg_to_number(demisto.args()['n']),
                        'flag': argToBoolean(demisto.args()['f'])})
    """
    outcome = run_source(tmp_path, body, command="x-y", args={"n": "3", "f": "yes"})
    assert outcome["result"] == {"command": "x-y", "args": {"n": "3", "f": "yes"}, "arg": 3, "flag": True}


def test_demisto_outside_a_run_says_so() -> None:
    with pytest.raises(RuntimeError, match="SCHEDEXEC_XSOAR_INTEGRATION"):
        xsoar_native.current()


def test_the_integration_context_is_the_previous_runs(tmp_path: Path) -> None:
    source = """
    def main():
        context = get_integration_context()
        set_integration_context({'token': 'tok', 'runs': context.get('runs', 0) + 1})
        return_results(CommandResults(readable_output=json.dumps(context), scheduled_command=ScheduledCommand(
            command='c', next_run_in_seconds=10, args={})))
    """
    path = write_integration(tmp_path, source)
    environ = {xsoar_native.INTEGRATION: str(path), xsoar_native.CONTEXT_FILE: str(tmp_path / "in.json")}
    first = xsoar_native.run_from_environment(environ, "c", {}, {}, "ns/x", xsoar_native.IntegrationRun("c", {}).logger)
    assert first["outcome"] == "schedule" and first["context"] == {"token": "tok", "runs": 1}
    (tmp_path / "in.json").write_text(json.dumps(first["context"]), encoding="utf-8")  # the operator's Secret
    second = xsoar_native.run_from_environment(
        environ, "c", {}, {}, "ns/x", xsoar_native.IntegrationRun("c", {}).logger
    )
    assert json.loads(second["partialResult"]["readableOutput"]) == {"token": "tok", "runs": 1}
    assert second["context"] == {"token": "tok", "runs": 2}
    envelope.validate(second)  # the operator accepts what the runner writes


def test_a_context_is_kept_only_for_a_next_run_and_only_when_changed(tmp_path: Path) -> None:
    source = """
    def main():
        if demisto.command() == 'set':
            set_integration_context({'token': 'tok'})
        return_results({'done': True})
    """
    path = write_integration(tmp_path, source)
    environ = {xsoar_native.INTEGRATION: str(path), xsoar_native.CONTEXT_FILE: str(tmp_path / "in.json")}
    for command in ("set", "read"):
        outcome = xsoar_native.run_from_environment(
            environ, command, {}, {}, "ns/x", xsoar_native.IntegrationRun(command, {}).logger
        )
        assert outcome == envelope.done({"done": True})  # no next run: nothing to keep, nothing said


def test_a_context_too_large_to_keep_fails_the_run_where_it_was_set(tmp_path: Path) -> None:
    source = f"""
    def main():
        set_integration_context({{'blob': 'x' * {envelope.MAX_CONTEXT_BYTES}}})
        scheduled = ScheduledCommand(command='c', next_run_in_seconds=1, args={{}})
        return_results(CommandResults(scheduled_command=scheduled))
    """
    path = write_integration(tmp_path, source)
    environ = {xsoar_native.INTEGRATION: str(path)}
    logger = xsoar_native.IntegrationRun("c", {}).logger
    outcome = xsoar_native.run_from_environment(environ, "c", {}, {}, "ns/x", logger)
    assert outcome["outcome"] == "error" and outcome["reason"] == "ContextTooLarge"
    assert str(envelope.MAX_CONTEXT_BYTES) in outcome["message"] and "xxxx" not in outcome["message"]


def write_integration(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "Integration.py"
    path.write_text(
        "import demistomock as demisto\nfrom CommonServerPython import *\n"
        + textwrap.dedent(source)
        + "\nif __name__ in ('__main__', '__builtin__', 'builtins'):\n    main()\n",
        encoding="utf-8",
    )
    return path


# --- params ------------------------------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(
    flat=st.dictionaries(names, st.text(max_size=8), max_size=4),
    nested=st.dictionaries(names, st.dictionaries(names, st.text(max_size=8), min_size=1, max_size=3), max_size=3),
)
def test_params_nest_dotted_keys_from_configmap_variables_and_secret_keys(
    flat: dict[str, str], nested: dict[str, dict[str, str]]
) -> None:
    nested = {f"n_{k}": v for k, v in nested.items()}  # never the same name as a flat one
    environ = {xsoar_native.PARAM_PREFIX + k: v for k, v in flat.items()}
    credentials = {f"{outer}.{inner}": value for outer, values in nested.items() for inner, value in values.items()}
    assert read_params(environ, credentials) == {**flat, **nested}


def test_params_json_keeps_types_and_the_secret_overrides() -> None:
    environ = {
        xsoar_native.PARAMS: json.dumps({"insecure": True, "url": "http://a", "credentials": {"identifier": "u"}}),
        xsoar_native.PARAM_PREFIX + "url": "http://b",
    }
    params = read_params(environ, {"credentials.password": "p"})
    assert params == {"insecure": True, "url": "http://b", "credentials": {"identifier": "u", "password": "p"}}


@pytest.mark.parametrize(
    ("environ", "credentials", "complaint"),
    [
        ({xsoar_native.PARAMS: "[1]"}, {}, "must be a JSON object"),
        ({xsoar_native.PARAMS: "{"}, {}, "is not JSON"),
        ({xsoar_native.PARAM_PREFIX + "url": "x"}, {"url.path": "y"}, "already a value"),
    ],
)
def test_unreadable_params_are_refused(environ: dict[str, str], credentials: dict[str, str], complaint: str) -> None:
    with pytest.raises(ParamsError, match=complaint):
        read_params(environ, credentials)
