"""Creating an execution for a caller: access, the Idempotency-Key, the object, the 202 answer.

Both kinds of scheduling request end here with a typed spec. The spec is
serialised once, here, for the API server; the caller must be allowed to
create executions in the namespace and to read a credentials Secret it
names (a run reads it on the caller's behalf). With an Idempotency-Key the
execution's name derives from (caller, key) and an annotation records the
request's hash, so a retry finds the same execution and a different request
under the same key is refused. The caller is its username and uid, never
the token's `extra` (a ServiceAccount token carries its own credential id
there): a retry with a refreshed token is the same caller. Without a key the
API server generates the name (five random characters after `generateName`)
and answers 409 AlreadyExists when the one it drew is taken: the create is
sent again, up to GENERATED_NAME_TRIES times, then answered 503 with
Retry-After (nothing was created: the client may simply retry). What the
API server refuses to store (400, 422: a number too large for it, say) is
the request's own fault and answered 422 with the API server's reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response

from schedexec import models
from schedexec.api import access
from schedexec.api.access import Caller, Gate
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import IDEMPOTENCY, execution_response, poll_link
from schedexec.api.errors import ApiError, unprocessable
from schedexec.api.kubeclient import Client, Refused

GENERATED_NAME_TRIES = 3
"""Creates sent for one request without an Idempotency-Key while the API server's generated name is taken."""


def wire(spec: models.ScheduledExecutionSpec) -> dict[str, Any]:
    """The spec as the API server receives it: what the request and the API's settings chose, the CRD's
    defaults (the model's own) for the rest."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


def metadata(caller: Caller, spec: dict[str, Any], component: str, key: str | None) -> dict[str, Any]:
    """The new execution's metadata: a generated name, or one derived from (caller, Idempotency-Key)."""
    meta: dict[str, Any] = {"labels": {"schedexec.io/created-by": "api", "schedexec.io/component": component}}
    if key is None:
        meta["generateName"] = f"api-{component}-"[:50]
        return meta
    request = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    owner = hashlib.sha256(json.dumps([caller.user, caller.uid, key]).encode()).hexdigest()
    meta["name"] = f"api-{owner[:24]}"
    meta["annotations"] = {IDEMPOTENCY: f"{owner}:{request}"}
    return meta


class Submitter:
    """Creates executions on behalf of callers."""

    def __init__(self, gate: Gate, client: Client, cache: ExecutionCache) -> None:
        self.gate, self.client, self.cache = gate, client, cache

    async def submit(
        self,
        caller: Caller,
        namespace: str,
        spec: models.ScheduledExecutionSpec,
        component: str,
        key: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> Response:
        """202 with the new execution (or, for a retried Idempotency-Key, the one it created); `labels`:
        more labels of the new execution (the API dialect that created it)."""
        await self._authorize(caller, namespace, spec)
        document = wire(spec)
        meta = metadata(caller, document, component, key)
        meta["labels"].update(labels or {})
        body = {"apiVersion": models.API_VERSION, "kind": models.KIND, "metadata": meta, "spec": document}
        try:
            if key is None:
                created = await self._create_generated(namespace, body)
            else:
                found = await self.client.create_execution(namespace, body)
                # None: a retry with the same Idempotency-Key: the same execution, if it is that one
                created = await self._same_request(namespace, meta) if found is None else found
        except Refused as refusal:
            raise unprocessable(f"the Kubernetes API server refused the execution: {refusal}") from None
        self.cache.remember(created)  # kept only if its watch events did not come first
        return execution_response(created, 202, location=poll_link(created["metadata"]["uid"]))

    async def _create_generated(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """The execution `body` (with a generateName) created, or 503 if every generated name was taken."""
        for _ in range(GENERATED_NAME_TRIES):
            created = await self.client.create_execution(namespace, body)
            if created is not None:
                return created
        prefix = body["metadata"]["generateName"]
        raise ApiError(
            503,
            "Service Unavailable",
            f"the names the Kubernetes API server generated for the new execution ({prefix}...) were taken "
            f"{GENERATED_NAME_TRIES} times in a row in namespace {namespace}; nothing was created: retry the request",
            headers={"Retry-After": "1"},
        )

    async def _authorize(self, caller: Caller, namespace: str, spec: models.ScheduledExecutionSpec) -> None:
        if not await self.gate.may(caller, access.executions("create", namespace)):
            raise ApiError(403, "Forbidden", f"you may not create scheduledexecutions in namespace {namespace}")
        ref = spec.credentials_secret_ref
        if ref is not None and not await self.gate.may(caller, access.secret(ref.name, namespace)):
            # the run would read the Secret on the caller's behalf: only for callers who may read it themselves
            raise ApiError(403, "Forbidden", f"you may not read the credentials Secret {ref.name} in {namespace}")

    async def _same_request(self, namespace: str, meta: dict[str, Any]) -> dict[str, Any]:
        """The execution of that name, if it was created for the same request; else 409."""
        existing = self.cache.by_name(namespace, meta["name"]) or await self.client.get_execution(
            namespace, meta["name"]
        )
        stored = ((existing or {}).get("metadata", {}).get("annotations") or {}).get(IDEMPOTENCY, "")
        if existing is None or stored != meta["annotations"][IDEMPOTENCY]:
            raise ApiError(409, "Conflict", "this Idempotency-Key was used for another request; use a new key")
        return existing
