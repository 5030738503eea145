"""The run's log (issue 27, item 3): `ctx.logger` and the traceback of a component's exception reach the pod's
log (stderr), never the termination message, and no credential value reaches either; and `async def`
functions (item 4) run as their plain counterparts do."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedexec_runner import Component, PollResult, RunContext, RunError, Schedule, contract, envelope, runlog
from schedexec_runner.main import run
from schedexec_runner.xsoar import CommandResults, polling_function
from tests.runner.test_runner import COMPONENTS, env, mounted
from tests.runner.test_sealed_config import sealed

KEY = "canary-logkey-51c0"


@pytest.fixture(autouse=True)
def _components_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(COMPONENTS))


def logged_run(environ: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The envelope of one in-process run and what it wrote to its log (stderr)."""
    log = io.StringIO()
    return run(environ, log), log.getvalue()


# --- the traceback and ctx.logger, credentials redacted ---------------------------------------------------------


def test_a_components_exception_leaves_its_traceback_in_the_log_and_its_message_in_the_envelope(
    tmp_path: Path,
) -> None:
    outcome, log = logged_run(
        env(tmp_path, '{"shop": "acme"}', **mounted(tmp_path, KEY), **{contract.METHOD: "log-and-raise"})
    )
    assert outcome == envelope.error("ComponentError", "ConnectionError: the shop refused the api key ***"), "as before"
    assert "INFO schedexec.component: connecting to the shop acme with the api key ***" in log
    assert "Traceback (most recent call last):" in log
    assert "in _open_shop" in log and "in log_and_raise" in log, "every frame, down to the one that raised"
    assert "ConnectionError: the shop refused the api key ***" in log
    assert KEY not in log and KEY not in json.dumps(outcome)


def test_the_sealed_configurations_values_are_redacted_from_the_log_too(tmp_path: Path) -> None:
    seal = sealed({"apiKey": KEY, "shop": "acme"})
    mount = tmp_path / "credentials"
    mount.mkdir()
    (mount / contract.CONFIG_KEY).write_bytes(seal.content)
    environ = env(
        tmp_path, json.dumps(seal.spec.args), **{contract.CREDENTIALS_DIR: str(mount), contract.METHOD: "log-and-raise"}
    )
    outcome, log = logged_run(environ)
    assert outcome["reason"] == "ComponentError" and "Traceback" in log
    assert KEY not in log and "acme" not in log, "every string of the sealed configuration"


def test_a_run_error_is_one_line_in_the_log_without_a_traceback() -> None:
    c = Component("x")
    c.command("no")(lambda args, run: (_ for _ in ()).throw(RunError("ShopDown", "the shop answered 503")))
    log = io.StringIO()
    assert c.run({}, RunContext(method="no", logger=runlog.run_logger({}, log))) == envelope.error(
        "ShopDown", "the shop answered 503"
    )
    assert "ERROR schedexec.component: the run failed: ShopDown: the shop answered 503" in log.getvalue()
    assert "Traceback" not in log.getvalue()


def test_the_log_never_reaches_the_termination_message(tmp_path: Path) -> None:
    """The real entrypoint: the logger's lines and the traceback are on stderr (the pod's log, for the kubelet),
    the termination message is the envelope alone."""
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(COMPONENTS), *sys.path]),
        **env(tmp_path, "{}", **mounted(tmp_path, KEY), **{contract.METHOD: "log-and-raise"}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "schedexec_runner"], env=environ, capture_output=True, text=True, timeout=60
    )
    message = (tmp_path / "termination-log").read_text()
    assert done.returncode == contract.EXIT_REPORTED
    assert envelope.decode(message) == envelope.error(
        "ComponentError", "ConnectionError: the shop refused the api key ***"
    )
    assert "connecting to the shop" in done.stderr and "Traceback" in done.stderr
    assert "Traceback" not in message and "connecting" not in message
    assert KEY not in done.stderr + done.stdout + message


SECRET = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="'\"\\"), min_size=3, max_size=20
).map(lambda text: f"§{text}")
"""A credential value; the § keeps it apart from what the log's own format writes (level, name, time). Printable,
as `%r` shows it unchanged: a value a component re-encodes (escaped, base64) is not recognised, as in the
envelope (docs/runner-contract.md)."""


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRET, around=st.sampled_from(["", " ", "\n", " \t"]), child=st.booleans())
def test_no_credential_value_reaches_the_log_however_it_is_logged(secret: str, around: str, child: bool) -> None:
    """In the message, its arguments, the exception's message and traceback, a child logger's lines; the value as
    stored (with whitespace around it) or stripped, as a component may well have stripped it."""
    stored = f"{around}{secret}{around}"
    log = io.StringIO()
    logger = runlog.run_logger({"apiKey": stored}, log)
    target = logger.getChild("client") if child else logger
    value = secret if around else stored
    target.warning(f"key {value}")
    target.info("key %s and %r", value, {"token": value})
    try:
        raise ValueError(f"refused {value}")
    except ValueError:
        target.exception("login failed for %s", value)
    target.error("stack", stack_info=True, extra={"unused": value})
    target.info("bad %d format", value)  # arguments that do not fit: logging would print them raw
    written = log.getvalue()
    assert secret.strip() not in written or len(secret.strip()) < runlog.MIN_SECRET_LENGTH
    assert written.count("***") >= 5 and "ValueError: refused ***" in written


