"""Creating an execution for a caller: access, the Idempotency-Key, the object, the 202 answer.

Both kinds of scheduling request end here with a typed spec. The spec is
serialised once, here, for the API server; the caller must be allowed to
create executions in the namespace and to read a credentials Secret it
names (a run reads it on the caller's behalf). With an Idempotency-Key the
execution's name derives from (caller, key) and an annotation records the
request's hash, so a retry finds the same execution and a different request
under the same key is refused. The caller is its username and uid, never
the token's `extra` (a ServiceAccount token carries its own credential id
there): a retry with a refreshed token is the same caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response

from schedexec import models
from schedexec.api import access
from schedexec.api.access import Caller, Gate
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import execution_response, poll_link
from schedexec.api.errors import ApiError
from schedexec.api.kubeclient import Client

IDEMPOTENCY = "schedexec.io/idempotency"
"""Annotation of executions created with an Idempotency-Key: sha256(caller, key):sha256(request)."""


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
        created = await asyncio.to_thread(self.client.create_execution, namespace, body)
        if created is None:  # a retry with the same Idempotency-Key: the same execution, if it is that one
            created = await self._same_request(namespace, meta)
        else:
            self.cache.remember(created)
        return execution_response(created, 202, location=poll_link(created["metadata"]["uid"]))

    async def _authorize(self, caller: Caller, namespace: str, spec: models.ScheduledExecutionSpec) -> None:
        if not await self.gate.may(caller, access.executions("create", namespace)):
            raise ApiError(403, "Forbidden", f"you may not create scheduledexecutions in namespace {namespace}")
        ref = spec.credentials_secret_ref
        if ref is not None and not await self.gate.may(caller, access.secret(ref.name, namespace)):
            # the run would read the Secret on the caller's behalf: only for callers who may read it themselves
            raise ApiError(403, "Forbidden", f"you may not read the credentials Secret {ref.name} in {namespace}")

    async def _same_request(self, namespace: str, meta: dict[str, Any]) -> dict[str, Any]:
        """The execution of that name, if it was created for the same request; else 409."""
        existing = self.cache.by_name(namespace, meta["name"]) or await asyncio.to_thread(
            self.client.get_execution, namespace, meta["name"]
        )
        stored = ((existing or {}).get("metadata", {}).get("annotations") or {}).get(IDEMPOTENCY, "")
        if existing is None or stored != meta["annotations"][IDEMPOTENCY]:
            raise ApiError(409, "Conflict", "this Idempotency-Key was used for another request; use a new key")
        return existing
