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
     "itemsRemaining": <int >= 0, optional>}

The last three keys of `schedule` carry the rest of XSOAR's ScheduledCommand
(see docs/runner-contract.md). They are optional and the version stays 1: an
operator that knows them reads old envelopes unchanged, but an operator from
before them refuses an envelope that uses them (unknown keys are an
`InvalidEnvelope`), so components should use them only with an operator that
knows them.
    {"v": 1, "outcome": "error", "reason": "<CamelCase>", "message": "<text>"}
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from typing import Any

from schedexec_runner import contract

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

DONE = "done"
SCHEDULE = "schedule"
ERROR = "error"

_REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_METHOD = re.compile(contract.METHOD_PATTERN)
_SCHEDULE_OPTIONAL = {"partialResult", "command", "timeoutInSeconds", "itemsRemaining"}


class EnvelopeError(ValueError):
    """The termination message is not a valid envelope."""


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
) -> dict[str, Any]:
    """Run again after `next_run_in_seconds` with `args`; show `partial_result` meanwhile.

    `command` names the method the next run runs (default: the same as this run's);
    `timeout_in_seconds` sets the sequence's timeout, counted from its start (never beyond
    spec.timeoutSeconds); `items_remaining` is shown while the execution waits. A key whose
    value is None is left out.
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
    }
    envelope.update((key, value) for key, value in optional.items() if value is not None)
    return envelope


def error(reason: str, message: str) -> dict[str, Any]:
    """The run failed; `reason` is CamelCase, `message` is for humans."""
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
    plain = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
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
        envelope = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"the termination message is not JSON: {type(exc).__name__}: {exc}") from None
    validate(envelope)
    return envelope  # type: ignore[no-any-return]


def _decompress(payload: str) -> str:
    try:
        compressed = base64.b64decode(payload, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, MAX_DECOMPRESSED_BYTES)
        if inflater.unconsumed_tail:
            raise EnvelopeError(f"the compressed envelope inflates past {MAX_DECOMPRESSED_BYTES} bytes")
        return raw.decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"the compressed envelope is corrupt: {exc}") from None


def validate(envelope: Any) -> None:
    """Raise `EnvelopeError` unless `envelope` has one of the three shapes."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    if envelope.get("v") != VERSION:
        raise EnvelopeError(f"unsupported envelope version {envelope.get('v')!r}; expected {VERSION}")
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
            not isinstance(command, str) or len(command) > contract.METHOD_MAX_LENGTH or not _METHOD.match(command)
        ):
            raise EnvelopeError(
                f"schedule.command must be a method name: a letter, then letters, digits, _ . : or -, "
                f"at most {contract.METHOD_MAX_LENGTH} characters (got {command!r:.80})"
            )
        if "timeoutInSeconds" in envelope:
            _require_integer(envelope, "timeoutInSeconds", 1, MAX_TIMEOUT_SECONDS)
        if "itemsRemaining" in envelope:
            _require_integer(envelope, "itemsRemaining", 0, MAX_ITEMS_REMAINING)
    elif outcome == ERROR:
        _require_keys(envelope, {"reason", "message"}, set())
        if not isinstance(envelope["reason"], str) or not _REASON.match(envelope["reason"]):
            raise EnvelopeError("error.reason must be a CamelCase word")
        if not isinstance(envelope["message"], str):
            raise EnvelopeError("error.message must be a string")
    else:
        raise EnvelopeError(f"unknown outcome {outcome!r}; expected done, schedule or error")


def _require_integer(envelope: dict[str, Any], key: str, low: int, high: int) -> None:
    value = envelope[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EnvelopeError(f"{envelope['outcome']}.{key} must be an integer from {low} to {high}")


def _require_keys(envelope: dict[str, Any], required: set[str], optional: set[str]) -> None:
    keys = set(envelope) - {"v", "outcome"}
    missing = required - keys
    if missing:
        raise EnvelopeError(f"{envelope['outcome']} envelope lacks {', '.join(sorted(missing))}")
    unknown = keys - required - optional
    if unknown:
        raise EnvelopeError(f"{envelope['outcome']} envelope has unknown keys {', '.join(sorted(unknown))}")
