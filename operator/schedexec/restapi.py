"""The REST sidecar: elastic.io's asynchronous schedule / poll / result API on ScheduledExecutions.

It stores nothing of its own. A POST creates a ScheduledExecution and answers
`202 Accepted` with `Location: /v2/exec/poll/{id}`; a poll answers `200`
while the execution runs and `303 See Other` to `/v2/exec/result/{id}` once
it finished; the result answers `200` with the result, `409` while not
finished, `400` with reason, message and partial result when it failed,
timed out or was cancelled. The execution id is the resource's UID: opaque,
stable and URL-safe.

Every request is authenticated with a bearer token (TokenReview) and
authorized with a SubjectAccessReview on `scheduledexecutions` in the target
namespace (`create` to schedule, `get` to poll and read). An id in a
namespace the caller may not read answers 404, exactly like an unknown id,
so ids reveal nothing. Polls are served from a watch-fed cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedexec import models, runs
from schedexec.apicache import ExecutionCache
from schedexec.kube import TRANSIENT, ApiClient
from schedexec.settings import ApiSettings, ComponentImage
from schedexec_runner import contract

log = logging.getLogger("schedexec.api")

JSON_API = "application/vnd.api+json"
IDEMPOTENCY = "schedexec.io/idempotency"
"""Annotation of executions created with an Idempotency-Key: sha256(caller, key):sha256(request)."""
REVIEW_TTL_SECONDS = 30.0
NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ApiError(Exception):
    """An answer with a JSON:API error body."""

    def __init__(self, status: int, title: str, detail: str, pointer: str | None = None, **meta: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.pointer, self.meta = status, title, detail, pointer, meta

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"status": str(self.status), "title": self.title, "detail": self.detail}
        if self.pointer:
            error["source"] = {"pointer": self.pointer}
        if self.meta:
            error["meta"] = self.meta
        return JSONResponse({"errors": [error]}, status_code=self.status, media_type=JSON_API)


# --- request bodies (JSON:API) -------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceIdentifier(Body):
    id: str = Field(min_length=1, max_length=253, pattern=NAME, description="Name of the credentials Secret.")
    type: str = Field("credential", max_length=64)


class CredentialRelationship(Body):
    data: ResourceIdentifier


class Relationships(Body):
    credential: CredentialRelationship | None = None


class ComponentAttributes(Body):
    fields: dict[str, Any] = Field(default_factory=dict, description="The configuration (elastic.io cfg).")
    module: str | None = Field(None, min_length=1, max_length=253, description="The action or trigger.")
    method: str | None = Field(None, min_length=1, max_length=253, description="The select-model function.")


class ComponentData(Body):
    type: str = Field(max_length=64)
    attributes: ComponentAttributes = Field(default_factory=ComponentAttributes)
    relationships: Relationships = Field(default_factory=Relationships)


class ComponentRequest(Body):
    data: ComponentData


class ExecutionAttributes(Body):
    component: str = Field(min_length=1, max_length=63, description="A component name from the configuration.")
    revision: str = Field("latest", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    method: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*$")
    module: str | None = Field(None, min_length=1, max_length=253)
    function: str | None = Field(None, min_length=1, max_length=253)
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: int | None = Field(None, alias="timeoutSeconds", ge=1, le=7 * 24 * 3600)
    run_timeout_seconds: int | None = Field(None, alias="runTimeoutSeconds", ge=1, le=24 * 3600)
    credential: str | None = Field(None, min_length=1, max_length=253, pattern=NAME)


class ExecutionData(Body):
    type: Literal["execution"]
    attributes: ExecutionAttributes


class ExecutionRequest(Body):
    data: ExecutionData


# --- authentication and authorization ------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user: str
    identity: str
    """Stable JSON of the reviewed user (name, uid, groups, extra): the cache key of its reviews."""

    def info(self) -> dict[str, Any]:
        return json.loads(self.identity)  # type: ignore[no-any-return]


CACHE_LIMIT = 10_000
"""Most remembered review answers; past it the cache starts over, so garbage tokens cannot grow it."""


def executions(verb: str, namespace: str) -> dict[str, str]:
    return {"group": models.GROUP, "resource": models.PLURAL, "verb": verb, "namespace": namespace}


class Gate:
    """TokenReview + SubjectAccessReview, with short-lived, bounded caches of both answers."""

    def __init__(self, client: ApiClient, insecure: bool) -> None:
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
    gate: Gate = request.app.state.gate
    return await gate.caller(authorization)


CallerDep = Annotated[Caller, Depends(authenticated)]
Namespace = Annotated[str, Query(min_length=1, max_length=63, pattern=NAME, description="Target namespace.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retries with the same key return the same execution.",
    ),
]
ExecutionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Component = Annotated[str, Path(min_length=1, max_length=63, pattern=NAME)]
Revision = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]


# --- the request-size limit ---------------------------------------------------------------------


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
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, "Payload Too Large", f"the request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(413, "Payload Too Large", f"the request body exceeds {self.limit} bytes")
        await error.response()(scope, receive, send)


# --- the application ----------------------------------------------------------------------------


def create_app(settings: ApiSettings, client: ApiClient, cache: ExecutionCache) -> FastAPI:
    app = FastAPI(
        title="schedexec",
        version="0.1.0",
        description="Asynchronous schedule / poll / result API for scheduled executions "
        "(elastic.io v2 compatible), backed by ScheduledExecution resources.",
    )
    gate = Gate(client, settings.insecure)
    if settings.insecure:
        log.warning("INSECURE MODE: no authentication and no authorization; never use this outside development")

    app.state.gate = gate

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return ApiError(exc.status_code, str(exc.detail), str(exc.detail)).response()

    for problem in TRANSIENT:

        @app.exception_handler(problem)
        async def upstream(request: Request, exc: Exception) -> Response:
            log.warning("Kubernetes API call failed: %s", exc)
            return ApiError(503, "Service Unavailable", "the Kubernetes API is not reachable; retry later").response()

    async def schedule(
        caller: Caller, namespace: str, spec: dict[str, Any], component: str, key: str | None
    ) -> Response:
        if not await gate.may(caller, executions("create", namespace)):
            raise ApiError(403, "Forbidden", f"you may not create scheduledexecutions in namespace {namespace}")
        secret = (spec.get("credentialsSecretRef") or {}).get("name")
        if secret and not await gate.may(
            caller, {"resource": "secrets", "verb": "get", "namespace": namespace, "name": secret}
        ):
            # the run would read the Secret on the caller's behalf: only for callers who may read it themselves
            raise ApiError(403, "Forbidden", f"you may not read the credentials Secret {secret} in {namespace}")
        metadata: dict[str, Any] = {"labels": {"schedexec.io/created-by": "api", "schedexec.io/component": component}}
        request = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        if key is None:
            metadata["generateName"] = f"api-{component}-"[:50]
        else:
            owner = hashlib.sha256(f"{caller.identity}\n{key}".encode()).hexdigest()
            metadata["name"] = f"api-{owner[:24]}"
            metadata["annotations"] = {IDEMPOTENCY: f"{owner}:{request}"}
        body = {"apiVersion": models.API_VERSION, "kind": models.KIND, "metadata": metadata, "spec": spec}
        created = await asyncio.to_thread(client.create_execution, namespace, body)
        if created is None:  # a retry with the same Idempotency-Key: the same execution, if it is that one
            created = cache.by_name(namespace, metadata["name"]) or await asyncio.to_thread(
                client.get_execution, namespace, metadata["name"]
            )
            stored = ((created or {}).get("metadata", {}).get("annotations") or {}).get(IDEMPOTENCY, "")
            if created is None or stored != metadata["annotations"][IDEMPOTENCY]:
                raise ApiError(409, "Conflict", "this Idempotency-Key was used for another request; use a new key")
        else:
            cache.remember(created)
        return execution_response(created, 202, location=f"/v2/exec/poll/{created['metadata']['uid']}")

    def component_spec(name: str, revision: str) -> dict[str, Any]:
        image: ComponentImage | None = settings.components.get(name)
        if image is None:
            known = ", ".join(sorted(settings.components)) or "none"
            raise ApiError(404, "Not Found", f"unknown component {name!r}; configured: {known}")
        tag = image.default_revision if revision == "latest" else revision
        return {"image": image.image.format(revision=tag)}

    def elastic_spec(component: str, revision: str, request: ComponentRequest, method: str) -> dict[str, Any]:
        attributes = request.data.attributes
        spec: dict[str, Any] = {
            "component": component_spec(component, revision),
            "method": method,
            "args": attributes.fields,
            "timeoutSeconds": settings.default_timeout_seconds,
            "runTimeoutSeconds": min(settings.default_run_timeout_seconds, settings.default_timeout_seconds),
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        }
        if attributes.module:
            spec["module"] = attributes.module
        if attributes.method:
            spec["function"] = attributes.method
        credential = request.data.relationships.credential
        if credential is not None:
            spec["credentialsSecretRef"] = {"name": credential.data.id}
        return spec

    def require(value: str | None, pointer: str, what: str) -> None:
        if not value:
            raise ApiError(422, "Unprocessable Entity", f"{what} is required", pointer=pointer)

    def deliverable(args: dict[str, Any], pointer: str) -> None:
        """Refuse args a run could not receive (the operator would fail the execution with ArgsTooLarge)."""
        size = runs.args_size(args)
        if size > contract.MAX_ARGS_BYTES:
            raise ApiError(
                422,
                "Unprocessable Entity",
                f"the args are {size} bytes as compact JSON; the limit is {contract.MAX_ARGS_BYTES} bytes "
                f"({contract.MAX_ARGS_BYTES // 1024} KiB): args reach the run in a pod annotation, "
                "and Kubernetes limits a pod's annotations to 256 KiB",
                pointer=pointer,
            )

    accepted: dict[int | str, dict[str, Any]] = {202: {"description": "Scheduled; poll the Location."}}

    def elastic_endpoint(method: str, required: tuple[str, ...]) -> Callable[..., Awaitable[Response]]:
        """One elastic.io v2 scheduling endpoint: the method it runs and the attributes it needs."""

        async def endpoint(
            component: Component,
            revision: Revision,
            request: ComponentRequest,
            caller: CallerDep,
            namespace: Namespace = settings.namespace,
            idempotency_key: IdempotencyKey = None,
        ) -> Response:
            for name in required:
                require(getattr(request.data.attributes, name), f"/data/attributes/{name}", f"data.attributes.{name}")
            deliverable(request.data.attributes.fields, "/data/attributes/fields")
            spec = elastic_spec(component, revision, request, method)
            return await schedule(caller, namespace, spec, component, idempotency_key)

        return endpoint

    for path, method, required, summary in (
        (
            "verify-credential",
            models.VERIFY_CREDENTIALS,
            (),
            "Schedule verifyCredentials for a configuration (and its credentials Secret).",
        ),
        (
            "dynamic-metadata",
            models.GET_META_MODEL,
            ("module",),
            "Schedule getMetaModel for one module (`data.attributes.module`).",
        ),
        (
            "select-model",
            models.SELECT_MODEL,
            ("module", "method"),
            "Schedule selectModel: `data.attributes.method` names the model function.",
        ),
    ):
        app.post(
            f"/v2/components/{{component}}/versions/{{revision}}/{path}",
            status_code=202,
            responses=accepted,
            tags=["elastic.io v2"],
            description=summary,
            operation_id=path.replace("-", "_"),
        )(elastic_endpoint(method, required))

    @app.post("/v2/executions", status_code=202, responses=accepted, tags=["generic"])
    async def execute(
        request: ExecutionRequest,
        caller: CallerDep,
        namespace: Namespace = settings.namespace,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Schedule any method or polling command, with args and a timeout (XSOAR-style)."""
        attributes = request.data.attributes
        if attributes.method == models.GET_META_MODEL:
            require(attributes.module, "/data/attributes/module", "data.attributes.module")
        if attributes.method == models.SELECT_MODEL:
            require(attributes.function, "/data/attributes/function", "data.attributes.function")
        timeout = attributes.timeout_seconds or settings.default_timeout_seconds
        run_timeout = attributes.run_timeout_seconds or min(settings.default_run_timeout_seconds, timeout)
        if run_timeout > timeout:
            raise ApiError(
                422,
                "Unprocessable Entity",
                "runTimeoutSeconds must not exceed timeoutSeconds",
                pointer="/data/attributes/runTimeoutSeconds",
            )
        deliverable(attributes.args, "/data/attributes/args")
        spec: dict[str, Any] = {
            "component": component_spec(attributes.component, attributes.revision),
            "method": attributes.method,
            "args": attributes.args,
            "timeoutSeconds": timeout,
            "runTimeoutSeconds": run_timeout,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        }
        for field in ("module", "function"):
            if getattr(attributes, field):
                spec[field] = getattr(attributes, field)
        if attributes.credential:
            spec["credentialsSecretRef"] = {"name": attributes.credential}
        return await schedule(caller, namespace, spec, attributes.component, idempotency_key)

    async def readable(caller: Caller, execution_id: str) -> dict[str, Any]:
        body = cache.by_uid(execution_id)
        if body is None or not await gate.may(caller, executions("get", body["metadata"]["namespace"])):
            raise ApiError(404, "Not Found", f"no execution {execution_id} (unknown, expired or not yours)")
        return body

    @app.get(
        "/v2/exec/poll/{execution_id}",
        tags=["elastic.io v2"],
        responses={303: {"description": "Finished: see the result."}, 404: {"description": "Unknown."}},
    )
    async def poll(execution_id: ExecutionId, caller: CallerDep) -> Response:
        """200 while the execution runs; 303 to its result once it finished."""
        body = await readable(caller, execution_id)
        if finished(body):
            return Response(status_code=303, headers={"Location": f"/v2/exec/result/{execution_id}"})
        return execution_response(body, 200)

    @app.get(
        "/v2/exec/result/{execution_id}",
        tags=["elastic.io v2"],
        responses={
            400: {"description": "Failed, timed out or cancelled."},
            404: {"description": "Unknown."},
            409: {"description": "Not finished yet."},
        },
    )
    async def result(execution_id: ExecutionId, caller: CallerDep) -> Response:
        """The result (200), or why there is none (400 failed, 409 not finished)."""
        body = await readable(caller, execution_id)
        status = body.get("status") or {}
        if not finished(body):
            raise ApiError(
                409,
                "Conflict",
                "the execution has not finished yet; keep polling",
                phase=status.get("phase") or models.Phase.PENDING.value,
            )
        if status.get("phase") != models.Phase.SUCCEEDED.value:
            error = status.get("error") or {}
            raise ApiError(
                400,
                "Rejected.",
                error.get("message", ""),
                reason=error.get("reason", ""),
                phase=status.get("phase"),
                partialResult=status.get("partialResult"),
            )
        return execution_response(body, 200)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> Response:
        ready = cache.ready.is_set()
        return JSONResponse({"ready": ready, "executions": len(cache)}, status_code=200 if ready else 503)

    return app


