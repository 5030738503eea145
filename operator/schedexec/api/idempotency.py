"""Idempotency-Keys that only their owner can bind: the names and annotation a (caller, key, request) gets.

With an Idempotency-Key a retry must find the same execution, and nobody
else may bind the caller's key: anyone allowed to create executions in the
namespace could otherwise create the object a retry looks for first, and
the retry would answer their execution (a forged result) or 409 forever.
So the name and the `schedexec.io/idempotency` annotation are HMACs under a
key only the API holds (`signing_key`, SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE):
nobody can predict the name or forge the annotation of (caller, key,
request). The caller is its username and uid, never the token's `extra` (a
ServiceAccount token carries its own credential id there): a retry with a
refreshed token is the same caller. An object found under the name is
answered as the caller's only if `claim` finds the annotation made for that
caller and that request and the object's spec and labels exactly what the
request asks; one the caller's own key made for another request is 409. An
object planted by someone else (its name leaked once the caller's execution
existed, and that one was deleted) does not block the key: the next of
IDEMPOTENCY_NAMES names is tried. Residual: a user who may delete and
create executions in the namespace can re-create the caller's execution
with the annotation copied from it; the retry then answers an execution
doing exactly what the caller asked (`claim` compares the spec), which that
user can do to anything in the namespace anyway; and one who planted an
object under the first name, then deletes it once the caller's execution
went to the next name, makes a retry create a second execution there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schedexec import models
from schedexec.api.access import Caller
from schedexec.api.documents import IDEMPOTENCY

log = logging.getLogger("schedexec.api")

IDEMPOTENCY_NAMES = 3
"""Names one (caller, Idempotency-Key) may bind, tried in order while the one before holds an object the API
did not create for it: a planted object costs its owner a GET, not the key."""
MIN_KEY_BYTES = 16
"""The shortest signing key accepted from SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE."""


def signing_key(path: Path | None) -> bytes:
    """The key Idempotency-Key bindings are signed with: the file's content without surrounding whitespace;
    without a file, a random key for this process only (and a warning: a retry after a restart creates a
    new execution)."""
    if path is None:
        log.warning(
            "SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE is not set: Idempotency-Keys are signed with a random key of this "
            "process, so a retry sent after the API restarts (or to another replica) creates a new execution"
        )
        return secrets.token_bytes(32)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE {path}: {exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE {path} holds {len(key)} bytes; the key must have at least "
            f"{MIN_KEY_BYTES} (e.g. head -c 32 /dev/urandom | base64)"
        )
    return key


def mac(key: bytes, *parts: Any) -> str:
    """HMAC-SHA256 (hex) of `parts` as JSON, under `key`: what only the holder of `key` can compute."""
    return hmac.new(key, json.dumps(parts, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def normalised(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """`spec` with every default filled in, as the API server stores it; None if it is not a valid spec."""
    try:
        return models.ScheduledExecutionSpec.model_validate(spec).model_dump(mode="json", by_alias=True)
    except ValidationError:
        return None


@dataclass(frozen=True)
class Binding:
    """What an Idempotency-Key binds for one caller and one request."""

    owner: str
    """HMAC of (caller, key): the first half of the annotation."""
    request: str
    """HMAC of (owner, the request's spec): the second half."""
    names: tuple[str, ...]
    """The names the execution may have, in the order they are tried."""

    @property
    def annotation(self) -> str:
        return f"{self.owner}:{self.request}"


def bind(key: bytes, caller: Caller, idempotency_key: str, request: Mapping[str, Any]) -> Binding:
    """The Binding of `idempotency_key` sent by `caller` with the spec `request` (as sent, before any
    `seal`), signed with `key`."""
    owner = mac(key, "owner", caller.user, caller.uid, idempotency_key)
    names = tuple(f"api-{mac(key, 'name', owner, index)[:24]}" for index in range(IDEMPOTENCY_NAMES))
    return Binding(owner, mac(key, "request", owner, request), names)


class Claim(Enum):
    OURS = "ours"
    """Created by the API for this caller and this request: the retry's answer."""
    OTHER_REQUEST = "other request"
    """Created by the API for this caller's key, for another request: 409."""
    NOT_OURS = "not ours"
    """Not created by the API for this caller's key (planted, or changed since): never answered."""


def claim(existing: Mapping[str, Any], binding: Binding, spec: Mapping[str, Any], labels: Mapping[str, str]) -> Claim:
    """Whose the execution `existing` is, for a request bound as `binding` that would create `spec` (as sent)
    with `labels`."""
    metadata = existing.get("metadata") or {}
    owner, _, request = str((metadata.get("annotations") or {}).get(IDEMPOTENCY, "")).partition(":")
    if not hmac.compare_digest(owner, binding.owner):
        return Claim.NOT_OURS
    if not hmac.compare_digest(request, binding.request):
        return Claim.OTHER_REQUEST
    stored_labels = metadata.get("labels") or {}
    same_labels = all(stored_labels.get(name) == value for name, value in labels.items())
    stored, asked = normalised(existing.get("spec") or {}), normalised(spec)
    if stored is None or asked is None:
        return Claim.NOT_OURS
    # `cancel` is the one field a user may change after creation: a cancelled execution is still the request's
    same = all(stored.get(field) == asked.get(field) for field in models.IMMUTABLE_SPEC_FIELDS)
    return Claim.OURS if same_labels and same else Claim.NOT_OURS
