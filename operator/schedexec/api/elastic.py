"""elastic.io's v2 component endpoints: verify-credential, dynamic-metadata, select-model.

Each schedules one elastic.io method of a component at a revision; they
differ only in the method and in the attributes the request must carry, so
one endpoint serves all three, described by the table `METHODS`.
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
from schedexec.api.params import Component, IdempotencyKey, Namespace, Revision
from schedexec.api.submit import Submitter
from schedexec.settings import ApiSettings

ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"description": "Scheduled; poll the Location."}}


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


def router(settings: ApiSettings, submitter: Submitter) -> APIRouter:
    """The three endpoints; requests without `?namespace=` create in `settings.namespace`."""
    routes = APIRouter()
    for method in METHODS:
        routes.add_api_route(
            f"/v2/components/{{component}}/versions/{{revision}}/{method.path}",
            _endpoint(settings, submitter, method),
            methods=["POST"],
            status_code=202,
            responses=ACCEPTED,
            tags=["elastic.io v2"],
            description=method.summary,
            operation_id=method.path.replace("-", "_"),
        )
    return routes


def _endpoint(settings: ApiSettings, submitter: Submitter, method: ElasticMethod) -> Callable[..., Awaitable[Response]]:
    async def endpoint(
        component: Component,
        revision: Revision,
        request: ComponentRequest,
        caller: CallerDep,
        namespace: Namespace = settings.namespace,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        spec = specs.elastic_spec(settings, component, revision, request, method.method, method.required)
        return await submitter.submit(caller, namespace, spec, component, idempotency_key)

    return endpoint
