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

from schedexec_runner import Component, PollResult, RunContext, RunError, Schedule, contract, envelope, frame
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


def env(tmp_path: Path, args: str | None = None, **values: str) -> dict[str, str]:
    """The contract's variables for a run in `tmp_path`; `args` (raw text) go to the args file."""
    environ = {
        contract.COMPONENT: "testcomponent:component",
        contract.TERMINATION_LOG: str(tmp_path / "termination-log"),
        **values,
    }
    if args is not None:
        (tmp_path / "args.json").write_text(args, encoding="utf-8")
        environ[contract.ARGS_FILE] = str(tmp_path / "args.json")
    return environ


def mounted(tmp_path: Path, secret: str) -> dict[str, str]:
    """A credentials directory with the key apiKey, as the Secret volume would hold it."""
    mount = tmp_path / "credentials"
    mount.mkdir(parents=True)
    (mount / "apiKey").write_text(secret)
    return {contract.CREDENTIALS_DIR: str(mount)}


@pytest.fixture(autouse=True)
def _components_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(COMPONENTS))


@pytest.mark.parametrize(
    ("args", "values", "reason"),
    [
        ("not json", {contract.METHOD: "countdown"}, "InvalidArgs"),
        ("[1]", {contract.METHOD: "countdown"}, "InvalidArgs"),
        (None, {contract.METHOD: "countdown", contract.ARGS_FILE: "/not/mounted/args.json"}, "MissingInput"),
        (None, {contract.METHOD: ""}, "MissingInput"),
        (None, {contract.METHOD: "x", contract.COMPONENT: "nope.module:component"}, "ComponentNotFound"),
        (None, {contract.METHOD: "x", contract.COMPONENT: "testcomponent:missing"}, "ComponentNotFound"),
        (None, {contract.METHOD: "x", contract.CREDENTIALS_DIR: "/not/mounted"}, "CredentialsUnavailable"),
    ],
)
def test_bad_input_is_reported_as_an_error_envelope(
    tmp_path: Path, args: str | None, values: dict[str, str], reason: str
) -> None:
    outcome = run(env(tmp_path, args, **values))
    assert outcome["outcome"] == "error" and outcome["reason"] == reason


def test_an_args_file_that_is_not_utf8_is_invalid_args(tmp_path: Path) -> None:
    (tmp_path / "args.json").write_bytes(b"\xff\xfe{")
    outcome = run(env(tmp_path, **{contract.METHOD: "countdown", contract.ARGS_FILE: str(tmp_path / "args.json")}))
    assert outcome["reason"] == "InvalidArgs"


def test_args_come_from_the_args_file_intact_even_beyond_what_an_environment_variable_carries(
    tmp_path: Path,
) -> None:
    args = {"blob": "é" * 80_000, "n": 1}  # 160,000 bytes of UTF-8: more than one execve string may be (128 KiB)
    text = json.dumps(args, separators=(",", ":"), ensure_ascii=False)
    assert len(text.encode()) > 128 * 1024
    outcome = run(env(tmp_path, text, **{contract.METHOD: "digest"}))
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert outcome["result"]["sha256"] == sha256(canonical).hexdigest()


def test_without_an_args_file_the_args_are_empty(tmp_path: Path) -> None:
    """Only when the variable is unset and nothing is at the default path (a component run by hand)."""
    assert not Path(contract.DEFAULT_ARGS_FILE).exists()
    assert run(env(tmp_path, **{contract.METHOD: "reshape"})) == envelope.schedule(
        0, {"only": 1}, {"step": 1, "first": True}
    )


def test_credentials_are_read_from_the_mounted_secret_and_redacted_from_errors(tmp_path: Path) -> None:
    values = mounted(tmp_path, "canary-9f8e7d")
    assert run(env(tmp_path, **values, **{contract.METHOD: "files"})) == envelope.done(["apiKey"])
    verified = run(
        env(
            tmp_path,
            json.dumps({"expectedSha256": sha256(b"canary-9f8e7d").hexdigest()}),
            **values,
            **{contract.METHOD: "verifyCredentials"},
        )
    )
    assert verified == envelope.done({"verified": True})
    leaked = run(env(tmp_path, **values, **{contract.METHOD: "leak"}))
    assert "canary-9f8e7d" not in json.dumps(leaked) and "***" in leaked["message"]


def run_process(tmp_path: Path, method: str, args: dict[str, Any] | None = None, **extra: str) -> tuple[int, str]:
    code, text, _ = run_logged(tmp_path, method, args, **extra)
    return code, text


