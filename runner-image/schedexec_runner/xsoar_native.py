"""The XSOAR runtime: run an integration's unmodified .py file as XSOAR would, one command per run.

Why: XSOAR integrations are Python files written against the `demisto` object and CommonServerPython,
with a `main()` that dispatches on `demisto.command()` and ends in `return_results(...)` or
`return_error(...)`. Their users want to run them as they are, not port them (schedexec_runner.xsoar is
the porting path). An image FROM the runner copies the integration's .py and sets
SCHEDEXEC_XSOAR_INTEGRATION to its path; the runner then, instead of loading a `Component`:

1. puts xsoar_modules/ (our `demistomock`, `CommonServerPython`, `CommonServerUserPython`, written for
   schedexec) first on sys.path, so the integration's own imports find them;
2. makes the run current (`current()`, what demistomock reads): `demisto.command()` is the run's method,
   `demisto.args()` its args, `demisto.params()` the integration's configuration (`read_params`), and
   the integration context what the previous run of the sequence left (`read_integration_context`);
3. executes the file as `__main__` (its `if __name__ in ('__main__', ...)` calls `main()`), and
4. turns the entries `demisto.results` received into the outcome envelope (`outcome`): an error entry
   (`return_error`) is an `error` with XSOAR's message, a scheduled result (every spelling:
   `ScheduledCommand`, `Common.ScheduledCommandConfiguration`, `ScheduleMetadata`, through
   `CommandResults(scheduled_command=...)`/`(scheduled_command_config=...)`, `polling_function`, or a raw
   entry with `PollingCommand`) a `schedule`, anything else `done`.

`return_error` exits the integration (`sys.exit(0)`, as in XSOAR); an exception that escapes `main()`
fails the run with ComponentError like a component's, its traceback in the run's log.

The integration context (tokens an integration caches) never goes into args, status or events: when
SCHEDEXEC_XSOAR_CONTEXT_FILE names a file, the run starts from its JSON object and, if the integration
changed it and the run schedules another, the schedule envelope carries the new one as `context`
(envelope.MAX_CONTEXT_BYTES at most). The operator keeps it in a Secret owned by the execution, written
before the status that schedules the next run, and mounts it into that run as the file
(docs/runner-contract.md). The runner has no API credentials, so the envelope is its only way out; a
context set by a run that ends the sequence (`done`, an error) has no next run and is not kept.
"""

from __future__ import annotations

import json
import logging
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schedexec_runner import contract, envelope
from schedexec_runner.xsoar import CommandResults, ScheduledCommand

INTEGRATION = "SCHEDEXEC_XSOAR_INTEGRATION"
"""Path of the integration's .py file in the image; set by the image (its Dockerfile's ENV)."""

PARAMS = "XSOAR_PARAMS"
"""A JSON object of params (a ConfigMap key through spec.podTemplate.envFrom, or the image's ENV); typed
values (a checkbox's true/false) keep their type here. Not SCHEDEXEC_*: a pod template may not set those."""

PARAM_PREFIX = "XSOAR_PARAM_"
"""Environment variables `XSOAR_PARAM_<name>` give the param `<name>` as text (a ConfigMap through
`envFrom: [{prefix: XSOAR_PARAM_, configMapRef: ...}]`; ConfigMap keys may hold dots, so `a.b` nests)."""

CONTEXT_FILE = contract.XSOAR_CONTEXT_FILE
"""Path of a JSON object: the integration context the run starts from (read-only mount)."""

MODULES = Path(__file__).resolve().parent / "xsoar_modules"
"""Where demistomock, CommonServerPython and CommonServerUserPython live (put first on sys.path)."""

POLLING_KEYS = ("PollingCommand", "NextRun", "PollingArgs", "Timeout", "PollingItemsRemaining")
"""A raw entry's scheduled-command keys (what XSOAR's CommandResults.to_context writes for a schedule)."""

ERROR_ENTRY = 4
"""XSOAR's entry type of an error (entryTypes['error'])."""