def finished(body: dict[str, Any]) -> bool:
    phase = (body.get("status") or {}).get("phase")
    return phase is not None and models.Phase(phase).finished


def execution_response(body: dict[str, Any], status_code: int, location: str | None = None) -> JSONResponse:
    """elastic.io's execution-result document."""
    uid = body["metadata"]["uid"]
    status = body.get("status") or {}
    attributes: dict[str, Any] = {
        "status": status.get("phase") or models.Phase.PENDING.value,
        "result": status.get("result") if status.get("phase") == models.Phase.SUCCEEDED.value else {},
        "runs": status.get("runs", 0),
    }
    if status.get("partialResult") is not None:
        attributes["partialResult"] = status["partialResult"]
    if status.get("nextRunAt"):
        attributes["nextRunAt"] = status["nextRunAt"]
    document = {
        "data": {
            "id": uid,
            "type": "execution-result",
            "links": {"self": f"/v2/exec/result/{uid}"},
            "attributes": attributes,
        },
        "meta": {"namespace": body["metadata"]["namespace"], "name": body["metadata"]["name"]},
    }
    headers = {"Location": location} if location else None
    return JSONResponse(document, status_code=status_code, headers=headers, media_type=JSON_API)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """422 with one JSON:API error per problem, pointing at the field; 400 for unparsable JSON."""
    errors = []
    status = 422
    for problem in exc.errors():
        location = [str(part) for part in problem.get("loc", ())]
        if problem.get("type") == "json_invalid":
            status = 400
        where, path = (location[0], location[1:]) if location else ("body", [])
        error: dict[str, Any] = {"status": str(status), "title": "Invalid request", "detail": str(problem.get("msg"))}
        if where == "body":
            error["source"] = {"pointer": "/" + "/".join(path)}
        else:
            error["source"] = {"parameter": path[0] if path else where}
        errors.append(error)
    for error in errors:
        error["status"] = str(status)
    return JSONResponse({"errors": errors}, status_code=status, media_type=JSON_API)


def run(settings: ApiSettings) -> None:
    """`schedexec api`: serve until stopped."""
    import uvicorn

    client = ApiClient.from_environment()
    cache = ExecutionCache(client)
    cache.start()
    app: Callable[[Scope, Receive, Send], Awaitable[None]] = BodyLimit(
        create_app(settings, client, cache), settings.max_body_bytes
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log)
