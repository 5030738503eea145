"""A run's log: what a component says (`ctx.logger`) and the traceback of what it raised, credentials redacted.

The pod's log is where a component author looks when a run went wrong (`kubectl logs -n NS job/NAME`, named in
the execution's status.history while the operator keeps the run's Job): the outcome envelope carries one line
of message, the log carries the rest. The log is not the status (anyone who may read the pod's log reads it,
and log pipelines copy it), yet a credential value never belongs there either: a component that puts a token
into an exception message, or logs the config it was given, must not publish it. So every line the runner or
the component writes through `run_logger` passes a `logging.Filter` that replaces each credential value (the
Secret's values, the sealed configuration's strings, as `main.run` gathers them) with ***, in the message, the
traceback and the stack, and the lines go to stderr only, never to the termination message. A value is found as
given, stripped, line by line, and escaped as `repr` and JSON write it (a component that logs or raises with the
dict of its config writes its values escaped): `secret_forms`. A value re-encoded any other way (base64, URL
quoting, hex) is not recognised.

`secret_forms` and `redact_text` are the one place a value is redacted: `main.redact` uses them for the
outcome envelope as well.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TextIO

LOGGER = "schedexec.component"
"""The name of the run's logger (`ctx.logger`); `ctx.logger.getChild(...)` lines are redacted too."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Plain lines, one per record (a traceback follows its line): readable with `kubectl logs`."""

MIN_SECRET_LENGTH = 3
"""Values shorter than this are not redacted: replacing every "a" or "1" in a log would hide everything and
protect nothing."""


def secret_forms(secrets: Mapping[str, str]) -> list[str]:
    """The texts to redact for these credential values, longest first so a value inside another goes whole.

    Each value as given and without the whitespace around it (which a component may well have stripped); each
    line of a multi-line value (a PEM key's, found line by line where the whole is not: a list of its lines);
    and each of these escaped as `repr` writes it (`f"{cfg}"`, `%r` and a traceback of a dict or list holding
    the value; either quote) and as `json.dumps` does (ASCII or not), also stripped. Texts shorter than
    MIN_SECRET_LENGTH are never redacted, nor are the escaped forms of such a text or line."""
    candidates = {form for value in secrets.values() for text in _texts(value) for form in _escaped(text)}
    return sorted((v for v in candidates if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _texts(value: str) -> Iterator[str]:
    """`value` as given and stripped, and likewise each of its lines of MIN_SECRET_LENGTH characters or more
    (not counting the whitespace around them): a shorter line (a blank one, a "}") is no secret, and redacting
    it would hide everything it happens to match."""
    lines = [line for line in value.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH]
    for text in (value, *lines):
        for form in (text, text.strip()):
            if len(form) >= MIN_SECRET_LENGTH:
                yield form


def _escaped(text: str) -> Iterator[str]:
    """`text`, what `repr` writes between its quotes for it (with single quotes escaped or not: which, depends
    on the quotes of the whole `repr` writes, a dict's value or the value a line is part of) and what
    `json.dumps` writes between its quotes (ASCII or not), each also stripped."""
    for form in (
        text,
        _repr_body(text, single_quoted=True),
        _repr_body(text, single_quoted=False),
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    ):
        yield form
        yield form.strip()


def _repr_body(text: str, single_quoted: bool) -> str:
    """What `repr` writes for `text` between its quotes: every character escaped as `repr` escapes it, a
    single quote too when the quotes are single (`repr` picks double quotes only for a text holding single
    quotes and no double ones, and never escapes a double quote)."""
    return "".join("\\'" if char == "'" and single_quoted else repr(char)[1:-1] for char in text)


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
