"""Creating an execution for a caller: access, the Idempotency-Key, the object, the 202 answer.

Both kinds of scheduling request end here with a typed spec. The spec is
serialised once, here, for the API server; the caller must be allowed to
create executions in the namespace and to read a credentials Secret it
names (a run reads it on the caller's behalf). What the API server refuses
to store (400, 422: a number too large for it, say) is the request's own
fault and answered 422 with the API server's reason.

Without an Idempotency-Key the API server generates the name (five random
characters after `generateName`) and answers 409 AlreadyExists when the one
it drew is taken: the create is sent again, up to GENERATED_NAME_TRIES
times, then answered 503 with Retry-After (nothing was created: the client
may simply retry).

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

elastic.io's `fields` carry credentials, and a spec's args are readable by
anyone who may read the execution, its Job or its pod. A request sent
`confidential` (`elastic.confidential` decides which) is `seal`ed: its args go
into a Secret the API creates after the execution (an ownerReference to the
execution's uid, so the garbage collector deletes it with the execution,
and no Secret outlives a crash before it), under a name nobody can predict,
named by the execution's `credentialsSecretRef`; the args keep only a
salted digest of it, which the runner checks before it gives the args back
to the component (schedexec_runner.main.unseal): a Secret someone else
planted under that name is refused, not used. A run whose pod starts before
the Secret exists waits: the kubelet retries the mount. Only a caller
allowed to create Secrets in the namespace may send one.
"""

from __future__ import annotations

import base64
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

from fastapi.responses import Response
from pydantic import ValidationError

from schedexec import models
from schedexec.api import access
from schedexec.api.access import Caller, Gate
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import IDEMPOTENCY, execution_response, poll_link
from schedexec.api.errors import ApiError, unprocessable
from schedexec.api.kubeclient import Client, Refused
from schedexec_runner import contract

log = logging.getLogger("schedexec.api")

GENERATED_NAME_TRIES = 3
"""Creates sent for one request without an Idempotency-Key while the API server's generated name is taken."""
IDEMPOTENCY_NAMES = 3
"""Names one (caller, Idempotency-Key) may bind, tried in order while the one before holds an object the API
did not create for it: a planted object costs its owner a GET, not the key."""
MIN_KEY_BYTES = 16
"""The shortest signing key accepted from SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE."""
CONFIG_SECRET_PREFIX = "schedexec-config-"
CREATED_BY = "schedexec.io/created-by"
COMPONENT = "schedexec.io/component"


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


def wire(spec: models.ScheduledExecutionSpec) -> dict[str, Any]:
    """The spec as the API server receives it: what the request and the API's settings chose, the CRD's
    defaults (the model's own) for the rest."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


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


@dataclass(frozen=True)
class Sealed:
    """A confidential request's spec with its args kept out, and the Secret content that holds them."""

    spec: models.ScheduledExecutionSpec
    secret: str
    """The Secret's name, which the spec's credentialsSecretRef names."""
    content: bytes
    """The value of its contract.CONFIG_KEY: the args and a salt, as JSON."""


def seal(spec: models.ScheduledExecutionSpec, secret: str, salt: str) -> Sealed:
    """`spec` whose args live in the Secret `secret`: the args only name the content's SHA-256, which tells
    nothing about them (the salt is random, or an HMAC only the API can compute)."""
    content = json.dumps({"salt": salt, "args": spec.args}, sort_keys=True, ensure_ascii=False).encode()
    sealed = spec.model_copy(
        update={
            "args": {contract.CONFIG_DIGEST: hashlib.sha256(content).hexdigest()},
            "credentials_secret_ref": models.LocalObjectReference(name=secret),
        }
    )
    return Sealed(sealed, secret, content)


def config_secret(sealed: Sealed, execution: Mapping[str, Any]) -> dict[str, Any]:
    """The Secret holding `sealed`'s args, owned by the created `execution` (deleted with it)."""
    meta = execution["metadata"]
    owner = {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": meta["name"], "uid": meta["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {"name": sealed.secret, "labels": {CREATED_BY: "api"}, "ownerReferences": [owner]},
        "data": {contract.CONFIG_KEY: base64.b64encode(sealed.content).decode()},
    }


def labelled(component: str, more: Mapping[str, str] | None) -> dict[str, str]:
    """The labels of an execution the API creates for `component`; `more`: the dialect's."""
    return {CREATED_BY: "api", COMPONENT: component, **(more or {})}


