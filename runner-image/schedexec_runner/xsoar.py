"""Cortex XSOAR's scheduled-command API, so that a polling command written for XSOAR runs here.

XSOAR integrations schedule their next run by returning a `CommandResults`
that carries a `ScheduledCommand`, usually through CommonServerPython's
`polling_function` decorator and `PollResult`. This module offers those
names with XSOAR's behaviour, so a ported command changes its imports and
its registration, not its body:

    from schedexec_runner import Component
    from schedexec_runner.xsoar import CommandResults, PollResult, polling_function

    component = Component("sandbox")

    @component.command("sandbox-detonate")
    @polling_function("sandbox-detonate", interval=30, timeout=600)
    def detonate_command(args, ctx):
        ...

What a ported integration's `main()` did (read `demisto.args()`, dispatch on
`demisto.command()`, build a client, `return_results(...)`) is replaced by
the registration: the command gets `(args, ctx)` and returns its results.

How the results become an outcome envelope:

- a `CommandResults` with a `scheduled_command` is a `schedule` (the
  ScheduledCommand's fields map one to one, see docs/runner-contract.md);
  its other fields, if any, are the partial result shown while waiting;
- a `CommandResults` without one is `done`, its fields (`to_result()`) the
  execution's result; any other value is the result itself;
- an exception (`DemistoException` or any other) fails the run with reason
  `ComponentError` (its traceback in the run's log), and `RunError` with a
  reason of its choice.

A command may be `async def`, decorated with `polling_function` or not: its
coroutine is run to its end (component.awaited) before its results are read.
What XSOAR's `demisto.debug`/`demisto.info` wrote goes to `ctx.logger`.

Where schedexec differs: `ScheduledCommand` does not raise a short interval
to XSOAR's 10 s minimum itself; the operator does, and records that it did
(an Event `PollIntervalRaised`). `polling_function` also takes the interval
and the timeout from the run's args `interval_in_seconds` and
`timeout_in_seconds` when present, which is what XSOAR integrations get by
writing `interval=arg_to_number(demisto.args().get('interval_in_seconds'))`
in the decorator, a line that has no `demisto` to read here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec

from schedexec_runner import envelope
from schedexec_runner.component import PollResult, awaited

__all__ = [
    "CommandResults",
    "DemistoException",
    "PollResult",
    "ScheduledCommand",
    "argToBoolean",
    "arg_to_number",
    "polling_function",
]

P = ParamSpec("P")

HIDE_POLLING_OUTPUT = "hide_polling_output"
"""The arg `polling_function` sets on every run it schedules, so that later runs show no poll message."""

INTERVAL_ARG = "interval_in_seconds"
"""The run's arg that overrides `polling_function`'s interval (XSOAR integrations' usual argument name)."""

TIMEOUT_ARG = "timeout_in_seconds"
"""The run's arg that overrides `polling_function`'s timeout (XSOAR integrations' usual argument name)."""


class DemistoException(Exception):
    """XSOAR's general-purpose exception; fails the run with reason ComponentError like any other.

    As in XSOAR it takes the exception it wraps and the HTTP response that caused it (`BaseClient`
    raises it so), and its text is `message` alone.
    """

    def __init__(self, message: Any, exception: BaseException | None = None, res: Any = None, *args: Any) -> None:
        super().__init__(message, exception, *args)
        self.message = message
        self.exception = exception
        self.res = res

    def __str__(self) -> str:
        return str(self.message)


@dataclass
class ScheduledCommand:
    """Run `command` with `args` after `next_run_in_seconds` (XSOAR's ScheduledCommand).

    `command` may name any command of this component. `timeout_in_seconds` is the polling
    sequence's timeout (None or 0: none given, spec.timeoutSeconds applies); `items_remaining` is
    shown while the execution waits. A `next_run_in_seconds` below the minimum interval (10 s) is
    raised by the operator, not here.
    """

    command: str
    next_run_in_seconds: int | float
    args: dict[str, Any] | None = None
    timeout_in_seconds: int | None = None
    items_remaining: int | None = None

    def to_envelope(self, partial_result: Any = None) -> dict[str, Any]:
        """The `schedule` envelope this command stands for, showing `partial_result` while it waits."""
        seconds = self.next_run_in_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"next_run_in_seconds must be a number, not {type(seconds).__name__}")
        return envelope.schedule(
            max(0, math.ceil(seconds)),
            dict(self.args or {}),
            partial_result,
            command=self.command,
            timeout_in_seconds=self.timeout_in_seconds or None,
            items_remaining=self.items_remaining,
        )

    @staticmethod
    def supports_polling() -> bool:
        """Always true: every schedexec operator runs scheduled commands."""
        return True

    @staticmethod
    def raise_error_if_not_supported() -> None:
        """XSOAR refuses scheduled commands on servers before 6.2; schedexec always supports them."""


