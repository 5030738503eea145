"""elastic.io's v2 component endpoints: verify-credential, dynamic-metadata, select-model.

Each schedules one elastic.io method of a component at a revision; they
differ only in the method and in the attributes the request must carry, so
one endpoint serves all three, described by the table `METHODS`.

elastic.io scopes every request to a workspace (`relationships.workspace`,
required there); here a workspace is a namespace. `target_namespace`
decides where a request creates: the namespace SCHEDEXEC_API_WORKSPACES maps
its workspace to, else `?namespace=`, else SCHEDEXEC_API_NAMESPACE. The
guard runs before the body (and so the workspace) is known:
`workspace_namespaces` tells it every other namespace a request to a path
could create in, and it refuses a caller allowed to create in none of them;
`submit` then checks the one the request resolved to. So an unknown
workspace (404) is only ever answered to a caller who passed both reviews
of the guard. `confidential` decides which requests' `fields` are kept out
of the execution's args. docs/elasticio-compat.md compares these endpoints with
elastic.io's documentation field by field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from schedexec import models
from schedexec.api import specs
from schedexec.api.access import CallerDep
from schedexec.api.bodies import ComponentRequest
from schedexec.api.documents import DIALECT, ELASTIC_IO
from schedexec.api.errors import ApiError, unprocessable
from schedexec.api.jsonbody import BoundedRoute
from schedexec.api.params import Component, IdempotencyKey, RequestedNamespace, Revision
from schedexec.api.submit import Submitter
from schedexec.settings import ApiSettings

ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"description": "Scheduled; poll the Location."}}
WORKSPACE_ID = "/data/relationships/workspace/data/id"
CREDENTIAL_ID = "/data/relationships/credential/data/id"


@dataclass(frozen=True)
class ElasticMethod:
    path: str
    """The last segment of the endpoint's URL."""
    method: str
    required: tuple[str, ...]
    """The request attributes the method needs."""
    summary: str


METHODS = (
    ElasticMethod(
        "verify-credential",
        models.VERIFY_CREDENTIALS,
        (),
        "Schedule verifyCredentials for a configuration (and its credentials Secret).",
    ),
    ElasticMethod(
        "dynamic-metadata",
        models.GET_META_MODEL,
        ("module",),
        "Schedule getMetaModel for one module (`data.attributes.module`).",
    ),
    ElasticMethod(
        "select-model",
        models.SELECT_MODEL,
        ("module", "method"),
        "Schedule selectModel: `data.attributes.method` names the model function.",
    ),
)
PREFIX = "/v2/components/"


def router(settings: ApiSettings, submitter: Submitter) -> APIRouter:
    """The three endpoints; where each request creates, `target_namespace` decides."""
    routes = APIRouter(route_class=BoundedRoute)
    for method in METHODS:
        routes.add_api_route(
            f"{PREFIX}{{component}}/versions/{{revision}}/{method.path}",
            _endpoint(settings, submitter, method),
            methods=["POST"],
            status_code=202,
            responses={**ACCEPTED, 404: {"description": "Unknown component or workspace."}},
            tags=["elastic.io v2"],
            description=method.summary,
            operation_id=method.path.replace("-", "_"),
        )
    return routes


def workspace_of(request: ComponentRequest) -> str | None:
    """The id of the request's `relationships.workspace`, if it names one."""
    workspace = request.data.relationships.workspace
    return None if workspace is None or workspace.data is None else workspace.data.id


def target_namespace(settings: ApiSettings, workspace: str | None, requested: str | None) -> str:
    """Where a request for `workspace` with `?namespace=requested` (None: not given) creates.

    The workspace's namespace if SCHEDEXEC_API_WORKSPACES maps it; a workspace the (non-empty) map does
    not know is 404, one given with a `?namespace=` that says otherwise 422. Without a workspace, or with
    no workspaces configured (the workspace is then accepted and ignored): `?namespace=`, else the
    API's namespace."""
    if workspace is None or not settings.workspaces:
        return requested or settings.namespace
    namespace = settings.workspaces.get(workspace)
    if namespace is None:  # the configured workspaces are not listed: they are the operator's to tell
        raise ApiError(404, "Not Found", f"unknown workspace {workspace!r}", pointer=WORKSPACE_ID)
    if requested is not None and requested != namespace:
        raise unprocessable(
            f"workspace {workspace!r} is not in namespace {requested}: leave out ?namespace= "
            "(the workspace chooses the namespace) or name the workspace's own",
            WORKSPACE_ID,
        )
    return namespace


def confidential(method: ElasticMethod, request: ComponentRequest) -> bool:
    """Whether the request's `fields` are kept out of the execution's args (in a Secret, `sealing.seal`).

    elastic.io's `fields` are the component's cfg, and its credentials are part of it. A request that names a
    credentials Secret (`relationships.credential`, the documented form on all three endpoints) has its
    credentials there: the Secret's keys are the credentials and the fields the rest of the cfg, in the args
    as before (put no secret in them). A request that names none sends its credentials in the fields
    (verify-credential's usual form): they are sealed in a Secret of their own."""
    if not request.data.attributes.fields:
        return False
    credential = request.data.relationships.credential
    named = credential is not None and credential.data is not None
    return not named


def workspace_namespaces(settings: ApiSettings, path: str) -> tuple[str, ...]:
    """The namespaces other than the API's own that a POST to `path` without `?namespace=` may create in,
    known before its body is read: for an elastic.io endpoint, every one a workspace maps to."""
    segments = path.removeprefix(PREFIX).split("/")
    elastic = path.startswith(PREFIX) and len(segments) == 4 and segments[1] == "versions"
    if not elastic or segments[3] not in {m.path for m in METHODS}:
        return ()
    return tuple(sorted(set(settings.workspaces.values()) - {settings.namespace}))


def _endpoint(settings: ApiSettings, submitter: Submitter, method: ElasticMethod) -> Callable[..., Awaitable[Response]]:
    async def endpoint(
        component: Component,
        revision: Revision,
        request: ComponentRequest,
        caller: CallerDep,
        namespace: RequestedNamespace = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        target = target_namespace(settings, workspace_of(request), namespace)
        spec = specs.elastic_spec(settings, component, revision, request, method.method, method.required)
        labels = {DIALECT: ELASTIC_IO}
        return await submitter.submit(
            caller, target, spec, component, idempotency_key, labels=labels, confidential=confidential(method, request)
        )

    return endpoint