class ParamsError(ValueError):
    """The params given (XSOAR_PARAMS, a nested key) cannot be read; the run reports InvalidArgs."""


@dataclass
class IntegrationRun:
    """One run of an integration: what `demisto` reads, and the entries it was given."""

    command: str
    args: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    execution: str = ""
    integration_context: dict[str, Any] = field(default_factory=dict, repr=False)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("schedexec.xsoar"), repr=False)
    entries: list[Any] = field(default_factory=list)
    context_changed: bool = False

    def add(self, entry: Any) -> None:
        self.entries.append(entry)

    def log(self, level: str, message: Any, args: tuple[Any, ...]) -> None:
        """demisto.debug/info/error: XSOAR joins extra arguments to the message; so does this."""
        text = " ".join(str(part) for part in (message, *args))
        self.logger.log(logging.getLevelName(level.upper()), "%s", text)

    def set_integration_context(self, context: Any) -> None:
        if not isinstance(context, dict):
            raise TypeError(f"the integration context must be a dict, not {type(context).__name__}")
        json.dumps(context)  # refuse what cannot be kept, where the integration set it
        self.integration_context = context
        self.context_changed = True


_current: IntegrationRun | None = None


def current() -> IntegrationRun:
    """The run being carried out; `demisto` outside a run says what it needs."""
    if _current is None:
        raise RuntimeError(f"demisto is only available while schedexec runs an integration ({INTEGRATION})")
    return _current


def run_integration(path: Path, run: IntegrationRun) -> dict[str, Any]:
    """Execute the integration file `path` as `__main__` for `run`; its outcome envelope. Never raises."""
    global _current
    if str(MODULES) not in sys.path:
        sys.path.insert(0, str(MODULES))
    previous, _current = _current, run
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:  # return_error exits as in XSOAR; another code without an error entry says so
        if exc.code not in (None, 0) and not any(_error_text(entry) is not None for entry in run.entries):
            return envelope.error("ComponentError", f"the integration exited with status {exc.code}")
    except Exception as exc:
        run.logger.error("the integration raised %s: %s", type(exc).__name__, exc, exc_info=exc)
        return envelope.error("ComponentError", f"{type(exc).__name__}: {exc}")
    finally:
        _current = previous
    return outcome(run.entries)


def outcome(entries: list[Any]) -> dict[str, Any]:
    """The envelope for the entries a run produced: the first error entry's message; else the one scheduled
    result as a schedule (the entries' results its partial result); else done with the entries' results (one:
    itself; several: a list; none: null)."""
    for entry in entries:
        message = _error_text(entry)
        if message is not None:
            return envelope.error("ComponentError", message)
    scheduled = [(entry, schedule) for entry in entries if (schedule := scheduled_command(entry)) is not None]
    if len(scheduled) > 1:
        return envelope.error(
            "InvalidResult",
            f"the command returned {len(scheduled)} scheduled results; an execution runs one sequence, so one",
        )
    results = _combined([result for entry in entries if (result := entry_result(entry)) is not None])
    return scheduled[0][1].to_envelope(results) if scheduled else envelope.done(results)


def scheduled_command(entry: Any) -> ScheduledCommand | None:
    """The command `entry` schedules: a CommandResults' `scheduled_command`, or a raw entry's `PollingCommand`."""
    if isinstance(entry, CommandResults):
        return entry.scheduled_command
    if isinstance(entry, dict) and entry.get("PollingCommand"):
        timeout = entry.get("Timeout")
        items = entry.get("PollingItemsRemaining")
        return ScheduledCommand(
            command=str(entry["PollingCommand"]),
            next_run_in_seconds=float(entry.get("NextRun") or 0),
            args=dict(entry.get("PollingArgs") or {}),
            timeout_in_seconds=int(float(timeout)) if timeout not in (None, "") else None,
            items_remaining=int(items) if items not in (None, "") else None,
        )
    return None


