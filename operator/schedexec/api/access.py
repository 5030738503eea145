"""Who is calling, and may they: TokenReview and SubjectAccessReview, with short caches.

The API holds no users of its own; Kubernetes decides. A bearer token is
reviewed by the API server (TokenReview), and each access by a
SubjectAccessReview for the reviewed user, so the caller's own RBAC applies.
Both answers are cached for `REVIEW_TTL_SECONDS` (a polling client would
otherwise cost two reviews per poll), in bounded caches.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from schedexec import models
from schedexec.api.errors import ApiError
from schedexec.api.kubeclient import Client

REVIEW_TTL_SECONDS = 30.0
CACHE_LIMIT = 10_000
"""Most remembered review answers; past it the cache starts over, so garbage tokens cannot grow it."""


@dataclass(frozen=True)
class Caller:
    user: str
    identity: str
    """Stable JSON of the reviewed user (name, uid, groups, extra): the cache key of its reviews."""

    def info(self) -> dict[str, Any]:
        return json.loads(self.identity)  # type: ignore[no-any-return]


def executions(verb: str, namespace: str) -> dict[str, str]:
    """The resource attributes of `verb` on scheduledexecutions in `namespace`."""
    return {"group": models.GROUP, "resource": models.PLURAL, "verb": verb, "namespace": namespace}


def secret(name: str, namespace: str) -> dict[str, str]:
    """The resource attributes of reading the Secret `name` in `namespace`."""
    return {"resource": "secrets", "verb": "get", "namespace": namespace, "name": name}


class Gate:
    """TokenReview + SubjectAccessReview, with short-lived, bounded caches of both answers."""

    def __init__(self, client: Client, insecure: bool) -> None:
        self.client = client
        self.insecure = insecure
        self._tokens: dict[str, tuple[float, Caller | None]] = {}
        self._access: dict[tuple[str, str], tuple[float, bool]] = {}

    async def caller(self, authorization: str | None) -> Caller:
        if self.insecure:
            return Caller("system:anonymous:insecure-mode", "{}")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Unauthorized", "send a Kubernetes bearer token: Authorization: Bearer <token>")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        cached = self._tokens.get(digest)
        if cached is None or cached[0] < time.monotonic():
            user = await asyncio.to_thread(self.client.review_token, token.strip())
            caller = None if user is None else Caller(user.get("username", ""), json.dumps(user, sort_keys=True))
            cached = _remember(self._tokens, digest, caller)
        if cached[1] is None:
            raise ApiError(401, "Unauthorized", "the bearer token was not accepted")
        return cached[1]

    async def may(self, caller: Caller, access: dict[str, str]) -> bool:
        if self.insecure:
            return True
        key = (caller.identity, json.dumps(access, sort_keys=True))
        cached = self._access.get(key)
        if cached is None or cached[0] < time.monotonic():
            allowed = await asyncio.to_thread(self.client.may, caller.info(), access)
            cached = _remember(self._access, key, allowed)
        return cached[1]


def _remember(cache: dict[Any, tuple[float, Any]], key: Any, value: Any) -> tuple[float, Any]:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    entry = cache[key] = (time.monotonic() + REVIEW_TTL_SECONDS, value)
    return entry


async def authenticated(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The dependency every route takes: the reviewed caller, or 401."""
    gate: Gate = request.app.state.gate
    return await gate.caller(authorization)


CallerDep = Annotated[Caller, Depends(authenticated)]