class Submitter:
    """Creates executions on behalf of callers."""

    def __init__(self, gate: Gate, client: Client, cache: ExecutionCache, key: bytes) -> None:
        self.gate, self.client, self.cache = gate, client, cache
        self.key = key
        """The Idempotency-Key signing key (`signing_key`)."""

    async def submit(
        self,
        caller: Caller,
        namespace: str,
        spec: models.ScheduledExecutionSpec,
        component: str,
        key: str | None,
        labels: Mapping[str, str] | None = None,
        confidential: bool = False,
    ) -> Response:
        """202 with the new execution (or, for a retried Idempotency-Key, the one it created); `labels`:
        more labels of the new execution (the API dialect that created it); `confidential`: its args are
        credentials, `seal`ed in a Secret of their own."""
        await self._authorize(caller, namespace, spec, confidential)
        all_labels = labelled(component, labels)
        try:
            if key is None:
                sealed = seal(spec, _random_secret_name(), secrets.token_hex(32)) if confidential else None
                created = await self._create_generated(namespace, sealed.spec if sealed else spec, all_labels)
            else:
                created, sealed = await self._create_keyed(caller, namespace, spec, all_labels, key, confidential)
        except Refused as refusal:
            raise unprocessable(f"the Kubernetes API server refused the execution: {refusal}") from None
        if sealed is not None:
            await self._store(namespace, sealed, created)
        self.cache.remember(created)  # kept only if its watch events did not come first
        return execution_response(created, 202, location=poll_link(created["metadata"]["uid"]))

    async def _create_generated(
        self, namespace: str, spec: models.ScheduledExecutionSpec, labels: dict[str, str]
    ) -> dict[str, Any]:
        """The execution created under a generated name, or 503 if every generated name was taken."""
        prefix = f"api-{labels[COMPONENT]}-"[:50]
        body = _execution({"generateName": prefix, "labels": labels}, wire(spec))
        for _ in range(GENERATED_NAME_TRIES):
            created = await self.client.create_execution(namespace, body)
            if created is not None:
                return created
        raise ApiError(
            503,
            "Service Unavailable",
            f"the names the Kubernetes API server generated for the new execution ({prefix}...) were taken "
            f"{GENERATED_NAME_TRIES} times in a row in namespace {namespace}; nothing was created: retry the request",
            headers={"Retry-After": "1"},
        )

    async def _create_keyed(
        self,
        caller: Caller,
        namespace: str,
        spec: models.ScheduledExecutionSpec,
        labels: dict[str, str],
        key: str,
        confidential: bool,
    ) -> tuple[dict[str, Any], Sealed | None]:
        """The execution bound to `key` for this caller and request: found under one of its names, else
        created under the first one free; 409 if the key was used for another request or its names are all
        held by objects the API did not create for it."""
        binding = bind(self.key, caller, key, wire(spec))
        for name in binding.names:
            sealed = None
            if confidential:  # the same Secret name and content on every retry: a crash before it is repaired
                secret = f"{CONFIG_SECRET_PREFIX}{mac(self.key, 'secret', binding.owner, name)[:32]}"
                sealed = seal(spec, secret, mac(self.key, "salt", binding.annotation, name))
            document = wire(sealed.spec if sealed else spec)
            meta = {"name": name, "labels": labels, "annotations": {IDEMPOTENCY: binding.annotation}}
            met = await self._create_or_get(namespace, _execution(meta, document))
            if met is None:
                continue
            existing, created = met
            if created:
                return existing, sealed
            found = claim(existing, binding, document, labels)
            if found is Claim.OURS:
                return existing, sealed
            if found is Claim.OTHER_REQUEST:
                raise ApiError(409, "Conflict", "this Idempotency-Key was used for another request; use a new key")
            log.warning(
                "execution %s/%s holds a name of an Idempotency-Key but was not created for it", namespace, name
            )
        raise ApiError(
            409,
            "Conflict",
            f"the executions in namespace {namespace} under this Idempotency-Key's names were not created by "
            "this API for you (someone else created or replaced them); use a new key",
        )

    async def _create_or_get(self, namespace: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool] | None:
        """The execution `body` created (True), or the one holding its name (False: read from the API server,
        as the cache keeps no spec to compare); None if that one was deleted before each GET."""
        for _ in range(2):
            created = await self.client.create_execution(namespace, body)
            if created is not None:
                return created, True
            existing = await self.client.get_execution(namespace, body["metadata"]["name"])
            if existing is not None:
                return existing, False
        return None

    async def _store(self, namespace: str, sealed: Sealed, created: dict[str, Any]) -> None:
        """Create `sealed`'s Secret for the `created` execution; one already there (a retry's) is left as it
        is: if it is not the one sealed, the run refuses it."""
        name = created["metadata"]["name"]
        try:
            await self.client.create_secret(namespace, config_secret(sealed, created))
        except Exception as exc:  # the execution exists: its run waits for the Secret (a retry with the key repairs it)
            log.error("the configuration Secret of execution %s/%s could not be created: %s", namespace, name, exc)
            raise ApiError(
                503,
                "Service Unavailable",
                f"execution {name} was created in namespace {namespace} but the Secret holding its configuration "
                "could not be, so its run cannot start: retry (with an Idempotency-Key, a retry completes that "
                "execution instead of creating another)",
                headers={"Retry-After": "1"},
            ) from None

    async def _authorize(
        self, caller: Caller, namespace: str, spec: models.ScheduledExecutionSpec, confidential: bool
    ) -> None:
        if not await self.gate.may(caller, access.executions("create", namespace)):
            raise ApiError(403, "Forbidden", f"you may not create scheduledexecutions in namespace {namespace}")
        ref = spec.credentials_secret_ref
        if ref is not None and not await self.gate.may(caller, access.secret(ref.name, namespace)):
            # the run would read the Secret on the caller's behalf: only for callers who may read it themselves
            raise ApiError(403, "Forbidden", f"you may not read the credentials Secret {ref.name} in {namespace}")
        if confidential and not await self.gate.may(caller, access.new_secret(namespace)):
            # the API creates a Secret for the caller: only for callers who may create one themselves
            raise ApiError(
                403,
                "Forbidden",
                f"the configuration (data.attributes.fields) is kept in a Secret the API creates for you, and you "
                f"may not create secrets in namespace {namespace}: send no fields, or put the credentials in a "
                "Secret you may read and name it in data.relationships.credential (the fields are then plain "
                "configuration, kept in the execution's args)",
            )


def _execution(metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": models.KIND, "metadata": metadata, "spec": spec}


def _random_secret_name() -> str:
    return f"{CONFIG_SECRET_PREFIX}{secrets.token_hex(16)}"
