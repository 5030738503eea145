"""`schedexec api`: the REST API assembled from its routers, and served.

`create_app` only wires: the error handlers, the caller gate, the three
routers, the health probe and the request-size limit. `run` connects to
Kubernetes, starts the execution cache and serves the app with uvicorn.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedexec.api import elastic, errors, generic, polling
from schedexec.api.access import Gate
from schedexec.api.cache import ExecutionCache
from schedexec.api.errors import ApiError
from schedexec.api.kubeclient import Client, KubeClient
from schedexec.api.submit import Submitter
from schedexec.settings import ApiSettings

log = logging.getLogger("schedexec.api")


def create_app(settings: ApiSettings, client: Client, cache: ExecutionCache) -> FastAPI:
    app = FastAPI(
        title="schedexec",
        version="0.1.0",
        description="Asynchronous schedule / poll / result API for scheduled executions "
        "(elastic.io v2 compatible), backed by ScheduledExecution resources.",
    )
    if settings.insecure:
        log.warning("INSECURE MODE: no authentication and no authorization; never use this outside development")
    gate = app.state.gate = Gate(client, settings.insecure)
    errors.install(app)
    submitter = Submitter(gate, client, cache)
    app.include_router(elastic.router(settings, submitter))
    app.include_router(generic.router(settings, submitter))
    app.include_router(polling.router(gate, cache))

    @app.get("/healthz", include_in_schema=False)
    async def health() -> Response:
        ready = cache.ready.is_set()
        return JSONResponse({"ready": ready, "executions": len(cache)}, status_code=200 if ready else 503)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, whether or not they declare a length."""

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
        return ApiError(413, "Payload Too Large", f"the request body exceeds {self.limit} bytes")


def run(settings: ApiSettings) -> None:
    """`schedexec api`: serve until stopped."""
    import uvicorn

    client = KubeClient.from_environment()
    cache = ExecutionCache(client)
    cache.start()
    uvicorn.run(
        create_app(settings, client, cache),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
    )
