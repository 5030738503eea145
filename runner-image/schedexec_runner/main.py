"""The runner entrypoint: one run of one component method, one envelope.

Reads the contract's environment variables and args file, loads the
component named by `SCHEDEXEC_COMPONENT`, calls it, and writes exactly one outcome envelope to
the termination log. Bad input (unknown method, args that are not a JSON
object, a component that cannot be imported) is itself reported as an error
envelope, so the operator always learns why a run failed. So is an outcome the
operator could not take (`reportable`): a result that is not JSON, nests deeper
than bounds.MAX_JSON_DEPTH or holds a lone surrogate is an `InvalidResult` error,
never a crash of the runner or a termination message that cannot be written.
Credential values are redacted from everything the runner writes or logs: a
run's result is stored in the execution's status, where credentials must never
appear.

elastic.io's `fields` (a configuration holding credentials) reach a run the
same way: the REST API seals them in the credentials Secret (contract.CONFIG_KEY)
and names their digest in the args; `unseal` checks the digest and gives them
to the component as args again, so verifyCredentials and selectModel see the
cfg elastic.io would give them (its text values in `ctx.credentials` too, where
a schedexec component looks for credentials), and every string of it is
redacted.

The component's log lines (`ctx.logger`) and the traceback of an exception
it raised go to stderr, the pod's log, through runlog.run_logger, which
redacts the same credential values (runlog.secret_forms); the termination
message holds the envelope alone.

The component's method runs inside the run's trace span when the run has a
`TRACEPARENT` and the image has OpenTelemetry (tracing.py); nothing otherwise.

Credentials are given byte for byte: a password may end in a space or a
newline, so nothing is stripped. A Secret key whose value is not UTF-8 (a
PKCS#12 keystore, a DER certificate) is given as bytes in
`ctx.binary_credentials`, not in `ctx.credentials`, whose values stay `str` as
elastic.io's cfg and XSOAR's params are; the runner says so on stderr, naming
the key, never its value.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from schedexec_runner import bounds, contract, envelope, frame, runlog, tracing, xsoar_native
from schedexec_runner.component import Component, RunContext


class InputError(Exception):
    """The run's inputs break the contract."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_args(environ: Mapping[str, str]) -> dict[str, Any]:
    """The args file ($SCHEDEXEC_ARGS_FILE, else the default path); no file at the default path means {}."""
    configured = environ.get(contract.ARGS_FILE)
    path = Path(configured or contract.DEFAULT_ARGS_FILE)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if configured:
            message = f"the args file {configured} ({contract.ARGS_FILE}) does not exist"
            raise InputError("MissingInput", message) from None
        raw = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("InvalidArgs", f"cannot read the args file {path}: {exc}") from None
    try:
        args = json.loads(raw or "{}")
    except (ValueError, RecursionError) as exc:
        raise InputError("InvalidArgs", f"the args file {path} is not JSON: {exc}") from None
    if not isinstance(args, dict):
        raise InputError("InvalidArgs", f"the args must be a JSON object, not {type(args).__name__}")
    return args


def read_credentials(
    environ: Mapping[str, str], diagnostics: TextIO | None = None
) -> tuple[dict[str, str], dict[str, bytes]]:
    """The mounted Secret, one entry per file, as given (never stripped): keys whose value is UTF-8 text,
    and keys whose value is not, as bytes (each named on `diagnostics`, stderr by default). Nothing if no
    Secret is mounted."""
    configured = environ.get(contract.CREDENTIALS_DIR)
    if not configured:
        return {}, {}
    directory = Path(configured)
    if not directory.is_dir():
        raise InputError("CredentialsUnavailable", f"credentials directory {configured} is not mounted")
    text: dict[str, str] = {}
    binary: dict[str, bytes] = {}
    for entry in sorted(directory.iterdir()):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        value = entry.read_bytes()
        try:
            text[entry.name] = value.decode("utf-8")
        except UnicodeDecodeError:
            binary[entry.name] = value
            print(
                f"schedexec-runner: the credential {entry.name!r} is not UTF-8 text; "
                "it is given as bytes in ctx.binary_credentials, not in ctx.credentials",
                file=diagnostics or sys.stderr,
            )
    return text, binary


