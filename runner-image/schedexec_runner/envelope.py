"""The outcome envelope: exactly one per run, in the container's termination message.

Kubernetes keeps at most 4096 bytes of a container's termination message, so
an envelope is plain JSON when it fits, zlib-compressed and base64-encoded
behind a marker when that makes it fit, and otherwise replaced by a
`ResultTooLarge` error that says how large it was. The operator decodes with
`decode`, which never raises anything but `EnvelopeError`, so garbage written
by a broken component becomes a clear `InvalidEnvelope` failure.

Envelope shapes (JSON objects, version 1):

    {"v": 1, "outcome": "done", "result": <any JSON>}
    {"v": 1, "outcome": "schedule", "nextRunInSeconds": <int >= 0>,
     "args": {<object>}, "partialResult": <any JSON, optional>,
     "command": "<method name, optional>", "timeoutInSeconds": <int > 0, optional>,
     "itemsRemaining": <int >= 0, optional>, "context": {<object>, optional}}

The last three keys of `schedule` carry the rest of XSOAR's ScheduledCommand
(see docs/runner-contract.md). They are optional and the version stays 1: an
operator that knows them reads old envelopes unchanged, but an operator from
before them refuses an envelope that uses them (unknown keys are an
`InvalidEnvelope`), so components should use them only with an operator that
knows them. `context` is the XSOAR integration context the run leaves to the next run of its sequence
(schedexec_runner.xsoar_native): it may hold tokens, so the operator keeps it in a Secret owned by the
execution and mounts it into the next run, never in the status, events or its log (`Schedule.context` is
left out of the repr). At most MAX_CONTEXT_BYTES of JSON; the termination message's 4 KiB (compressed, with
the rest of the envelope) bounds it first.
    {"v": 1, "outcome": "error", "reason": "<CamelCase>", "message": "<text>"}

What a component writes is untrusted input to the operator, so `validate` also bounds what the operator
would otherwise choke on later: a result, partial result, schedule args or error message nested deeper
than bounds.MAX_JSON_DEPTH or holding a string that is not valid Unicode (a lone surrogate), NaN or
Infinity (JSON has neither; the API server refuses them), and a reason longer than MAX_REASON_LENGTH.
Its messages never quote more than a short, escaped piece of what it refuses.

The operator reads an envelope once, here, into a typed outcome (`read`, `parse`): `Done`, `Schedule` or
`Failure`, frozen values with named fields, so that nothing past this module spells the wire's keys. The
runner writes the wire's dicts (`done`, `schedule`, `error`), which stay as they are.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from schedexec_runner import bounds, contract

VERSION = 1
MAX_BYTES = 4096
"""Kubernetes' limit for one container's termination message."""

COMPRESSED_PREFIX = "schedexec-zlib:"
"""Marks a compressed envelope: the rest is base64 of zlib-compressed JSON."""

MAX_DECOMPRESSED_BYTES = 256 * 1024
"""Guards the operator against a decompression bomb written by a component, and keeps a
result well inside what one Kubernetes object (about 1.5 MiB in etcd) can hold."""

MAX_NEXT_RUN_SECONDS = 7 * 24 * 3600
"""The longest wait a schedule may ask for: the longest sequence timeout."""

MAX_TIMEOUT_SECONDS = MAX_NEXT_RUN_SECONDS
"""The longest sequence timeout a schedule may ask for (`timeoutInSeconds`); the operator never lets
it reach beyond spec.timeoutSeconds anyway."""

MAX_ITEMS_REMAINING = 2**31 - 1
"""The largest `itemsRemaining`: an int32, as the execution's status keeps it."""

MAX_CONTEXT_BYTES = 64 * 1024
"""The largest integration context (compact JSON, UTF-8) a schedule envelope may carry: well inside one
Secret (1 MiB)."""

MAX_REASON_LENGTH = 128
"""The longest error reason: a CamelCase word that becomes a condition's reason and a metric's label."""