def entry_result(entry: Any) -> Any:
    """What an entry shows as the run's result: a CommandResults' fields, a raw entry without its
    scheduling keys, or the value itself (`return_results('ok')`)."""
    if isinstance(entry, CommandResults):
        return entry.to_result()
    if isinstance(entry, dict) and entry.get("PollingCommand"):
        rest = {key: value for key, value in entry.items() if key not in POLLING_KEYS}
        return rest or None
    return entry


def _combined(results: list[Any]) -> Any:
    if not results:
        return None
    return results[0] if len(results) == 1 else results


def _error_text(entry: Any) -> str | None:
    if isinstance(entry, dict) and entry.get("Type") == ERROR_ENTRY:
        return str(entry.get("Contents", ""))
    return None


def read_params(environ: Mapping[str, str], credentials: Mapping[str, str]) -> dict[str, Any]:
    """`demisto.params()`: the JSON object XSOAR_PARAMS, then every XSOAR_PARAM_<name> variable, then every
    credentials Secret key, each overriding the one before. A dotted name nests, as XSOAR's credentials
    params do: `credentials.password` is `params['credentials']['password']`."""
    params: dict[str, Any] = {}
    raw = environ.get(PARAMS)
    if raw:
        try:
            given = json.loads(raw)
        except ValueError as exc:
            raise ParamsError(f"{PARAMS} is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ParamsError(f"{PARAMS} must be a JSON object, not {type(given).__name__}")
        params.update(given)
    for name in sorted(environ):
        if name.startswith(PARAM_PREFIX) and len(name) > len(PARAM_PREFIX):
            _set_nested(params, name[len(PARAM_PREFIX) :], environ[name])
    for key in sorted(credentials):
        _set_nested(params, key, credentials[key])
    return params


def _set_nested(params: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = params
    for index, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            taken = ".".join(parents[: index + 1])
            raise ParamsError(f"the param {dotted!r} nests under {taken!r}, which is already a value, not an object")
        node = child
    node[leaf] = value


def read_integration_context(environ: Mapping[str, str]) -> dict[str, Any]:
    """The context SCHEDEXEC_XSOAR_CONTEXT_FILE holds; {} when it is not set or the file does not exist yet
    (the first run of a sequence)."""
    path = environ.get(CONTEXT_FILE)
    if not path:
        return {}
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ParamsError(f"cannot read the integration context {path}: {exc}") from None
    return loaded if isinstance(loaded, dict) else {}


def with_integration_context(outcome: dict[str, Any], run: IntegrationRun) -> dict[str, Any]:
    """`outcome` carrying the context for the next run of the sequence, if the integration changed it and
    the run schedules one; a context over envelope.MAX_CONTEXT_BYTES fails the run (ContextTooLarge) here,
    where the integration set it, never silently dropped (the next run would ask for a new token)."""
    if not run.context_changed or outcome.get("outcome") != envelope.SCHEDULE:
        return outcome
    size = envelope.context_bytes(run.integration_context)
    if size > envelope.MAX_CONTEXT_BYTES:
        message = f"the integration context is {size} bytes of JSON; at most {envelope.MAX_CONTEXT_BYTES} are kept"
        return envelope.error("ContextTooLarge", message)
    return {**outcome, "context": run.integration_context}


def run_from_environment(
    environ: Mapping[str, str],
    method: str,
    args: dict[str, Any],
    credentials: Mapping[str, str],
    execution: str,
    logger: logging.Logger,
) -> dict[str, Any]:
    """The run main.run describes, when the image names an integration file (SCHEDEXEC_XSOAR_INTEGRATION)."""
    try:
        run = IntegrationRun(
            command=method,
            args=args,
            params=read_params(environ, credentials),
            execution=execution,
            integration_context=read_integration_context(environ),
            logger=logger,
        )
    except ParamsError as exc:
        return envelope.error("InvalidArgs", str(exc))
    path = Path(environ[INTEGRATION])
    if not path.is_file():
        return envelope.error("ComponentNotFound", f"the integration file {path} ({INTEGRATION}) does not exist")
    return with_integration_context(run_integration(path, run), run)
