"""The generic scheduling endpoint, `/v2/executions`: any method or polling command (XSOAR-style).

Unlike elastic.io's endpoints it names the component in the body and may
set args, timeouts and a credentials Secret; the same poll and result
endpoints answer for it.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from schedexec.api import specs
from schedexec.api.access import CallerDep
from schedexec.api.bodies import ExecutionRequest
from schedexec.api.elastic import ACCEPTED
from schedexec.api.jsonbody import BoundedRoute
from schedexec.api.params import IdempotencyKey, Namespace
from schedexec.api.submit import Submitter
from schedexec.settings import ApiSettings


def router(settings: ApiSettings, submitter: Submitter) -> APIRouter:
    """The endpoint; requests without `?namespace=` create in `settings.namespace`."""
    routes = APIRouter(route_class=BoundedRoute)

    @routes.post("/v2/executions", status_code=202, responses=ACCEPTED, tags=["generic"])
    async def execute(
        request: ExecutionRequest,
        caller: CallerDep,
        namespace: Namespace = settings.namespace,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Schedule any method or polling command, with args and a timeout (XSOAR-style)."""
        attributes = request.data.attributes
        spec = specs.execution_spec(settings, attributes)
        return await submitter.submit(caller, namespace, spec, attributes.component, idempotency_key)

    return routes
