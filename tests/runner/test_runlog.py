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
import tempfile
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
"""A credential value; the § keeps it apart from what the log's own format writes (level, name, time). Printable
and free of quotes and backslashes, as `%r` shows it unchanged: escaped values have tests of their own below."""


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


# --- values escaped in a dict's repr or JSON: a PEM key, backslashes, quotes, non-ASCII --------------------------

LINE = st.text(st.characters(codec="utf-8", exclude_characters="*"), max_size=12)
"""A line of a credential value: any character (control ones, quotes, backslashes, non-ASCII, line breaks of
its own) but *, which the mask itself writes."""

MULTILINE_SECRET = st.builds(
    lambda lines, newline, end: newline.join(lines) + end,
    st.lists(LINE, min_size=1, max_size=5),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from(["", "\n"]),
)

FORMATS = {
    "f-string": lambda cfg: f"{cfg}",
    "repr": repr,
    "json": json.dumps,
    "json-unicode": lambda cfg: json.dumps(cfg, ensure_ascii=False),
}
"""How a component writes the config that holds a credential into an exception message or a log line."""


def written_forms(text: str) -> set[str]:
    """What `repr` (either quotes) and `json.dumps` (ASCII or not) write for `text` between the quotes, and
    `text` itself."""
    return {
        text,
        repr(text)[1:-1],
        repr(text + "'\"")[1:-4],  # single quotes, escaped: the quotes repr picks for a text holding both kinds
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    }


def surviving_lines(secret: str, text: str) -> list[str]:
    """The lines of `secret` long enough to be redacted (runlog.MIN_SECRET_LENGTH, whitespace around them not
    counted) that `text` still holds, as they are or escaped."""
    lines = {line.strip() for line in secret.splitlines() if len(line.strip()) >= runlog.MIN_SECRET_LENGTH}
    return sorted(line for line in lines if any(form in text for form in written_forms(line)))


def raise_with_config(shape: str, written: str) -> Any:
    """A component function that puts its config, holding the credential privateKey (`shape`: in a dict, a list,
    or as the list of its lines), into log lines and an exception message, written as FORMATS[`written`]."""

    def configure(args: dict[str, Any], ctx: RunContext) -> Any:
        key = ctx.credentials["privateKey"]
        shapes = {
            "dict": {"privateKey": key, "shop": "acme"},
            "list": ["acme", key],
            "lines": {"privateKey": key.splitlines(), "shop": "acme"},  # each line escaped apart: the whole never is
        }
        cfg = shapes[shape]
        ctx.logger.info("config %s", FORMATS[written](cfg))
        ctx.logger.warning("config %r, %s", cfg, cfg)
        raise ValueError(f"bad config {FORMATS[written](cfg)}")

    return configure


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=MULTILINE_SECRET, shape=st.sampled_from(["dict", "list", "lines"]), written=st.sampled_from(sorted(FORMATS))
)
def test_no_line_of_a_credential_survives_in_the_log_or_the_envelope_however_the_config_is_written(
    secret: str, shape: str, written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A component that raises `ValueError(f"bad config {cfg}")` with a PEM key in cfg: repr and JSON escape its
    newlines, backslashes, quotes and non-ASCII characters, and the escaped key once reached the pod's log and
    the envelope's message (status.error, Events) whole."""
    import testcomponent

    monkeypatch.setitem(testcomponent.component.commands, "configure", raise_with_config(shape, written))
    with tempfile.TemporaryDirectory() as folder:
        mount = Path(folder) / "credentials"
        mount.mkdir()
        (mount / "privateKey").write_bytes(secret.encode("utf-8"))
        outcome, log = logged_run(
            env(Path(folder), **{contract.CREDENTIALS_DIR: str(mount), contract.METHOD: "configure"})
        )
    assert outcome["reason"] == "ComponentError" and outcome["message"].startswith("ValueError: bad config ")
    assert "Traceback" in log and "acme" in log
    assert surviving_lines(secret, log) == [], log
    assert surviving_lines(secret, outcome["message"]) == [], outcome["message"]


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\xb/\"kq'é\nab\n-----END PRIVATE KEY-----\n"
"""A PEM-like key with a backslash, both quotes and a non-ASCII character, and a short line ("ab")."""


@pytest.mark.parametrize("written", sorted(FORMATS))
def test_a_pem_key_in_a_config_is_redacted_from_the_log_and_the_envelope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    import testcomponent

    monkeypatch.setitem(testcomponent.component.commands, "configure", raise_with_config("dict", written))
    mount = tmp_path / "credentials"
    mount.mkdir()
    (mount / "privateKey").write_text(PEM, encoding="utf-8")
    outcome, log = logged_run(env(tmp_path, **{contract.CREDENTIALS_DIR: str(mount), contract.METHOD: "configure"}))
    for text in (log, outcome["message"]):
        assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in text and "PRIVATE KEY" not in text
        assert "***" in text and "acme" in text
    assert outcome["message"] == f"ValueError: bad config {FORMATS[written]({'privateKey': '***', 'shop': 'acme'})}"


def test_a_message_without_the_credential_is_left_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not even where it holds a line of the key too short to be a secret ("ab")."""
    import testcomponent

    message = "bad config {'shop': 'ab', 'path': 'C:\\\\keys\\\\ab.pem', 'note': \"it's\\n\"}"

    def configure(args: dict[str, Any], ctx: RunContext) -> Any:
        ctx.logger.info("%s", message)
        raise ValueError(message)

    monkeypatch.setitem(testcomponent.component.commands, "configure", configure)
    mount = tmp_path / "credentials"
    mount.mkdir()
    (mount / "privateKey").write_text(PEM, encoding="utf-8")
    outcome, log = logged_run(env(tmp_path, **{contract.CREDENTIALS_DIR: str(mount), contract.METHOD: "configure"}))
    assert outcome == envelope.error("ComponentError", f"ValueError: {message}")
    assert f"INFO schedexec.component: {message}" in log and f"ValueError: {message}" in log
    assert "***" not in log


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
