"""`schedexec api`: the REST API assembled from its routers, and served.

`create_app` only wires: the error handlers, the caller gate and the
guard in front of everything, the three routers, the probes, the
request-size limit, and the lifespan that feeds the execution cache (a
task on uvicorn's event loop, where the routes and the Kubernetes client
run too) and lets go of the client's connections at shutdown. `run` makes
the client from the environment and serves the app with uvicorn, over TLS
(`SCHEDEXEC_API_TLS_*`) or, only when `SCHEDEXEC_API_PLAIN_HTTP=true` says
so, plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import prometheus_client
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedexec import tracing
from schedexec.api import elastic, errors, generic, polling, server
from schedexec.api.cache import ExecutionCache
from schedexec.api.errors import ApiError
from schedexec.api.guard import Guard
from schedexec.api.idempotency import signing_key
from schedexec.api.kubeclient import Client, KubeClient
from schedexec.api.submit import Submitter
from schedexec.api.telemetry import CountedGate, Measured
from schedexec.settings import ApiSettings

log = logging.getLogger("schedexec.api")


def create_app(settings: ApiSettings, client: Client, cache: ExecutionCache) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        following = asyncio.create_task(cache.follow(), name="execution-cache")
        try:
            yield
        finally:
            following.cancel()
            await asyncio.wait([following])
            await client.close()

    app = FastAPI(
        lifespan=lifespan,
        # FastAPI's own request spans (the whole request, the guard included), to schedexec's traces when they
        # are on (tracing.setup); never its logs of exceptions (their messages may quote a request's body)
        telemetry={"tracer_provider": tracing.in_use(), "metrics": False, "logs": False},
        title="schedexec",
        version="0.1.0",
        description="Asynchronous schedule / poll / result API for scheduled executions "
        "(elastic.io v2 compatible), backed by ScheduledExecution resources.",
    )
    if settings.insecure:
        log.warning("INSECURE MODE: no authentication and no authorization; never use this outside development")
    gate = app.state.gate = CountedGate(client, settings)
    errors.install(app)
    submitter = Submitter(gate, client, cache, signing_key(settings.idempotency_key_file))
    app.include_router(elastic.router(settings, submitter))
    app.include_router(generic.router(settings, submitter))
    app.include_router(polling.router(gate, cache, client))

    # The probes answer without a token, so they say nothing about executions (not even how many).
    @app.get("/livez", include_in_schema=False)
    async def live() -> Response:
        return JSONResponse({"live": True})

    @app.get("/readyz", include_in_schema=False)
    @app.get("/healthz", include_in_schema=False)
    async def ready() -> Response:
        ready = cache.ready.is_set()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # outermost: before the body is read (and so before an elastic.io request's workspace is known)
    elsewhere = functools.partial(elastic.workspace_namespaces, settings)
    app.add_middleware(Guard, gate=gate, namespace=settings.namespace, elsewhere=elsewhere)
    app.add_middleware(Measured, routed=app)  # outermost of all: the guard's refusals are counted too
    return app


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, whether or not they declare a length: a declared
    length over the limit before any of the body is read, an undeclared one as soon as the bytes received
    pass it (what was received is never more than the limit and the chunk that passed it)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large().response()(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._too_large()
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> ApiError:
        # closed after the answer: the rest of the body is not read (nor received and thrown away)
        detail = f"the request body exceeds {self.limit} bytes"
        return ApiError(413, "Payload Too Large", detail, headers={"Connection": "close"}, maxBytes=self.limit)


class NoTransport(SystemExit):
    """Neither a certificate nor the explicit plain-HTTP flag: the API refuses to start."""


def transport(settings: ApiSettings) -> tuple[str, str] | None:
    """The certificate and key files to serve TLS with; None for plain HTTP, which only
    SCHEDEXEC_API_PLAIN_HTTP=true allows."""
    if settings.tls_cert_file and settings.tls_key_file:
        return str(settings.tls_cert_file), str(settings.tls_key_file)
    if settings.tls_cert_file or settings.tls_key_file:
        raise NoTransport("set both SCHEDEXEC_API_TLS_CERT_FILE and SCHEDEXEC_API_TLS_KEY_FILE, or neither")
    if not settings.plain_http:
        raise NoTransport(
            "the REST API serves TLS: set SCHEDEXEC_API_TLS_CERT_FILE and SCHEDEXEC_API_TLS_KEY_FILE "
            "(or, for local development only, SCHEDEXEC_API_PLAIN_HTTP=true)"
        )
    log.warning(
        "PLAIN HTTP (SCHEDEXEC_API_PLAIN_HTTP=true): bearer tokens cross the network in clear text; "
        "never use this outside development"
    )
    return None


def run(settings: ApiSettings) -> None:
    """`schedexec api`: serve until stopped, on the listener `server` sets up."""
    cert, key = transport(settings) or (None, None)
    client = KubeClient.from_environment()
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port)
    tracing.setup("schedexec-api")
    server.serve(create_app(settings, client, ExecutionCache(client)), settings, cert, key)
