"""The REST API's metrics: requests by route and code, their latency, and the reviews behind them.

`Measured` is the outermost ASGI middleware (in front of the guard, so a
401, 403 or 429 the guard answers is counted too). It labels a request
with its route's *template* (`/executions/{id}`, never the id itself: one
series per route, not per execution), found the way the router finds it
(its OpenAPI paths compiled with Starlette's public `compile_path`), or `unmatched` for any other path,
so no caller can grow the series count with paths of their own. 429s (a
client past its review budget, `limits.Buckets`) are the requests counted
with code 429.

`CountedGate` counts the review caches' lookups and the reviews actually
sent to the API server (a token's TokenReview, an access's
SubjectAccessReview): lookups minus reviews were answered from the caches
(or shared a review under way). docs/observability.md lists each metric.

The API serves its metrics on their own port (SCHEDEXEC_API_METRICS_PORT, off by
default), plain HTTP and unauthenticated like the operator's: they count
requests, never say whose.
"""

from __future__ import annotations

import re
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedexec.api.access import Caller, Gate
from schedexec.metrics import REQUEST_BUCKETS

REQUESTS = Counter(
    "schedexec_api_requests_total",
    "REST API requests answered, by route template, method and status code.",
    ["route", "method", "code"],
)
REQUEST_DURATION = Histogram(
    "schedexec_api_request_duration_seconds",
    "Time from a REST API request's arrival to the end of its answer, by route template and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
)
REVIEW_LOOKUPS = Counter(
    "schedexec_api_review_lookups_total",
    "Token (kind=token) and access (kind=access) checks of requests; those not followed by a review were "
    "answered from the review caches.",
    ["kind"],
)
REVIEWS = Counter(
    "schedexec_api_reviews_total",
    "TokenReviews (kind=token) and SubjectAccessReviews (kind=access) sent to the API server: the caches' misses.",
    ["kind"],
)
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Routes:
    """The route templates of a FastAPI app (its OpenAPI paths and the probes), matched like the router does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def template(self, scope: Scope) -> str:
        """The template of the route `scope` was (or would have been) routed to; UNMATCHED for none."""
        route = getattr(scope.get("route"), "path", None)
        if isinstance(route, str):
            return route
        if self._compiled is None:
            paths = set(self.app.openapi()["paths"]) | {
                path for path in (getattr(route, "path", None) for route in self.app.routes) if isinstance(path, str)
            }
            self._compiled = [(compile_path(path)[0], path) for path in sorted(paths)]
        path = scope.get("path", "")
        return next((template for pattern, template in self._compiled if pattern.match(path)), UNMATCHED)


class Measured:
    """Counts and times every HTTP request of `app` (the FastAPI app whose routes name the templates)."""

    def __init__(self, app: ASGIApp, routed: Any) -> None:
        self.app, self.routes = app, Routes(routed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.monotonic()
        code = 500  # an exception past every handler: uvicorn answers 500
        route, method = self.routes.template(scope), scope["method"]
        method = method if method in METHODS else "other"

        async def measured(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, measured)
        finally:
            REQUESTS.labels(route, method, str(code)).inc()
            REQUEST_DURATION.labels(route, method).observe(time.monotonic() - began)


class CountedGate(Gate):
    """The caller gate, its review caches' lookups and misses counted."""

    async def caller(self, authorization: str | None, address: str = "") -> Caller:
        if not self.insecure:
            REVIEW_LOOKUPS.labels("token").inc()
        return await super().caller(authorization, address)

    async def may(self, caller: Caller, access: dict[str, str]) -> bool:
        if not self.insecure:
            REVIEW_LOOKUPS.labels("access").inc()
        return await super().may(caller, access)

    async def _review_token(self, token: str, digest: str) -> tuple[Caller] | None:
        REVIEWS.labels("token").inc()
        return await super()._review_token(token, digest)

    async def _review_access(self, caller: Caller, access: dict[str, str], key: tuple[str, str]) -> bool:
        REVIEWS.labels("access").inc()
        return await super()._review_access(caller, access, key)