DONE = "done"
SCHEDULE = "schedule"
ERROR = "error"

_REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_METHOD = re.compile(contract.METHOD_PATTERN)
_SCHEDULE_OPTIONAL = {"partialResult", "command", "timeoutInSeconds", "itemsRemaining", "context"}
_PAYLOAD = {DONE: ("result",), SCHEDULE: ("args", "partialResult", "context"), ERROR: ("message",)}
"""The keys of each outcome that hold a component's own JSON, bounded by bounds.problem."""
_SHOWN_KEYS = 5
"""How many unknown keys an error message names."""


class EnvelopeError(ValueError):
    """The termination message is not a valid envelope."""


class Absent(Enum):
    """A key an envelope leaves out, where JSON null would be a value of its own."""

    ABSENT = "absent"


ABSENT: Final = Absent.ABSENT


@dataclass(frozen=True)
class Done:
    """The run finished (outcome `done`); `result` is the execution's result."""

    result: Any


@dataclass(frozen=True)
class Schedule:
    """The run asked for another (outcome `schedule`, XSOAR's ScheduledCommand)."""

    next_run_in_seconds: int
    args: dict[str, Any]
    partial_result: Any = ABSENT
    """What to show meanwhile; ABSENT when the envelope has none (then what was shown stays; a null clears it)."""
    command: str | None = None
    """The method the next run runs; None: the same as this run's."""
    timeout_in_seconds: int | None = None
    """The sequence's timeout, counted from its start; None: unchanged."""
    items_remaining: int | None = None
    context: dict[str, Any] | None = field(default=None, repr=False)
    """The integration context for the next run (XSOAR); None: unchanged. Secret: never in status or logs."""


@dataclass(frozen=True)
class Failure:
    """The run failed (outcome `error`); `reason` is a CamelCase word, `message` is for humans."""

    reason: str
    message: str


Outcome = Done | Schedule | Failure
"""What a run reported, typed: what the operator decides on."""


def done(result: Any) -> dict[str, Any]:
    """The run finished; `result` is the execution's result."""
    return {"v": VERSION, "outcome": DONE, "result": result}