def test_the_logger_writes_info_and_above_in_plain_lines() -> None:
    log = io.StringIO()
    logger = runlog.run_logger({}, log)
    logger.debug("hidden")
    logger.info("shown")
    assert "hidden" not in log.getvalue()
    assert log.getvalue().rstrip().endswith("INFO schedexec.component: shown")
    assert logger.level == logging.INFO and not logger.propagate


# --- async def functions ---------------------------------------------------------------------------------------


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(value=JSON)
def test_an_async_function_returns_what_its_plain_twin_returns(value: Any) -> None:
    c = Component("x")

    async def later(args: dict[str, Any], run: RunContext) -> Any:
        return value

    c.command("plain")(lambda args, run: value)
    c.command("async")(later)
    c.model("m")(later)
    c.metadata("mod")(later)
    plain = c.run({}, RunContext(method="plain"))
    assert c.run({}, RunContext(method="async")) == plain == envelope.done(value)
    assert c.run({}, RunContext(method="selectModel", function="m")) == plain
    assert c.run({}, RunContext(method="getMetaModel", module="mod")) == plain


def test_async_verify_credentials_schedules_and_polling_work() -> None:
    c = Component("x")

    @c.credentials
    async def verify(args: dict[str, Any], run: RunContext) -> Any:
        if args.get("bad"):
            raise PermissionError("wrong password")
        return {"plan": "gold"}

    @c.command("later")
    async def later(args: dict[str, Any], run: RunContext) -> Schedule:
        return Schedule(30, {"n": 2})

    @c.polling("poll", interval_seconds=15)
    async def poll(args: dict[str, Any], run: RunContext) -> PollResult:
        return PollResult({"done": True}, continue_to_poll=not args.get("ready"), args_for_next_run={"ready": True})

    assert c.run({}, RunContext(method="verifyCredentials")) == envelope.done({"verified": True, "plan": "gold"})
    assert c.run({"bad": 1}, RunContext(method="verifyCredentials"))["result"] == {
        "verified": False,
        "reason": "wrong password",
    }
    assert c.run({}, RunContext(method="later")) == envelope.schedule(30, {"n": 2})
    assert c.run({}, RunContext(method="poll")) == envelope.schedule(15, {"ready": True})
    assert c.run({"ready": True}, RunContext(method="poll")) == envelope.done({"done": True})


def test_an_async_xsoar_polling_command_schedules_and_finishes() -> None:
    c = Component("x")

    @c.command("sandbox-detonate")
    @polling_function("sandbox-detonate", interval=30, timeout=600)
    async def detonate(args: dict[str, Any], run: RunContext) -> PollResult:
        if args.get("job_id"):
            return PollResult(CommandResults(outputs={"verdict": "benign"}))
        return PollResult(None, continue_to_poll=True, args_for_next_run={**args, "job_id": "j1"})

    @c.command("plain-async")
    async def plain(args: dict[str, Any], run: RunContext) -> CommandResults:
        return CommandResults(outputs={"ok": True})

    scheduled = c.run({"polling": True}, RunContext(method="sandbox-detonate"))
    assert scheduled["outcome"] == "schedule" and scheduled["args"]["job_id"] == "j1"
    assert c.run(scheduled["args"], RunContext(method="sandbox-detonate")) == envelope.done(
        {"outputs": {"verdict": "benign"}}
    )
    assert c.run({}, RunContext(method="plain-async")) == envelope.done({"outputs": {"ok": True}})


def test_an_async_function_that_raises_fails_the_run_with_its_traceback_in_the_log() -> None:
    c = Component("x")

    @c.command("boom")
    async def boom(args: dict[str, Any], run: RunContext) -> Any:
        raise KeyError("missing")

    log = io.StringIO()
    outcome = c.run({}, RunContext(method="boom", logger=runlog.run_logger({}, log)))
    assert outcome == envelope.error("ComponentError", "KeyError: 'missing'")
    assert "Traceback" in log.getvalue() and "in boom" in log.getvalue()


def test_the_test_components_async_command_returns_its_result(tmp_path: Path) -> None:
    outcome, log = logged_run(env(tmp_path, '{"numbers": [1, 2, 39]}', **{contract.METHOD: "async-sum"}))
    assert outcome == envelope.done({"sum": 42, "async": True})
    assert "summing 3 numbers" in log