def run_logged(tmp_path: Path, method: str, args: dict[str, Any] | None = None, **extra: str) -> tuple[int, str, str]:
    """Exit code, termination message and stdout (the container's log) of one runner process."""
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(COMPONENTS), *sys.path]),
        **env(tmp_path, json.dumps(args or {}), **{contract.METHOD: method}),
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-m", "schedexec_runner"], env=environ, capture_output=True, text=True, timeout=60
    )
    message = tmp_path / "termination-log"
    return done.returncode, message.read_text() if message.exists() else "", done.stdout


def test_the_entrypoint_writes_exactly_one_envelope_and_exits_zero(tmp_path: Path) -> None:
    code, text = run_process(tmp_path, "countdown", {"left": 1})
    assert code == contract.EXIT_REPORTED
    assert envelope.decode(text)["outcome"] == "schedule"


def test_a_result_over_4_kib_goes_through_the_log_as_a_verifiable_frame(tmp_path: Path) -> None:
    code, text, log = run_logged(tmp_path, "huge", {"bytes": 300_000})
    assert code == contract.EXIT_REPORTED
    where = frame.pointer(text)
    assert where is not None and len(text) < 4096
    outcome = envelope.decode(frame.read(log, where, frame.DEFAULT_MAX_RESULT_BYTES).decode())
    assert outcome["outcome"] == "done" and len(outcome["result"]) == 300_000


@pytest.mark.parametrize(
    ("size", "extra", "limit"),
    [
        (2 * 1024 * 1024, {}, 1024 * 1024),  # over the default limit
        (20_000, {contract.MAX_RESULT_BYTES: "10000"}, 10_000),  # over the operator's setting
        (20_000, {contract.MAX_RESULT_BYTES: "0"}, 4096),  # the log path disabled: the termination message's
    ],
)
def test_a_result_over_the_limit_is_result_too_large_naming_the_limit(
    tmp_path: Path, size: int, extra: dict[str, str], limit: int
) -> None:
    code, text, log = run_logged(tmp_path, "huge", {"bytes": size}, **extra)
    assert code == contract.EXIT_REPORTED and frame.LINE_PREFIX not in log
    reported = envelope.decode(text)
    assert reported["reason"] == "ResultTooLarge" and f"the limit is {limit} bytes" in reported["message"]


def test_a_crashing_component_exits_non_zero_without_an_envelope(tmp_path: Path) -> None:
    code, text = run_process(tmp_path, "crash")
    assert code == 3 and text == ""


def test_credential_values_are_redacted_from_results_too(tmp_path: Path) -> None:
    refused = run(
        env(
            tmp_path,
            '{"expectedSha256": "other"}',
            **mounted(tmp_path, 'can"ary'),
            **{contract.METHOD: "verifyCredentials"},
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
    outcome = run(
        env(tmp_path, '{"left": 0, "port": 8080}', **mounted(tmp_path, secret), **{contract.METHOD: "countdown"})
    )
    envelope.validate(outcome)
    assert outcome["outcome"] == "done"


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("result", "complaint"),
    [
        ({"name": "caf\udce9"}, "done.result holds a string that is not valid Unicode"),
        ({"caf\udce9": 1}, "done.result holds a key that is not valid Unicode"),
        (deep(300), "done.result nests deeper than 64 levels"),
        (deep(5000), "nests far deeper than the limit of 64 levels"),  # past what json.dumps can recurse
        ({"ratio": float("nan")}, "Out of range float values are not JSON compliant"),
        (Schedule(30, {"cursor": deep(100)}), "schedule.args nests deeper than 64 levels"),
    ],
)
def test_a_result_the_operator_could_not_store_is_an_invalid_result_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: Any, complaint: str
) -> None:
    import testcomponent

    monkeypatch.setitem(testcomponent.component.commands, "poison", lambda args, run: result)
    outcome = run(env(tmp_path, **{contract.METHOD: "poison"}))
    assert outcome["outcome"] == "error" and outcome["reason"] == "InvalidResult"
    assert complaint in outcome["message"]
    assert envelope.decode(envelope.encode(outcome)) == outcome


@pytest.fixture
def poisoned_component(tmp_path: Path) -> Path:
    """A component module, importable by the runner process, whose `digest` returns a lone surrogate."""
    (tmp_path / "poisoned.py").write_text(
        "from schedexec_runner import Component\n"
        "component = Component('poisoned')\n"
        "component.command('digest')(lambda args, ctx: {'name': b'caf\\xe9'.decode('utf-8', 'surrogateescape')})\n"
    )
    return tmp_path


def test_a_poisoned_result_still_ends_the_process_with_a_readable_envelope(
    tmp_path: Path, poisoned_component: Path
) -> None:
    """The real entrypoint: a lone surrogate in the result (the component decoded bytes with
    surrogateescape) is reported, exit 0, the termination message valid UTF-8."""
    path = os.pathsep.join([str(poisoned_component), str(COMPONENTS), *sys.path])
    code, text = run_process(tmp_path, "digest", {}, **{contract.COMPONENT: "poisoned:component", "PYTHONPATH": path})
    assert code == contract.EXIT_REPORTED, text
    reported = envelope.decode(text)
    assert reported["reason"] == "InvalidResult" and "not valid Unicode" in reported["message"]


