"""A run's log: what a component says (`ctx.logger`) and the traceback of what it raised, credentials redacted.

The pod's log is where a component author looks when a run went wrong (`kubectl logs -n NS job/NAME`, named in
the execution's status.history while the operator keeps the run's Job): the outcome envelope carries one line
of message, the log carries the rest. The log is not the status (anyone who may read the pod's log reads it,
and log pipelines copy it), yet a credential value never belongs there either: a component that puts a token
into an exception message, or logs the config it was given, must not publish it. So every line the runner or
the component writes through `run_logger` passes a `logging.Filter` that replaces each credential value (the
Secret's values, the sealed configuration's strings, as `main.run` gathers them) with ***, in the message, the
traceback and the stack, and the lines go to stderr only, never to the termination message.

`secret_forms` and `redact_text` are the one place a value is redacted: `main.redact` uses them for the
outcome envelope as well.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

LOGGER = "schedexec.component"
"""The name of the run's logger (`ctx.logger`); `ctx.logger.getChild(...)` lines are redacted too."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Plain lines, one per record (a traceback follows its line): readable with `kubectl logs`."""

MIN_SECRET_LENGTH = 3
"""Values shorter than this are not redacted: replacing every "a" or "1" in a log would hide everything and
protect nothing."""


def secret_forms(secrets: Mapping[str, str]) -> list[str]:
    """The texts to redact for these credential values: each value, and each without the whitespace around
    it (which a component may well have stripped), longest first so a value inside another goes whole."""
    candidates = {form for value in secrets.values() for form in (value, value.strip())}
    return sorted((v for v in candidates if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact_text(text: str, forms: Iterable[str]) -> str:
    """`text` with every one of `forms` (see `secret_forms`) replaced by ***."""
    for secret in forms:
        text = text.replace(secret, "***")
    return text


class Redact(logging.Filter):
    """Replaces the credential values in a record's message, traceback and stack with ***. Set on the
    handler, so records of the run logger's children are redacted too."""

    def __init__(self, forms: list[str]) -> None:
        super().__init__()
        self.forms = forms

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: logging would print them as they are
            message = f"{record.msg!s} (arguments not formatted: {record.args!r})"
        record.msg, record.args = redact_text(message, self.forms), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.forms)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self.forms)
        return True


def run_logger(secrets: Mapping[str, str], stream: TextIO | None = None) -> logging.Logger:
    """The run's logger (`ctx.logger`): INFO and above, plain lines on `stream` (stderr by default), every
    value of `secrets` redacted. One run per process: a second call replaces the first's handler."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(Redact(secret_forms(secrets)))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root logger's handlers (if a component configured any) would skip the filter
    return logger