def unseal(args: dict[str, Any], config: str | None) -> dict[str, Any]:
    """`args` with the configuration the REST API sealed in the credentials Secret (contract.CONFIG_KEY, the
    text `config`) merged in, when the args name its digest (contract.CONFIG_DIGEST); the digest itself is
    taken out. Args that name none are given as they are. A digest without the file, or a file that is not
    the one the digest names (someone planted a Secret under the name the API chose), is refused:
    CredentialsUnavailable, and the component never runs with a configuration it was not sent."""
    digest = args.get(contract.CONFIG_DIGEST)
    if digest is None:
        return args
    if config is None:
        raise InputError(
            "CredentialsUnavailable",
            f"the args name a configuration ({contract.CONFIG_DIGEST}) but the credentials Secret holds no "
            f"{contract.CONFIG_KEY}",
        )
    if hashlib.sha256(config.encode("utf-8")).hexdigest() != digest:
        raise InputError(
            "CredentialsUnavailable",
            f"the credentials Secret's {contract.CONFIG_KEY} is not the configuration this execution was created "
            f"with (its SHA-256 is not {contract.CONFIG_DIGEST}): the Secret was replaced",
        )
    sealed = _config_args(config)
    if sealed is None:
        raise InputError("CredentialsUnavailable", f"the credentials Secret's {contract.CONFIG_KEY} has no args object")
    return {**{key: value for key, value in args.items() if key != contract.CONFIG_DIGEST}, **sealed}


def _config_args(config: str) -> dict[str, Any] | None:
    """The `args` object of a sealed configuration, or None if it has none."""
    try:
        sealed = json.loads(config)
    except (ValueError, RecursionError):
        return None
    args = sealed.get("args") if isinstance(sealed, dict) else None
    return args if isinstance(args, dict) else None


def sealed_credentials(config: str | None) -> dict[str, str]:
    """The sealed configuration's top-level text values, as `ctx.credentials` holds a Secret's keys: a
    component that reads its credentials there (schedexec's way) finds them as one reading its cfg in the
    args (elastic.io's) does."""
    sealed = _config_args(config) if config is not None else None
    return {key: value for key, value in (sealed or {}).items() if isinstance(value, str)}


def config_secrets(config: str | None) -> list[str]:
    """Every string of a sealed configuration's args (keys are names, not secrets): each is redacted, since
    elastic.io's `fields` mix credentials with the rest of the configuration and nothing tells them apart."""
    pending: list[Any] = [_config_args(config) if config is not None else None]
    found: list[str] = []
    while pending:  # iterative: the API bounds the depth, the runner does not rely on it
        value = pending.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return found


def load_component(environ: Mapping[str, str]) -> Component:
    target = environ.get(contract.COMPONENT, "")
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise InputError("ComponentNotFound", f"{contract.COMPONENT} is not set (expected module:attribute)")
    try:
        component = getattr(importlib.import_module(module_name), attribute or "component")
    except (ImportError, AttributeError) as exc:
        raise InputError("ComponentNotFound", f"cannot load component {target!r}: {exc}") from None
    if not isinstance(component, Component):
        raise InputError("ComponentNotFound", f"{target!r} is a {type(component).__name__}, not a Component")
    return component


def reportable(outcome: Any) -> dict[str, Any]:
    """`outcome` as plain JSON that `envelope.validate` accepts, or an `InvalidResult` error that says why
    not: a value JSON cannot hold (an object, NaN), nesting deeper than bounds.MAX_JSON_DEPTH (or than
    Python can serialise), a lone surrogate, a reason or a schedule key out of range."""
    try:
        plain = json.loads(json.dumps(outcome, allow_nan=False))
        envelope.validate(plain)
    except RecursionError:
        message = f"the outcome nests far deeper than the limit of {bounds.MAX_JSON_DEPTH} levels"
        return envelope.error("InvalidResult", message)
    except (TypeError, ValueError) as exc:  # envelope.EnvelopeError is a ValueError
        return envelope.error("InvalidResult", f"the outcome cannot be reported: {exc}")
    return plain  # type: ignore[no-any-return]