def test_credentials_are_given_byte_for_byte_never_stripped(tmp_path: Path) -> None:
    """A password may end in a space or a newline: the component gets exactly what the Secret holds."""
    secret = " pass word \n"
    verified = run(
        env(
            tmp_path,
            json.dumps({"expectedSha256": sha256(secret.encode()).hexdigest()}),
            **mounted(tmp_path, secret),
            **{contract.METHOD: "verifyCredentials"},
        )
    )
    assert verified == envelope.done({"verified": True})


def test_a_credential_is_redacted_with_and_without_its_surrounding_whitespace(tmp_path: Path) -> None:
    leaked = run(env(tmp_path, **mounted(tmp_path, "canary-9f8e7d\n"), **{contract.METHOD: "leak"}))
    assert "canary-9f8e7d" not in json.dumps(leaked) and "***" in leaked["message"]


def test_a_binary_credential_is_given_as_bytes_and_named_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A keystore in the Secret no longer fails every run: the text keys stay str in ctx.credentials, the
    binary one is bytes in ctx.binary_credentials, and stderr names the key, not its value."""
    import testcomponent

    values = mounted(tmp_path, "canary-9f8e7d")
    keystore = b"\x30\x82\xff\xfe keystore \x00\x9c"
    (Path(values[contract.CREDENTIALS_DIR]) / "client.p12").write_bytes(keystore)

    def show(args: dict[str, Any], ctx: RunContext) -> Any:
        return {
            "text": sorted(ctx.credentials),
            "binary": {key: sha256(value).hexdigest() for key, value in ctx.binary_credentials.items()},
        }

    monkeypatch.setitem(testcomponent.component.commands, "show", show)
    outcome = run(env(tmp_path, **values, **{contract.METHOD: "show"}))
    assert outcome == envelope.done({"text": ["apiKey"], "binary": {"client.p12": sha256(keystore).hexdigest()}})
    stderr = capsys.readouterr().err
    assert "'client.p12' is not UTF-8 text" in stderr and "keystore" not in stderr


def test_a_binary_credential_a_component_echoes_is_redacted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Latin-1 password is not UTF-8, so it went to binary_credentials, and a component that decoded and
    echoed it leaked it into the status (found in review)."""
    import testcomponent

    values = mounted(tmp_path, "canary-9f8e7d")
    password = "pässwörd-7c1e".encode("latin-1")
    (Path(values[contract.CREDENTIALS_DIR]) / "password").write_bytes(password)

    def echo(args: dict[str, Any], ctx: RunContext) -> Any:
        return {"echo": ctx.binary_credentials["password"].decode("latin-1")}

    monkeypatch.setitem(testcomponent.component.commands, "echo", echo)
    outcome = run(env(tmp_path, **values, **{contract.METHOD: "echo"}))
    assert "pässwörd" not in json.dumps(outcome, ensure_ascii=False)


def test_the_log_path_never_promises_more_than_a_frame_may_hold(tmp_path: Path) -> None:
    from schedexec_runner.main import max_result_bytes

    assert max_result_bytes({contract.MAX_RESULT_BYTES: str(1 << 40)}) == frame.MAX_FRAME_BYTES
    assert max_result_bytes({contract.MAX_RESULT_BYTES: "-5"}) == 0


def test_a_multi_line_credential_a_component_returns_escaped_is_redacted_from_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result that holds the config as text (`repr`, JSON) holds a PEM key's newlines, backslash and quotes
    escaped: redacted all the same, each line of it too, and nothing else."""
    import testcomponent

    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\\kq'\"ü\nok\n-----END PRIVATE KEY-----\n"

    def debug(args: dict[str, Any], ctx: RunContext) -> Any:
        cfg = {"privateKey": ctx.credentials["apiKey"], "shop": "ok"}
        lines = ctx.credentials["apiKey"].splitlines()
        return {"repr": repr(cfg), "json": json.dumps(cfg), "lines": f"{lines}", "shop": "ok"}

    monkeypatch.setitem(testcomponent.component.commands, "debug", debug)
    values = mounted(tmp_path, "placeholder")
    (Path(values[contract.CREDENTIALS_DIR]) / "apiKey").write_bytes(key.encode())
    outcome = run(env(tmp_path, **values, **{contract.METHOD: "debug"}))
    assert outcome == envelope.done(
        {
            "repr": "{'privateKey': '***', 'shop': 'ok'}",
            "json": '{"privateKey": "***", "shop": "ok"}',
            "lines": "['***', '***', 'ok', '***']",  # "ok" is too short to be a secret: never redacted
            "shop": "ok",
        }
    )
