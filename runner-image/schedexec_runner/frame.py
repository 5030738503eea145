"""Large outcomes through the container's log: a framed, verifiable copy the operator reads with `pods/log`.

Kubernetes keeps at most 4 KiB of a termination message; `getMetaModel`
schemas and `selectModel` lists are often larger. A `done` envelope that
does not fit even compressed is written to the container's stdout as a
frame, and the termination message says where it is:

    schedexec-logged:{"nonce": "<32 hex>", "bytes": <n>, "sha256": "<hex>", "lines": <k>}

    schedexec-frame <nonce> begin <n> <sha256>
    schedexec-frame <nonce> <i> <base64 of the i-th slice of zlib(envelope JSON)>   (i = 1..k)
    schedexec-frame <nonce> end <k>

`n` and `sha256` are the length and hash of the envelope's JSON (UTF-8,
before compression). The nonce is drawn when the run ends, so nothing the
component printed earlier can pass for a frame line, and lines of other
nonces are ignored. The operator (`read`) accepts only a complete frame whose
length and hash match the termination message: a truncated, reordered or
tampered frame is refused with the reason, never passed off as the whole
result. Envelopes over the operator's limit (SCHEDEXEC_MAX_RESULT_BYTES in
the run's environment, 1 MiB by default) are not framed: the run reports
ResultTooLarge, naming the limit. The frame is documented in
docs/runner-contract.md, so a component without this SDK can write it.

The pointer comes from the component, so the operator trusts nothing in it: `pointer` checks every field's
range before anything is allocated or read (a `lines` that `bytes` could not need is refused at once), and
`read` finds the frame by searching back from the end of the log for its `begin` line, so megabytes of
output before it cost one search, not a list of lines. `tail_lines` and `log_bytes` tell the operator how
much of the log's end to ask for (`pods/log` `tailLines` and `limitBytes`), so a frame is found whatever the
component printed before it and after the log rotated away its start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import zlib
from collections.abc import Mapping
from typing import Any, TextIO

LOGGED_PREFIX = "schedexec-logged:"
"""Marks a termination message that points at a frame in the log."""
LINE_PREFIX = "schedexec-frame"
CHUNK_CHARS = 4000
"""Base64 characters per frame line: well under the kubelet's 16 KiB log line split."""
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""The largest envelope a pointer may claim (`bytes`), whatever the operator's own limit: a hard cap that
keeps `tail_lines` and `log_bytes` sane. The operator passes its SCHEDEXEC_MAX_RESULT_BYTES to `read`."""

TAIL_SLACK_LINES = 16
"""Log lines `tail_lines` allows for besides the frame: what is written after it (the runner's summary on
stderr, a component's thread still printing) or between its lines."""

MAX_LOG_LINE_BYTES = 16 * 1024
"""The longest line in a container log as `pods/log` counts lines: the container runtime splits longer
output (containerd's and Docker's default) and `tailLines` counts each piece."""

LINE_OVERHEAD = 128
"""Bytes of a frame line besides its base64 slice: prefix, nonce, number, separators, newline; also
bounds a whole `begin` or `end` line."""

_NONCE = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FrameError(ValueError):
    """The frame in the log is missing, incomplete or does not match its pointer."""


def write(raw: bytes, stream: TextIO, nonce: str | None = None) -> str:
    """Write `raw` (an envelope's JSON) to `stream` as a frame; returns the termination message."""
    nonce = nonce or secrets.token_hex(16)
    payload = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    chunks = [payload[i : i + CHUNK_CHARS] for i in range(0, len(payload), CHUNK_CHARS)] or [""]
    digest = hashlib.sha256(raw).hexdigest()
    stream.write(f"{LINE_PREFIX} {nonce} begin {len(raw)} {digest}\n")
    for index, chunk in enumerate(chunks, start=1):
        stream.write(f"{LINE_PREFIX} {nonce} {index} {chunk}\n")
    stream.write(f"{LINE_PREFIX} {nonce} end {len(chunks)}\n")
    stream.flush()
    pointer = {"nonce": nonce, "bytes": len(raw), "sha256": digest, "lines": len(chunks)}
    return LOGGED_PREFIX + json.dumps(pointer, separators=(",", ":"))


def max_lines(size: int) -> int:
    """The most frame lines an envelope of `size` bytes can need: zlib's worst case (incompressible input)
    is under size + size/1000 + 64 bytes, base64 makes 4 characters of every 3 bytes, CHUNK_CHARS a line."""
    compressed = size + size // 1000 + 64
    return -(-4 * -(-compressed // 3) // CHUNK_CHARS)


def pointer(message: str) -> dict[str, Any] | None:
    """The frame pointer of a termination message, or None if it is not one; raises FrameError if malformed
    or out of range (see docs/runner-contract.md, "Limits")."""
    text = message.strip()
    if not text.startswith(LOGGED_PREFIX):
        return None
    try:
        found = json.loads(text[len(LOGGED_PREFIX) :])
    except (ValueError, RecursionError):
        raise FrameError("the termination message points at a logged outcome but is not valid JSON") from None
    if not isinstance(found, dict):
        raise FrameError("the logged-outcome pointer is not a JSON object")
    for key, kind in (("nonce", str), ("bytes", int), ("sha256", str), ("lines", int)):
        if not isinstance(found.get(key), kind) or isinstance(found.get(key), bool):
            raise FrameError(f"the logged-outcome pointer lacks a valid {key!r}")
    if not _NONCE.fullmatch(found["nonce"]):
        raise FrameError("the logged-outcome pointer's nonce must be 32 lowercase hex characters")
    if not _SHA256.fullmatch(found["sha256"]):
        raise FrameError("the logged-outcome pointer's sha256 must be 64 lowercase hex characters")
    if not 0 <= found["bytes"] <= MAX_FRAME_BYTES:
        raise FrameError(f"the logged-outcome pointer's bytes must be from 0 to {MAX_FRAME_BYTES}")
    most = max_lines(found["bytes"])
    if not 1 <= found["lines"] <= most:
        raise FrameError(
            f"the logged-outcome pointer's lines must be from 1 to {most}, the most {found['bytes']} bytes can need"
        )
    return found


def tail_lines(where: Mapping[str, Any]) -> int:
    """How many lines at the end of the log to read (`pods/log` `tailLines`) to hold the frame `where` (a
    valid pointer) describes: its `lines` and the `begin` and `end` lines, plus TAIL_SLACK_LINES."""
    return int(where["lines"]) + 2 + TAIL_SLACK_LINES


def log_bytes(where: Mapping[str, Any]) -> int:
    """An upper bound on the bytes of the last `tail_lines(where)` lines of the log when they hold the
    frame (`pods/log` `limitBytes`): each frame line is at most CHUNK_CHARS + LINE_OVERHEAD bytes, each
    slack line at most MAX_LOG_LINE_BYTES."""
    return (int(where["lines"]) + 2) * (CHUNK_CHARS + LINE_OVERHEAD) + TAIL_SLACK_LINES * MAX_LOG_LINE_BYTES


def read(log: str, where: Mapping[str, Any], max_bytes: int) -> bytes:
    """The envelope JSON framed in `log` as `where` (a pointer) describes it; raises FrameError otherwise.

    `log` may be the whole log or its tail, and may hold U+FFFD where the log had bytes that are not UTF-8
    (decode it with errors="replace"): the frame's own lines are ASCII. Lines of other nonces, and other
    output between the frame's lines, are skipped; the last `begin` line of this nonce starts the frame."""
    size, nonce, lines = where["bytes"], where["nonce"], where["lines"]
    if size > max_bytes:
        raise FrameError(f"the outcome is {size} bytes; the limit is {max_bytes} bytes")
    mine = f"{LINE_PREFIX} {nonce} "
    begin = log.rfind(mine + "begin ")
    if begin < 0:
        raise FrameError("the log holds no frame with this run's nonce (was the log rotated or cut short?)")
    header, position = _line(log, begin)
    if header != f"{mine}begin {size} {where['sha256']}":
        raise FrameError(
            f"the frame's begin line does not match: the termination message says {size} bytes, "
            f"sha256 {where['sha256']}"
        )
    chunks: list[str] = []
    ended = False
    while position < len(log) and not ended:
        line, position = _line(log, position)
        if not line.startswith(mine):
            continue
        number, _, data = line[len(mine) :].partition(" ")
        if number == "end":
            if data != str(lines):
                raise FrameError(f"the frame's end line says {data[:20]!r}; the termination message says {lines}")
            ended = True
        elif number != str(len(chunks) + 1) or len(chunks) == lines:
            raise FrameError(
                f"the frame's lines are missing or out of order (line {number[:20]!r} after {len(chunks)})"
            )
        elif len(data) > CHUNK_CHARS:
            raise FrameError(f"the frame's line {number} is longer than {CHUNK_CHARS} characters")
        else:
            chunks.append(data)
    if not ended:
        raise FrameError(f"the frame is truncated: {len(chunks)} of {lines} lines and no end marker")
    if len(chunks) != lines:
        raise FrameError(f"the frame's lines are missing or out of order ({len(chunks)} of {lines})")
    try:
        compressed = base64.b64decode("".join(chunks), validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, max_bytes + 1)
    except (ValueError, zlib.error) as exc:  # binascii.Error, and a slice that is not ASCII (U+FFFD)
        raise FrameError(f"the frame does not decode: {exc}") from None
    if len(raw) != size or inflater.unconsumed_tail:
        raise FrameError(f"the frame holds {len(raw)} bytes; the termination message says {size}")
    if hashlib.sha256(raw).hexdigest() != where["sha256"]:
        raise FrameError("the frame's sha256 does not match the termination message: it was altered")
    return raw


def _line(log: str, start: int) -> tuple[str, int]:
    """The line of `log` from `start` (without its line break) and where the next one starts."""
    end = log.find("\n", start)
    end = len(log) if end < 0 else end
    return log[start:end].rstrip("\r"), end + 1
