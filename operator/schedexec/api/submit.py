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

With an Idempotency-Key a retry finds the same execution (`idempotency`
binds the key under a key only the API holds, and `claim`s what it finds);
elastic.io `fields` that carry credentials are `sealing.seal`ed into a
Secret the execution owns, created here right after the execution.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response

from schedexec import models, tracing
from schedexec.api import access
from schedexec.api.access import Caller, Gate
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import COMPONENT, CREATED_BY, IDEMPOTENCY, execution_response, poll_link
from schedexec.api.errors import ApiError, unprocessable
from schedexec.api.idempotency import Claim, bind, claim, mac
from schedexec.api.kubeclient import Client, Refused
from schedexec.api.sealing import CONFIG_SECRET_PREFIX, Sealed, config_secret, random_secret_name, seal

log = logging.getLogger("schedexec.api")

GENERATED_NAME_TRIES = 3
"""Creates sent for one request without an Idempotency-Key while the API server's generated name is taken."""


def wire(spec: models.ScheduledExecutionSpec) -> dict[str, Any]:
    """The spec as the API server receives it: what the request and the API's settings chose, the CRD's
    defaults (the model's own) for the rest."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


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
                sealed = seal(spec, random_secret_name(), secrets.token_hex(32)) if confidential else None
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
    traced = tracing.current()  # the request's span, when tracing is on: the execution's trace parent
    if traced is not None:
        metadata = {**metadata, "annotations": {**metadata.get("annotations", {}), tracing.ANNOTATION: traced}}
    return {"apiVersion": models.API_VERSION, "kind": models.KIND, "metadata": metadata, "spec": spec}