def redact(outcome: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """`outcome` (plain JSON, see `reportable`) with every credential value replaced by *** in the strings
    of its payload (result, args, partialResult, message), never in the envelope's own fields. A value is
    found in every form `runlog.secret_forms` lists: stripped, line by line, escaped as `repr` and JSON write
    it (an exception message that formats the config dict holding it)."""
    values = runlog.secret_forms(secrets)

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return runlog.redact_text(value, values)
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    payload = ("result", "args", "partialResult", "message", "context")  # context: an XSOAR integration context
    return {k: clean(v) if k in payload else v for k, v in outcome.items()} if values else outcome


def run(environ: Mapping[str, str], diagnostics: TextIO | None = None) -> dict[str, Any]:
    """The envelope for the run `environ` describes; never raises. Notes for the run's log (not its
    outcome) go to `diagnostics`, stderr by default."""
    credentials: dict[str, str] = {}
    secrets: dict[str, str] = {}
    logger = runlog.run_logger(secrets, diagnostics)
    try:
        credentials, binary_credentials = read_credentials(environ, diagnostics)
        config = credentials.pop(contract.CONFIG_KEY, None)  # the API's sealed configuration: args, not a credential
        # a binary value a component echoes (decoded some way) is redacted too: as Latin-1, every byte a character
        secrets = {
            **credentials,
            **{key: value.decode("latin-1") for key, value in binary_credentials.items()},
            **{f"{contract.CONFIG_KEY}[{index}]": value for index, value in enumerate(config_secrets(config))},
        }
        logger = runlog.run_logger(secrets, diagnostics)
        given = read_args(environ)
        args = unseal(given, config)
        if contract.CONFIG_DIGEST in given:  # the sealed fields are this run's credentials: its text ones in ctx too
            credentials = {**sealed_credentials(config), **credentials}
        method = environ.get(contract.METHOD, "")
        # an image naming an XSOAR integration's own file runs it as it is (xsoar_native), not a Component
        component = None if environ.get(xsoar_native.INTEGRATION) else load_component(environ)
        if not method:
            raise InputError("MissingInput", f"{contract.METHOD} is not set")
        outcome: Any
        with tracing.component_span(method, environ):  # continues the run's trace (TRACEPARENT), if it can
            if component is None:
                execution = environ.get(contract.EXECUTION, "")
                outcome = xsoar_native.run_from_environment(environ, method, args, credentials, execution, logger)
            else:
                ctx = RunContext(
                    method=method,
                    module=environ.get(contract.MODULE) or None,
                    function=environ.get(contract.FUNCTION) or None,
                    run_index=int(environ.get(contract.RUN_INDEX, "1") or 1),
                    execution=environ.get(contract.EXECUTION, ""),
                    credentials=credentials,
                    binary_credentials=binary_credentials,
                    logger=logger,
                )
                outcome = component.run(args, ctx)
    except InputError as exc:
        outcome = envelope.error(exc.reason, str(exc))
    except Exception as exc:
        logger.error("the runner failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        outcome = envelope.error("RunnerError", f"{type(exc).__name__}: {exc}")
    return redact(reportable(outcome), secrets)


def termination_message(outcome: dict[str, Any], environ: Mapping[str, str], log: TextIO) -> str:
    """The envelope itself when it fits the termination message; for a larger `done` envelope within
    the operator's limit, a pointer to a frame written to `log` (schedexec_runner.frame); else
    ResultTooLarge, naming the limit."""
    fitted = envelope.fit(outcome)
    if fitted is not None:
        return fitted
    limit = max_result_bytes(environ)
    raw = json.dumps(outcome, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if outcome["outcome"] == envelope.DONE and len(raw) <= limit:
        return frame.write(raw, log)
    # the limit that applied: the operator's for a done envelope (the 4 KiB message limit if the log path is off)
    applied = max(limit, envelope.MAX_BYTES) if outcome["outcome"] == envelope.DONE else envelope.MAX_BYTES
    return envelope.too_large(outcome, applied)


def max_result_bytes(environ: Mapping[str, str]) -> int:
    """The largest result the operator accepts through the log ($SCHEDEXEC_MAX_RESULT_BYTES; 0: none), never
    more than a frame may hold (frame.MAX_FRAME_BYTES)."""
    try:
        configured = int(environ.get(contract.MAX_RESULT_BYTES) or frame.DEFAULT_MAX_RESULT_BYTES)
    except ValueError:
        return frame.DEFAULT_MAX_RESULT_BYTES
    return min(max(configured, 0), frame.MAX_FRAME_BYTES)


def main() -> int:
    environ = os.environ
    outcome = run(environ)
    try:
        text = termination_message(outcome, environ, sys.stdout)
    except (TypeError, ValueError, RecursionError) as exc:  # reportable() checked it: a bug in the runner
        text = envelope.encode(envelope.error("InvalidResult", f"the outcome cannot be serialised as JSON: {exc}"))
    target = Path(environ.get(contract.TERMINATION_LOG) or contract.DEFAULT_TERMINATION_LOG)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"schedexec-runner: cannot write the envelope to {target}: {exc}", file=sys.stderr)
        return contract.EXIT_NOT_REPORTED
    summary = (
        outcome["outcome"]
        if outcome["outcome"] != envelope.ERROR
        else f"error {outcome['reason']}: {outcome['message']}"
    )
    print(
        f"schedexec-runner: {environ.get(contract.EXECUTION, '')} "
        f"run {environ.get(contract.RUN_INDEX, '1')}: {summary}",
        file=sys.stderr,
    )
    return contract.EXIT_REPORTED


if __name__ == "__main__":
    sys.exit(main())
