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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
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


def pointer(message: str) -> dict[str, Any] | None:
    """The frame pointer of a termination message, or None if it is not one; raises FrameError if malformed."""
    text = message.strip()
    if not text.startswith(LOGGED_PREFIX):
        return None
    try:
        found = json.loads(text[len(LOGGED_PREFIX) :])
    except ValueError:
        raise FrameError("the termination message points at a logged outcome but is not valid JSON") from None
    if not isinstance(found, dict):
        raise FrameError("the logged-outcome pointer is not a JSON object")
    for key, kind in (("nonce", str), ("bytes", int), ("sha256", str), ("lines", int)):
        if not isinstance(found.get(key), kind) or isinstance(found.get(key), bool):
            raise FrameError(f"the logged-outcome pointer lacks a valid {key!r}")
    return found


def read(log: str, where: Mapping[str, Any], max_bytes: int) -> bytes:
    """The envelope JSON framed in `log` as `where` (a pointer) describes it; raises FrameError otherwise."""
    if where["bytes"] > max_bytes:
        raise FrameError(f"the outcome is {where['bytes']} bytes; the limit is {max_bytes} bytes")
    nonce, lines = where["nonce"], where["lines"]
    mine = f"{LINE_PREFIX} {nonce} "
    body = [line[len(mine) :].rstrip("\r") for line in log.splitlines() if line.startswith(mine)]
    if not body or not body[0].startswith("begin "):
        raise FrameError("the log holds no frame with this run's nonce (was the log rotated or cut short?)")
    if body[-1] != f"end {lines}":
        raise FrameError(f"the frame is truncated: {len(body) - 1} of {lines} lines and no end marker")
    chunks = body[1:-1]
    numbered = [chunk.partition(" ") for chunk in chunks]
    if [number for number, _, _ in numbered] != [str(i) for i in range(1, lines + 1)]:
        raise FrameError(f"the frame's lines are missing or out of order ({len(chunks)} of {lines})")
    try:
        compressed = base64.b64decode("".join(data for _, _, data in numbered), validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, max_bytes + 1)
    except (binascii.Error, zlib.error) as exc:
        raise FrameError(f"the frame does not decode: {exc}") from None
    if len(raw) != where["bytes"] or inflater.unconsumed_tail:
        raise FrameError(f"the frame holds {len(raw)} bytes; the termination message says {where['bytes']}")
    if hashlib.sha256(raw).hexdigest() != where["sha256"]:
        raise FrameError("the frame's sha256 does not match the termination message: it was altered")
    return raw