@dataclass
class CommandResults:
    """What an XSOAR command returns: a result, and with `scheduled_command` a schedule.

    Only the fields that make sense outside an XSOAR war room are kept; `to_result()` is their JSON.
    """

    outputs_prefix: str | None = field(default=None, kw_only=True)
    outputs_key_field: str | list[str] | None = field(default=None, kw_only=True)
    outputs: Any = field(default=None, kw_only=True)
    readable_output: str | None = field(default=None, kw_only=True)
    raw_response: Any = field(default=None, kw_only=True)
    scheduled_command: ScheduledCommand | None = field(default=None, kw_only=True)
    scheduled_command_config: ScheduledCommand | None = field(default=None, kw_only=True, repr=False, compare=False)
    """The scheduled-commands page's spelling of `scheduled_command` (with `Common.ScheduledCommandConfiguration`)."""

    def __post_init__(self) -> None:
        config, self.scheduled_command_config = self.scheduled_command_config, None
        if config is None:
            return
        if self.scheduled_command is not None and self.scheduled_command != config:
            raise TypeError("CommandResults got both scheduled_command and scheduled_command_config")
        self.scheduled_command = config

    def to_result(self) -> dict[str, Any] | None:
        """The fields that are set, by their camelCase names; None when none is."""
        fields = {
            "outputsPrefix": self.outputs_prefix,
            "outputsKeyField": self.outputs_key_field,
            "outputs": self.outputs,
            "readableOutput": self.readable_output,
            "rawResponse": self.raw_response,
        }
        result = {key: value for key, value in fields.items() if value is not None}
        return result or None

    def to_envelope(self) -> dict[str, Any]:
        """`done` with `to_result()`, or `schedule` when a command is scheduled (component.Outcome)."""
        if self.scheduled_command is None:
            return envelope.done(self.to_result())
        return self.scheduled_command.to_envelope(self.to_result())


def polling_function(
    name: str,
    interval: int = 30,
    timeout: int = 600,
    poll_message: str = "Fetching Results:",
    polling_arg_name: str = "polling",
    requires_polling_arg: bool = True,
) -> Callable[[Callable[Concatenate[dict[str, Any], P], PollResult]], Callable[Concatenate[dict[str, Any], P], Any]]:
    """XSOAR's decorator for a command that polls until done: it returns a `PollResult`, the
    decorator turns it into the command's results.

    - With `requires_polling_arg` and the arg `polling_arg_name` absent or false, the command
      runs once: its `response` is returned whatever `continue_to_poll` says.
    - While `continue_to_poll` (a bool, or a callable returning one) is false, `response` is returned.
    - Otherwise it returns `partial_result` (or, if none, a CommandResults whose readable output is
      `poll_message` on the first run and nothing on later ones) carrying
      `ScheduledCommand(name, interval, args, timeout)`, where args are `args_for_next_run`, or
      this run's args when it is empty, plus `hide_polling_output: True`. As in XSOAR the polling
      arg is not added: the next run keeps polling only if its args carry it.
    - The run's args `interval_in_seconds` and `timeout_in_seconds` override `interval` and
      `timeout`; a PollResult's `next_run_in_seconds` overrides the interval once.
    """

    def decorate(
        func: Callable[Concatenate[dict[str, Any], P], PollResult],
    ) -> Callable[Concatenate[dict[str, Any], P], Any]:
        @functools.wraps(func)
        def poll(args: dict[str, Any], /, *arguments: P.args, **kwargs: P.kwargs) -> Any:
            polling = not requires_polling_arg or argToBoolean(args.get(polling_arg_name, False))
            polled = awaited(func(args, *arguments, **kwargs))
            if not isinstance(polled, PollResult):
                raise TypeError(f"polling command {name!r} must return PollResult, not {type(polled).__name__}")
            if not polling or not polled.should_poll():
                return polled.response
            next_args = dict(polled.args_for_next_run or args)
            next_args[HIDE_POLLING_OUTPUT] = True
            scheduled = ScheduledCommand(
                command=name,
                next_run_in_seconds=_seconds(polled.next_run_in_seconds, args, INTERVAL_ARG, interval),
                args=next_args,
                timeout_in_seconds=_seconds(None, args, TIMEOUT_ARG, timeout),
            )
            partial = polled.partial_result
            if partial is None:
                readable = None if args.get(HIDE_POLLING_OUTPUT) else poll_message
                return CommandResults(readable_output=readable, scheduled_command=scheduled)
            if isinstance(partial, CommandResults):
                return dataclasses.replace(partial, scheduled_command=scheduled)
            return CommandResults(outputs=partial, scheduled_command=scheduled)

        return poll

    return decorate


def _seconds(override: int | None, args: dict[str, Any], arg_name: str, default: int) -> int:
    if override is not None:
        return override
    given = arg_to_number(args.get(arg_name), arg_name)
    return default if given is None else given


def argToBoolean(value: Any) -> bool:
    """XSOAR's argToBoolean: a bool, or 'true'/'yes'/'false'/'no' in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lower() in ("true", "yes"):
            return True
        if value.lower() in ("false", "no"):
            return False
    raise ValueError(f"Argument does not contain a valid boolean-like value: {value!r}")


def arg_to_number(arg: Any, arg_name: str | None = None, required: bool = False) -> int | None:
    """XSOAR's arg_to_number: an int from an int, a float or a numeric string; None if empty."""
    if arg is None or arg == "":
        if required:
            raise ValueError(f'Missing "{arg_name}"' if arg_name else "Missing required argument")
        return None
    if isinstance(arg, bool):
        raise ValueError(f'Invalid number: "{arg_name}"={arg!r}')
    if isinstance(arg, int):
        return arg
    try:
        return int(float(arg))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f'Invalid number: "{arg_name}"={arg!r}' if arg_name else f"Invalid number: {arg!r}") from None