def schedule(
    next_run_in_seconds: int,
    args: dict[str, Any],
    partial_result: Any = None,
    *,
    command: str | None = None,
    timeout_in_seconds: int | None = None,
    items_remaining: int | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run again after `next_run_in_seconds` with `args`; show `partial_result` meanwhile.

    `command` names the method the next run runs (default: the same as this run's);
    `timeout_in_seconds` sets the sequence's timeout, counted from its start (never beyond
    spec.timeoutSeconds); `items_remaining` is shown while the execution waits; `context` is the
    integration context the next run starts from (kept out of status). A key whose value is None is left out.
    """
    envelope: dict[str, Any] = {
        "v": VERSION,
        "outcome": SCHEDULE,
        "nextRunInSeconds": next_run_in_seconds,
        "args": args,
    }
    optional = {
        "partialResult": partial_result,
        "command": command,
        "timeoutInSeconds": timeout_in_seconds,
        "itemsRemaining": items_remaining,
        "context": context,
    }
    envelope.update((key, value) for key, value in optional.items() if value is not None)
    return envelope


def error(reason: str, message: str) -> dict[str, Any]:
    """The run failed; `reason` is CamelCase, `message` is for humans. A lone surrogate in `message` (text
    an exception took from undecodable bytes) is written as its escape, `\\ud800`, so the reason survives."""
    if isinstance(message, str):
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"v": VERSION, "outcome": ERROR, "reason": reason, "message": message}


def encode(envelope: dict[str, Any], limit: int = MAX_BYTES) -> str:
    """Serialise `envelope` into at most `limit` bytes, compressing if needed.

    An envelope that does not fit even compressed becomes a `ResultTooLarge`
    error envelope, so a run always reports something the operator can read.
    (The runner writes a large `done` envelope to its log instead: schedexec_runner.frame.)
    """
    fitted = fit(envelope, limit)
    if fitted is not None:
        return fitted
    return too_large(envelope, limit)


def fit(envelope: dict[str, Any], limit: int = MAX_BYTES) -> str | None:
    """`envelope` as at most `limit` bytes of plain or compressed JSON, or None if it does not fit."""
    validate(envelope)
    plain = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    raw = plain.encode("utf-8")
    if len(raw) <= limit:
        return plain
    packed = COMPRESSED_PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    return packed if len(packed) <= limit else None


def too_large(envelope: dict[str, Any], limit: int) -> str:
    """The `ResultTooLarge` error envelope (JSON) for `envelope`, naming its size and `limit`."""
    size = len(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    what = f"the {envelope['outcome']} envelope is {size} bytes as JSON; the limit is {limit} bytes"
    return json.dumps(error("ResultTooLarge", what), separators=(",", ":"))


def decode(text: str) -> dict[str, Any]:
    """Parse and validate a termination message; raise `EnvelopeError` if invalid."""
    text = text.strip()
    if not text:
        raise EnvelopeError("the termination message is empty")
    if text.startswith(COMPRESSED_PREFIX):
        text = _decompress(text[len(COMPRESSED_PREFIX) :])
    try:
        envelope = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise EnvelopeError(
            f"the termination message is not JSON this operator reads: it nests far deeper than the limit of "
            f"{bounds.MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:
        raise EnvelopeError(f"the termination message is not JSON: {type(exc).__name__}: {exc}") from None
    validate(envelope)
    return envelope  # type: ignore[no-any-return]


def read(text: str) -> Outcome:
    """A termination message as the typed outcome it reports; raise `EnvelopeError` if invalid."""
    return _typed(decode(text))


def parse(envelope: Any) -> Outcome:
    """A decoded envelope (a JSON value) as the typed outcome it reports; raise `EnvelopeError` if invalid."""
    validate(envelope)
    return _typed(envelope)


def _typed(envelope: dict[str, Any]) -> Outcome:
    """The typed outcome of an envelope `validate` accepted."""
    if envelope["outcome"] == DONE:
        return Done(envelope["result"])
    if envelope["outcome"] == ERROR:
        return Failure(envelope["reason"], envelope["message"])
    return Schedule(
        next_run_in_seconds=envelope["nextRunInSeconds"],
        args=envelope["args"],
        partial_result=envelope.get("partialResult", ABSENT),
        command=envelope.get("command"),
        timeout_in_seconds=envelope.get("timeoutInSeconds"),
        items_remaining=envelope.get("itemsRemaining"),
        context=envelope.get("context"),
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (nor a number the API server stores)")


def _decompress(payload: str) -> str:
    try:
        compressed = base64.b64decode(payload, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, MAX_DECOMPRESSED_BYTES)
    except (ValueError, zlib.error) as exc:  # binascii.Error, and base64 that is not even ASCII
        raise EnvelopeError(f"the compressed envelope is corrupt: {exc}") from None
    if inflater.unconsumed_tail:
        raise EnvelopeError(f"the compressed envelope inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"the compressed envelope is corrupt: {exc}") from None


def validate(envelope: Any) -> None:
    """Raise `EnvelopeError` unless `envelope` has one of the three shapes, within the bounds."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    if envelope.get("v") != VERSION:
        raise EnvelopeError(f"unsupported envelope version {_show(envelope.get('v'))}; expected {VERSION}")
    outcome = envelope.get("outcome")
    if outcome == DONE:
        _require_keys(envelope, {"result"}, set())
    elif outcome == SCHEDULE:
        _require_keys(envelope, {"nextRunInSeconds", "args"}, _SCHEDULE_OPTIONAL)
        _require_integer(envelope, "nextRunInSeconds", 0, MAX_NEXT_RUN_SECONDS)
        if not isinstance(envelope["args"], dict):
            raise EnvelopeError("schedule.args must be a JSON object")
        command = envelope.get("command")
        if "command" in envelope and (
            not isinstance(command, str) or len(command) > contract.METHOD_MAX_LENGTH or not _METHOD.fullmatch(command)
        ):
            raise EnvelopeError(
                f"schedule.command must be a method name: a letter, then letters, digits, _ . : or -, "
                f"at most {contract.METHOD_MAX_LENGTH} characters (got {_show(command)})"
            )
        if "timeoutInSeconds" in envelope:
            _require_integer(envelope, "timeoutInSeconds", 1, MAX_TIMEOUT_SECONDS)
        if "itemsRemaining" in envelope:
            _require_integer(envelope, "itemsRemaining", 0, MAX_ITEMS_REMAINING)
        if "context" in envelope:
            _require_context(envelope["context"])
    elif outcome == ERROR:
        _require_keys(envelope, {"reason", "message"}, set())
        reason = envelope["reason"]
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH or not _REASON.fullmatch(reason):
            raise EnvelopeError(
                f"error.reason must be a CamelCase word of at most {MAX_REASON_LENGTH} characters (got {_show(reason)})"
            )
        if not isinstance(envelope["message"], str):
            raise EnvelopeError("error.message must be a string")
    else:
        raise EnvelopeError(f"unknown outcome {_show(outcome)}; expected done, schedule or error")
    for key in _PAYLOAD[outcome]:
        if key in envelope and (problem := _payload_problem(envelope[key], f"{outcome}.{key}")) is not None:
            raise EnvelopeError(problem)


def _payload_problem(value: Any, what: str) -> str | None:
    """Why a component's own JSON may not reach the operator's status: too deep, not valid Unicode, or a
    float JSON has no text for."""
    problem = bounds.problem(value, what)
    if problem is not None:
        return problem
    stack = [value]
    while stack:  # depth is bounded now, but stay iterative like bounds
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{what} holds {item}, which JSON cannot express"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _show(value: Any) -> str:
    """A short, escaped rendering of a value the envelope holds, for an error message: never a container's
    repr (a deep one would recurse, a large one would bloat the status), never a lone surrogate as is."""
    if isinstance(value, dict | list):
        return "a JSON object" if isinstance(value, dict) else "a JSON array"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "an integer beyond 64 bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_integer(envelope: dict[str, Any], key: str, low: int, high: int) -> None:
    value = envelope[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EnvelopeError(f"{envelope['outcome']}.{key} must be an integer from {low} to {high}")


def context_bytes(context: dict[str, Any]) -> int:
    """The size of an integration context as it is kept: compact JSON, UTF-8."""
    return len(json.dumps(context, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _require_context(context: Any) -> None:
    """A JSON object of at most MAX_CONTEXT_BYTES; the message never quotes it (it may hold tokens)."""
    if not isinstance(context, dict):
        raise EnvelopeError("schedule.context must be a JSON object")
    if _payload_problem(context, "schedule.context") is None:  # else validate names the problem, valueless
        size = context_bytes(context)
        if size > MAX_CONTEXT_BYTES:
            raise EnvelopeError(f"schedule.context is {size} bytes of JSON; at most {MAX_CONTEXT_BYTES}")


def _require_keys(envelope: dict[str, Any], required: set[str], optional: set[str]) -> None:
    keys = set(envelope) - {"v", "outcome"}
    missing = required - keys
    if missing:
        raise EnvelopeError(f"{envelope['outcome']} envelope lacks {', '.join(sorted(missing))}")
    unknown = keys - required - optional
    if unknown:
        named = ", ".join(_show(key) for key in sorted(unknown, key=str)[:_SHOWN_KEYS])
        more = f" and {len(unknown) - _SHOWN_KEYS} more" if len(unknown) > _SHOWN_KEYS else ""
        raise EnvelopeError(f"{envelope['outcome']} envelope has unknown keys {named}{more}")
