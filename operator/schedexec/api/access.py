"""Who is calling, and may they: TokenReview and SubjectAccessReview, with short caches.

The API holds no users of its own; Kubernetes decides. A bearer token is
reviewed by the API server (TokenReview) for the API's own audiences
(`SCHEDEXEC_API_AUDIENCES`, default `schedexec`), so a token minted for the
Kubernetes API, or for another service, is refused here and a schedexec
token is refused by the Kubernetes API. Each access is a
SubjectAccessReview for the reviewed user, so the caller's own RBAC applies.
Both answers are reused for `review_ttl_seconds` (30 s: a polling client
would otherwise cost two reviews per poll; a removed grant stops working
within that bound, a revoked token within it plus the 10 s kube-apiserver
caches a token's authentication itself), in LRU caches of bounded size:
accepted and refused tokens apart, so garbage tokens only ever push out
other garbage. A review not answered from a cache costs the client address
one token of its bucket (`limits`), so no client can make the API send
reviews without bound. Requests that miss the cache while the same review
is under way wait for its answer and spend nothing: when a cached answer
expires under a client polling on 50 connections, it costs one review, not
50 (`make bench` saw 429s there before).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request

from schedexec import models
from schedexec.api.errors import ApiError
from schedexec.api.kubeclient import Client
from schedexec.api.limits import Buckets, Clock, ExpiringLru, RateLimited
from schedexec.settings import ApiSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    user: str
    uid: str
    """The user's uid as the TokenReview gives it (a ServiceAccount's own UID): the same for every token."""
    identity: str
    """Stable JSON of the reviewed user (name, uid, groups, extra): the cache key of its reviews. `extra`
    may differ per token (a ServiceAccount token's credential id), so this is not who the caller is."""
    address: str = ""
    """The client address of the request at hand: whose review budget a review not cached spends."""

    def info(self) -> dict[str, Any]:
        return json.loads(self.identity)  # type: ignore[no-any-return]


def executions(verb: str, namespace: str) -> dict[str, str]:
    """The resource attributes of `verb` on scheduledexecutions in `namespace`."""
    return {"group": models.GROUP, "resource": models.PLURAL, "verb": verb, "namespace": namespace}


def secret(name: str, namespace: str) -> dict[str, str]:
    """The resource attributes of reading the Secret `name` in `namespace`."""
    return {"resource": "secrets", "verb": "get", "namespace": namespace, "name": name}


def new_secret(namespace: str) -> dict[str, str]:
    """The resource attributes of creating a Secret in `namespace` (one the API creates for the caller)."""
    return {"resource": "secrets", "verb": "create", "namespace": namespace}


class Gate:
    """TokenReview + SubjectAccessReview, with expiring, bounded caches of both answers and a review
    budget per client address."""

    def __init__(self, client: Client, settings: ApiSettings, clock: Clock | None = None) -> None:
        self.client = client
        self.insecure = settings.insecure
        self.audiences = list(settings.audiences)
        size, ttl = settings.review_cache_entries, settings.review_ttl_seconds
        self._accepted: ExpiringLru[Caller] = ExpiringLru(size, ttl, clock)
        self._refused: ExpiringLru[None] = ExpiringLru(size, ttl, clock)
        self._access: ExpiringLru[bool] = ExpiringLru(size, ttl, clock)
        self._budget = Buckets(settings.reviews_per_second_per_client, settings.review_burst_per_client, clock=clock)
        self._under_way: dict[Hashable, asyncio.Future[Any]] = {}
        """Reviews asked and not answered yet, by cache key: one at a time per key."""

    async def caller(self, authorization: str | None, address: str = "") -> Caller:
        """The reviewed caller of a request from `address`; 401 for a missing or refused token, 429 when
        the token is not cached and `address` spent its review budget."""
        if self.insecure:
            return Caller("system:anonymous:insecure-mode", "", "{}", address)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Unauthorized", "send a Kubernetes bearer token: Authorization: Bearer <token>")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        accepted = self._accepted.get(digest)
        if accepted is None and self._refused.get(digest) is None:
            accepted = await self._once(("token", digest), address, lambda: self._review_token(token.strip(), digest))
        if accepted is None:
            raise ApiError(
                401,
                "Unauthorized",
                "the bearer token was not accepted (expired, revoked, or not for audience "
                f"{', '.join(self.audiences)}: kubectl create token SA --audience {self.audiences[0]})",
            )
        return replace(accepted[0], address=address)

    async def _review_token(self, token: str, digest: str) -> tuple[Caller] | None:
        user = await self.client.review_token(token, self.audiences)
        if user is None:
            self._refused.put(digest, None)
            return None
        caller = Caller(user.get("username", ""), user.get("uid", ""), json.dumps(user, sort_keys=True))
        self._accepted.put(digest, caller)
        return (caller,)

    async def may(self, caller: Caller, access: dict[str, str]) -> bool:
        if self.insecure:
            return True
        key = (caller.identity, json.dumps(access, sort_keys=True))
        cached = self._access.get(key)
        if cached is None:
            return await self._once(("access", key), caller.address, lambda: self._review_access(caller, access, key))
        return cached[0]

    async def _review_access(self, caller: Caller, access: dict[str, str], key: tuple[str, str]) -> bool:
        allowed = await self.client.may(caller.info(), access)
        self._access.put(key, allowed)
        return allowed

    async def _once(self, key: Hashable, address: str, review: Callable[[], Awaitable[T]]) -> T:
        """The answer of `review`, asked once however many requests need it at the same time: the first
        spends `address`'s budget and asks, the others wait for that answer (or its error). A request that
        goes away does not cancel the review the others wait for."""
        under_way = self._under_way.get(key)
        if under_way is None:
            self._spend(address)
            under_way = self._under_way[key] = asyncio.ensure_future(review())
            under_way.add_done_callback(lambda done: self._answered(key, done))
        return await asyncio.shield(under_way)

    def _answered(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        self._under_way.pop(key, None)
        if not done.cancelled():
            done.exception()  # its error reached the requests that waited; none left is not an error to log

    def _spend(self, address: str) -> None:
        try:
            self._budget.take(address)
        except RateLimited as limited:
            raise ApiError(
                429,
                "Too Many Requests",
                f"too many new tokens or accesses to review from {address or 'this client'}; "
                f"retry in {limited.retry_after}s",
                headers={"Retry-After": str(limited.retry_after)},
            ) from None


def address(request_scope: MutableMapping[str, Any]) -> str:
    """The client address of a request: the TCP peer, or the address a proxy listed in
    SCHEDEXEC_API_TRUSTED_PROXIES forwards (uvicorn sets `client` from X-Forwarded-For only for those)."""
    client = request_scope.get("client")
    return str(client[0]) if client else ""


async def authenticated(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """The dependency every route takes: the reviewed caller (the guard reviewed it already), or 401."""
    caller = request.scope.get("state", {}).get("caller")
    if isinstance(caller, Caller):
        return caller
    gate: Gate = request.app.state.gate
    return await gate.caller(authorization, address(request.scope))


CallerDep = Annotated[Caller, Depends(authenticated)]
