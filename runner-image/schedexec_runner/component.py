"""What component authors write: a `Component` with registered functions.

A component registers one function per thing it can do:

- `@component.model("getCategories")`: a select-model function (elastic.io
  `selectModel`), chosen by the function name the execution names;
- `@component.metadata("products")`: the metadata of one action or trigger
  (elastic.io `getMetaModel`), chosen by the execution's module;
- `@component.credentials`: `verifyCredentials`, with elastic.io's semantics
  (an exception means `verified: false` with its message as the reason; a
  result without `verified` counts as verified);
- `@component.command("detonate")`: any other command. A command may return a
  `Schedule` to be run again later (XSOAR's scheduled commands), and
  `@component.polling(...)` covers the common "poll until done" case.

Every function takes `(args, ctx)`: the run's arguments and a `RunContext`.
A function may be `async def`: the coroutine it returns is run to its end
(`asyncio.run`, one event loop per call) before its value is taken, so an
async HTTP client needs no wrapper. Dispatch turns what a function returns
or raises into exactly one envelope: an `Outcome` (a `Schedule`, or
`xsoar.CommandResults` for commands ported from Cortex XSOAR, see xsoar.py)
gives its own envelope, anything else is the run's result.

An exception's type and message are the error envelope's message (one line,
what the status shows); its traceback goes to the run's log through
`ctx.logger` (runlog.py: stderr, credentials redacted), where `kubectl logs`
shows it while the operator keeps the run's Job. `ctx.logger` is the
component's own logger for the same log, never the outcome.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from schedexec_runner import contract, envelope, runlog

Function = Callable[[dict[str, Any], "RunContext"], Any]


@dataclass(frozen=True)
class RunContext:
    """What a run knows besides its args.

    `credentials` holds the mounted Secret's keys whose values are UTF-8 text, exactly as stored (nothing
    stripped: a trailing space or newline is part of the value); `binary_credentials` the keys whose values
    are not (a keystore, a DER certificate), as bytes. `logger` writes to the run's log (stderr, the pod's
    log), credential values redacted (runlog.run_logger); never to the outcome.
    """

    method: str
    module: str | None = None
    function: str | None = None
    run_index: int = 1
    execution: str = ""
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    binary_credentials: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    logger: logging.Logger = field(default_factory=lambda: runlog.run_logger({}), repr=False, compare=False)


def awaited(value: Any) -> Any:
    """`value`, or what it returns if it is a coroutine (an `async def` function's call), run to its end."""
    return asyncio.run(value) if inspect.iscoroutine(value) else value


@runtime_checkable
class Outcome(Protocol):
    """A return value that knows its own envelope, instead of being the run's result."""

    def to_envelope(self) -> dict[str, Any]:
        """The outcome envelope (see envelope.py) this value stands for."""
        ...


@dataclass(frozen=True)
class Schedule:
    """Run again after `next_run_in_seconds` with `args` (XSOAR's ScheduledCommand).

    `partial_result` is shown on the execution while it waits, and kept if
    the sequence later times out (for example the id of a remote job).
    `command` names another command of this component for the next run (default: the same one);
    `timeout_in_seconds` sets the sequence's timeout, counted from its start and never beyond
    spec.timeoutSeconds; `items_remaining` is shown while the execution waits.
    """

    next_run_in_seconds: int
    args: dict[str, Any]
    partial_result: Any = None
    command: str | None = field(default=None, kw_only=True)
    timeout_in_seconds: int | None = field(default=None, kw_only=True)
    items_remaining: int | None = field(default=None, kw_only=True)

    def to_envelope(self) -> dict[str, Any]:
        return envelope.schedule(
            self.next_run_in_seconds,
            self.args,
            self.partial_result,
            command=self.command,
            timeout_in_seconds=self.timeout_in_seconds,
            items_remaining=self.items_remaining,
        )


@dataclass(frozen=True)
class PollResult:
    """What a `@component.polling` or `xsoar.polling_function` function returns (XSOAR's PollResult).

    `continue_to_poll` is a bool, or a callable without arguments that returns one.
    """

    response: Any
    continue_to_poll: bool | Callable[[], bool] = False
    args_for_next_run: dict[str, Any] | None = None
    partial_result: Any = None
    next_run_in_seconds: int | None = None
    """Overrides the decorator's interval for this one wait (a schedexec addition)."""

    def should_poll(self) -> bool:
        """`continue_to_poll`, called if it is a callable."""
        wanted = self.continue_to_poll
        if isinstance(wanted, bool):
            return wanted
        if callable(wanted):
            return bool(wanted())
        raise TypeError(f"PollResult.continue_to_poll must be a bool or a callable, not {type(wanted).__name__}")


class RunError(Exception):
    """Raise to fail the run with a chosen CamelCase `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Component:
    """A registry of the functions one component image offers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.models: dict[str, Function] = {}
        self.metadata_functions: dict[str, Function] = {}
        self.commands: dict[str, Function] = {}
        self.verifier: Function | None = None

    def model(self, name: str) -> Callable[[Function], Function]:
        """Register a select-model function under `name`."""
        return _register(self.models, name)

    def metadata(self, module: str) -> Callable[[Function], Function]:
        """Register the metadata (getMetaModel) function of one action/trigger."""
        return _register(self.metadata_functions, module)

    def command(self, name: str) -> Callable[[Function], Function]:
        """Register a command; it may return a `Schedule` to run again."""
        return _register(self.commands, name)

    def credentials(self, fn: Function) -> Function:
        """Register the verifyCredentials function."""
        self.verifier = fn
        return fn

    def polling(self, name: str, interval_seconds: int = 10) -> Callable[[Function], Function]:
        """Register a command returning `PollResult`, polled every `interval_seconds`."""

        def wrap(fn: Function) -> Function:
            @functools.wraps(fn)
            def poll(args: dict[str, Any], ctx: RunContext) -> Any:
                polled = awaited(fn(args, ctx))
                if not isinstance(polled, PollResult):
                    raise TypeError(f"polling command {name!r} must return PollResult, not {type(polled).__name__}")
                if not polled.should_poll():
                    return polled.response
                next_args = args if polled.args_for_next_run is None else polled.args_for_next_run
                interval = interval_seconds if polled.next_run_in_seconds is None else polled.next_run_in_seconds
                return Schedule(interval, next_args, polled.partial_result)

            self.commands[name] = poll
            return poll

        return wrap

    def run(self, args: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """Call the function `ctx` selects and turn its outcome into an envelope."""
        if ctx.method == contract.VERIFY_CREDENTIALS:
            return self._verify(args, ctx)
        fn = self._select(ctx)
        if isinstance(fn, dict):
            return fn
        try:
            returned = awaited(fn(args, ctx))
        except RunError as exc:
            ctx.logger.error("the run failed: %s: %s", exc.reason, exc.message)
            return envelope.error(exc.reason, exc.message)
        except Exception as exc:
            ctx.logger.error("the component raised %s: %s", type(exc).__name__, exc, exc_info=exc)
            return envelope.error("ComponentError", f"{type(exc).__name__}: {exc}")
        if not isinstance(returned, Outcome):
            return envelope.done(returned)
        try:
            outcome = returned.to_envelope()
            envelope.validate(outcome)
        except (envelope.EnvelopeError, TypeError, ValueError) as exc:
            return envelope.error(
                "InvalidResult", f"the {type(returned).__name__} the command returned is invalid: {exc}"
            )
        return outcome

    def _select(self, ctx: RunContext) -> Function | dict[str, Any]:
        """The function for `ctx`, or an error envelope naming what is missing."""
        if ctx.method == contract.SELECT_MODEL:
            return _lookup(self.models, ctx.function, "select-model function", "SCHEDEXEC_FUNCTION")
        if ctx.method == contract.GET_META_MODEL:
            return _lookup(self.metadata_functions, ctx.module, "metadata module", "SCHEDEXEC_MODULE")
        return _lookup(self.commands, ctx.method, "command", "SCHEDEXEC_METHOD")

    def _verify(self, args: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        if self.verifier is None:
            return envelope.error("UnknownMethod", f"component {self.name!r} has no verifyCredentials function")
        try:
            returned = awaited(self.verifier(args, ctx))
        except Exception as exc:
            ctx.logger.warning("verifyCredentials raised %s: not verified", type(exc).__name__, exc_info=exc)
            return envelope.done({"verified": False, "reason": str(exc) or type(exc).__name__})
        if returned is None:
            return envelope.done({"verified": True})
        if isinstance(returned, bool):
            return envelope.done({"verified": returned})
        if isinstance(returned, dict):
            return envelope.done({"verified": True, **returned})
        return envelope.error(
            "InvalidResult", f"verifyCredentials must return None, a bool or an object, not {type(returned).__name__}"
        )


def _register(table: dict[str, Function], key: str) -> Callable[[Function], Function]:
    def add(fn: Function) -> Function:
        table[key] = fn
        return fn

    return add


def _lookup(table: dict[str, Function], key: str | None, what: str, variable: str) -> Function | dict[str, Any]:
    if not key:
        return envelope.error("MissingInput", f"no {what} given ({variable} is empty)")
    if key not in table:
        known = ", ".join(sorted(table)) or "none"
        return envelope.error("UnknownMethod", f"unknown {what} {key!r}; this component has: {known}")
    return table[key]
