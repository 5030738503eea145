"""The SDK and the runner entrypoint, run in-process and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from schedexec_runner import Component, PollResult, RunContext, RunError, Schedule, contract, envelope
from schedexec_runner.main import run

COMPONENTS = Path(__file__).resolve().parents[1] / "components"


def ctx(method: str, **kw: Any) -> RunContext:
    return RunContext(method=method, **kw)


def test_verify_credentials_follows_elastic_io_semantics() -> None:
    c = Component("x")

    @c.credentials
    def verify(args: dict[str, Any], run: RunContext) -> Any:
        if args.get("mode") == "raise":
            raise ValueError("wrong password")
        return {"plan": "gold"} if args.get("mode") == "dict" else None

    assert c.run({"mode": "raise"}, ctx("verifyCredentials"))["result"] == {
        "verified": False,
        "reason": "wrong password",
    }
    assert c.run({"mode": "dict"}, ctx("verifyCredentials"))["result"] == {"verified": True, "plan": "gold"}
    assert c.run({}, ctx("verifyCredentials"))["result"] == {"verified": True}


def test_select_model_and_metadata_dispatch_by_function_and_module() -> None:
    c = Component("x")
    c.model("getCategories")(lambda args, run: {"1": "Books"})
    c.metadata("products")(lambda args, run: {"in": {}, "out": {}})
    assert c.run({}, ctx("selectModel", function="getCategories")) == envelope.done({"1": "Books"})
    assert c.run({}, ctx("getMetaModel", module="products")) == envelope.done({"in": {}, "out": {}})
    unknown = c.run({}, ctx("selectModel", function="getColours"))
    assert unknown["reason"] == "UnknownMethod" and "getCategories" in unknown["message"]
    assert c.run({}, ctx("getMetaModel"))["reason"] == "MissingInput"


def test_commands_schedule_fail_and_raise() -> None:
    c = Component("x")
    c.command("later")(lambda args, run: Schedule(30, {"n": 2}, {"id": "r1"}))
    c.command("broken")(lambda args, run: (_ for _ in ()).throw(RunError("Remote", "remote is down")))
    c.command("buggy")(lambda args, run: 1 / 0)
    assert c.run({}, ctx("later")) == envelope.schedule(30, {"n": 2}, {"id": "r1"})
    assert c.run({}, ctx("broken")) == envelope.error("Remote", "remote is down")
    buggy = c.run({}, ctx("buggy"))
    assert buggy["reason"] == "ComponentError" and "ZeroDivisionError" in buggy["message"]
    assert c.run({}, ctx("nothing"))["reason"] == "UnknownMethod"


def test_polling_helper_turns_poll_results_into_schedules() -> None:
    c = Component("x")

    @c.polling("detonate", interval_seconds=15)
    def detonate(args: dict[str, Any], run: RunContext) -> PollResult:
        if args.get("status") == "complete":
            return PollResult(response={"verdict": "benign"})
        return PollResult(
            None, continue_to_poll=True, args_for_next_run={"id": "7", "status": "complete"}, partial_result={"id": "7"}
        )

    assert c.run({}, ctx("detonate")) == envelope.schedule(15, {"id": "7", "status": "complete"}, {"id": "7"})
    assert c.run({"status": "complete"}, ctx("detonate")) == envelope.done({"verdict": "benign"})


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {contract.COMPONENT: "testcomponent:component", contract.POD_ROOT: str(tmp_path), **values}


@pytest.fixture(autouse=True)
def _components_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(COMPONENTS))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({contract.METHOD: "countdown", contract.ARGS: "not json"}, "InvalidArgs"),
        ({contract.METHOD: "countdown", contract.ARGS: "[1]"}, "InvalidArgs"),
        ({contract.METHOD: ""}, "MissingInput"),
        ({contract.METHOD: "x", contract.COMPONENT: "nope.module:component"}, "ComponentNotFound"),
        ({contract.METHOD: "x", contract.COMPONENT: "testcomponent:missing"}, "ComponentNotFound"),
        ({contract.METHOD: "x", contract.CREDENTIALS_DIR: "/not/mounted"}, "CredentialsUnavailable"),
    ],
)
def test_bad_input_is_reported_as_an_error_envelope(tmp_path: Path, values: dict[str, str], reason: str) -> None:
    outcome = run(env(tmp_path, **values))
    assert outcome["outcome"] == "error" and outcome["reason"] == reason


def test_credentials_are_read_from_the_mounted_secret_and_redacted_from_errors(tmp_path: Path) -> None:
    mount = tmp_path / "var/run/schedexec/credentials"
    mount.mkdir(parents=True)
    (mount / "apiKey").write_text("canary-9f8e7d")
    values = {contract.CREDENTIALS_DIR: contract.DEFAULT_CREDENTIALS_DIR}
    assert run(env(tmp_path, **values, **{contract.METHOD: "files"})) == envelope.done(["apiKey"])
    verified = run(
        env(
            tmp_path,
            **values,
            **{
                contract.METHOD: "verifyCredentials",
                contract.ARGS: json.dumps({"expectedSha256": sha256(b"canary-9f8e7d").hexdigest()}),
            },
        )
    )
    assert verified == envelope.done({"verified": True})
    leaked = run(env(tmp_path, **values, **{contract.METHOD: "leak"}))
    assert "canary-9f8e7d" not in json.dumps(leaked) and "***" in leaked["message"]


def run_process(tmp_path: Path, method: str, args: dict[str, Any] | None = None) -> tuple[int, str]:
    (tmp_path / "dev").mkdir(exist_ok=True)
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(COMPONENTS), *sys.path]),
        **env(tmp_path, **{contract.METHOD: method, contract.ARGS: json.dumps(args or {})}),
    }
    done = subprocess.run([sys.executable, "-m", "schedexec_runner"], env=environ, capture_output=True, timeout=60)
    message = tmp_path / "dev/termination-log"
    return done.returncode, message.read_text() if message.exists() else ""


def test_the_entrypoint_writes_exactly_one_envelope_and_exits_zero(tmp_path: Path) -> None:
    code, text = run_process(tmp_path, "countdown", {"left": 1})
    assert code == contract.EXIT_REPORTED
    assert envelope.decode(text)["outcome"] == "schedule"


def test_an_oversized_result_is_reported_as_result_too_large(tmp_path: Path) -> None:
    code, text = run_process(tmp_path, "huge")
    assert code == contract.EXIT_REPORTED
    assert envelope.decode(text)["reason"] == "ResultTooLarge"


def test_a_crashing_component_exits_non_zero_without_an_envelope(tmp_path: Path) -> None:
    code, text = run_process(tmp_path, "crash")
    assert code == 3 and text == ""


def test_credential_values_are_redacted_from_results_too(tmp_path: Path) -> None:
    mount = tmp_path / "var/run/schedexec/credentials"
    mount.mkdir(parents=True)
    (mount / "apiKey").write_text('can"ary')
    refused = run(
        env(
            tmp_path,
            **{
                contract.CREDENTIALS_DIR: contract.DEFAULT_CREDENTIALS_DIR,
                contract.METHOD: "verifyCredentials",
                contract.ARGS: '{"expectedSha256": "other"}',
            },
        )
    )
    assert refused["result"] == {"verified": False, "reason": "the api key *** was refused"}


def test_a_result_that_is_not_json_is_an_invalid_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import testcomponent

    monkeypatch.setitem(testcomponent.component.commands, "object", lambda args, run: object())
    outcome = run(env(tmp_path, **{contract.METHOD: "object"}))
    assert outcome["reason"] == "InvalidResult"


@pytest.mark.parametrize("secret", ["8080", "true", "null", "done", "outcome"])
def test_redaction_never_breaks_the_envelope(tmp_path: Path, secret: str) -> None:
    mount = tmp_path / "var/run/schedexec/credentials"
    mount.mkdir(parents=True)
    (mount / "apiKey").write_text(secret)
    outcome = run(
        env(
            tmp_path,
            **{
                contract.CREDENTIALS_DIR: contract.DEFAULT_CREDENTIALS_DIR,
                contract.METHOD: "countdown",
                contract.ARGS: '{"left": 0, "port": 8080}',
            },
        )
    )
    envelope.validate(outcome)
    assert outcome["outcome"] == "done"
