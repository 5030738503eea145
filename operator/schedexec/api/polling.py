"""Poll and result: what became of an execution, by its id.

Both read the watch-fed cache, never the API server, except for a result
kept in a ConfigMap (`results`). An id the caller may not read (no `get` on
executions in its namespace) answers 404, exactly like an unknown or
expired one, so ids reveal nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from schedexec import models
from schedexec.api import access, results
from schedexec.api.access import Caller, CallerDep, Gate
from schedexec.api.cache import ExecutionCache
from schedexec.api.documents import execution_response, finished, result_link, result_response
from schedexec.api.errors import JSON_API, ApiError
from schedexec.api.kubeclient import Client
from schedexec.api.params import ExecutionId


def router(gate: Gate, cache: ExecutionCache, client: Client) -> APIRouter:
    routes = APIRouter(tags=["elastic.io v2"])

    async def readable(caller: Caller, execution_id: str) -> dict[str, Any]:
        body = cache.by_uid(execution_id)
        if body is None or not await gate.may(caller, access.executions("get", body["metadata"]["namespace"])):
            raise ApiError(404, "Not Found", f"no execution {execution_id} (unknown, expired or not yours)")
        return body

    @routes.get(
        "/v2/exec/poll/{execution_id}",
        responses={303: {"description": "Finished: see the result."}, 404: {"description": "Unknown."}},
    )
    async def poll(execution_id: ExecutionId, caller: CallerDep) -> Response:
        """200 while the execution runs; 303 to its result once it finished."""
        body = await readable(caller, execution_id)
        if finished(body):
            # elastic.io's 303 carries an empty document
            headers = {"Location": result_link(execution_id)}
            return JSONResponse({"data": {}, "meta": {}}, status_code=303, headers=headers, media_type=JSON_API)
        return execution_response(body, 200)

    @routes.get(
        "/v2/exec/result/{execution_id}",
        responses={
            400: {"description": "Failed, timed out or cancelled."},
            404: {"description": "Unknown."},
            409: {"description": "Not finished yet."},
            502: {"description": "The result kept outside the status does not match its record."},
        },
    )
    async def result(execution_id: ExecutionId, caller: CallerDep) -> Response:
        """The result (200), or why there is none (400 failed, 409 not finished)."""
        body = await readable(caller, execution_id)
        answer = outcome(body)
        ref = results.reference(body)
        if ref is None:
            return answer
        return result_response(body, await results.kept_result(client, body, ref))

    return routes


def outcome(body: dict[str, Any]) -> Response:
    """The result document of a finished execution; 409 while it runs, 400 with the reason if it failed."""
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
