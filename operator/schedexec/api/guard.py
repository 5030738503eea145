"""Nothing is answered before access is checked: the guard in front of every route but the probes.

FastAPI reads and parses a request's body, and validates its parameters,
before any dependency runs; a route that authorized in a dependency would
still answer 400 for bad JSON, 422 for a bad field and 404 for an unknown
component to anyone. The guard runs before all of that, as ASGI middleware
that reads headers and the query string only: it reviews the bearer token
(401, or 429 past the client's review budget) and, for a POST (which
creates an execution), asks whether the caller may `create`
scheduledexecutions in the target namespace (403), before the body is read.
A GET names an execution by id only; its route checks `get` in the
execution's namespace and answers an id the caller may not read 404, like
an unknown one. The reviewed caller is handed to the route in the request's
state.

Only the probes answer without a token, and they say nothing about
executions: `/livez` that the process serves, `/readyz` (and its older name
`/healthz`) whether its cache has listed the executions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from schedexec.api import access
from schedexec.api.access import Gate
from schedexec.api.bodies import NAME
from schedexec.api.errors import ApiError, unreachable
from schedexec.kube import TRANSIENT

PROBES = frozenset({"/livez", "/readyz", "/healthz"})
"""Paths answered without a token."""


class Guard:
    def __init__(
        self, app: ASGIApp, gate: Gate, namespace: str, elsewhere: Callable[[str], Sequence[str]] = lambda _: ()
    ) -> None:
        self.app, self.gate = app, gate
        self.namespace = namespace
        """Where a POST without `?namespace=` creates (the routes' default)."""
        self.elsewhere = elsewhere
        """The other namespaces a POST to a path without `?namespace=` may create in, its body unread (an
        elastic.io request's workspace names one: `elastic.workspace_namespaces`); the caller must be
        allowed to create in one of them or in `namespace`, and the route checks the one it resolves to."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        try:
            caller = await self.gate.caller(Headers(scope=scope).get("authorization"), access.address(scope))
            if scope["method"] == "POST":
                # the route reads the same parameter the same way (the last one given wins)
                query = QueryParams(scope.get("query_string", b""))
                namespace = query.get("namespace", self.namespace)
                elsewhere = () if "namespace" in query else self.elsewhere(scope["path"])
                # a name no namespace can have is nobody's to create in: refused without asking
                possible = len(namespace) <= 63 and re.fullmatch(NAME, namespace) is not None
                if not possible or not await self._may_create(caller, (namespace, *elsewhere)):
                    shown = namespace if possible else repr(namespace[:63])
                    also = " nor in any workspace's namespace" if elsewhere else ""
                    raise ApiError(
                        403, "Forbidden", f"you may not create scheduledexecutions in namespace {shown}{also}"
                    )
        except ApiError as refusal:
            await refusal.response()(scope, receive, send)
            return
        except TRANSIENT as exc:
            await unreachable(exc).response()(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    async def _may_create(self, caller: access.Caller, namespaces: Sequence[str]) -> bool:
        """May `caller` create executions in one of `namespaces`? Asked in order, up to the first yes."""
        for namespace in namespaces:
            if await self.gate.may(caller, access.executions("create", namespace)):
                return True
        return False
