"""The answers about an execution: elastic.io's execution-result document and its links.

A schedule (202), a poll (200) and a result (200) all answer the same
document, built here from the execution as Kubernetes stores it; the
execution id in every link is the resource's UID.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from schedexec import models
from schedexec.api.errors import JSON_API


def poll_link(uid: str) -> str:
    return f"/v2/exec/poll/{uid}"


def result_link(uid: str) -> str:
    return f"/v2/exec/result/{uid}"


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
        "data": {"id": uid, "type": "execution-result", "links": {"self": result_link(uid)}, "attributes": attributes},
        "meta": {"namespace": body["metadata"]["namespace"], "name": body["metadata"]["name"]},
    }
    headers = {"Location": location} if location else None
    return JSONResponse(document, status_code=status_code, headers=headers, media_type=JSON_API)
