"""The answers about an execution: elastic.io's execution-result document and its links.

A schedule (202), a poll (200) and a result (200) all answer the same
document, built here from the execution as Kubernetes stores it; the
execution id in every link is the resource's UID. A result too large for the
status (up to 1 MiB, kept in a ConfigMap) is answered in the same document,
streamed: its JSON text is written as it is, never parsed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

from schedexec import models
from schedexec.api.errors import JSON_API

PENDING = "Pending request, waiting other process"
"""elastic.io's `status` of an execution not finished yet, its only documented value; schedexec's own
state is the `phase` attribute. A finished execution's document has no `status` (elastic.io's has none)."""
DIALECT = "schedexec.io/api-dialect"
"""Label of executions created through elastic.io's endpoints (value ELASTIC_IO): their result is answered
as elastic.io documents it, `{"data": <the method's return value>}` (the runtime's success envelope)."""
ELASTIC_IO = "elastic.io"
CREATED_BY = "schedexec.io/created-by"
"""Label of what the API creates (executions, sealed Secrets): `api`."""
COMPONENT = "schedexec.io/component"
"""Label of an execution the API creates: the component id of the request."""
IDEMPOTENCY = "schedexec.io/idempotency"
"""Annotation of executions created with an Idempotency-Key: HMAC(caller, key):HMAC(that, request) under the
API's signing key (`idempotency.bind`), which nobody else can compute."""


def poll_link(uid: str) -> str:
    return f"/v2/exec/poll/{uid}"


def result_link(uid: str) -> str:
    return f"/v2/exec/result/{uid}"


def finished(body: dict[str, Any]) -> bool:
    phase = (body.get("status") or {}).get("phase")
    return phase is not None and models.Phase(phase).finished


def execution_response(body: dict[str, Any], status_code: int, location: str | None = None) -> JSONResponse:
    """elastic.io's execution-result document."""
    headers = {"Location": location} if location else None
    return JSONResponse(execution_document(body), status_code=status_code, headers=headers, media_type=JSON_API)


CHUNK = 64 * 1024


def result_response(body: dict[str, Any], result: bytes) -> StreamingResponse:
    """200 with the execution-result document of a succeeded execution whose result, `result`, is JSON text
    kept outside its status: the document is written around the text, which is sent as it is."""
    marker = f"schedexec-result-{uuid.uuid4().hex}"
    document = execution_document(body)
    document["data"]["attributes"]["result"] = shaped(body, marker)
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # as JSONResponse
    head, tail = text.encode().split(json.dumps(marker).encode(), 1)

    def chunks() -> Iterator[bytes]:
        yield head
        for start in range(0, len(result), CHUNK):
            yield result[start : start + CHUNK]
        yield tail

    length = str(len(head) + len(result) + len(tail))
    return StreamingResponse(chunks(), status_code=200, media_type=JSON_API, headers={"Content-Length": length})


def execution_document(body: dict[str, Any]) -> dict[str, Any]:
    """The document's content."""
    uid = body["metadata"]["uid"]
    status = body.get("status") or {}
    phase = status.get("phase") or models.Phase.PENDING.value
    attributes: dict[str, Any] = {
        "result": shaped(body, status.get("result")) if phase == models.Phase.SUCCEEDED.value else {},
        **({} if finished(body) else {"status": PENDING}),
        "phase": phase,
        "runs": status.get("runs", 0),
    }
    if status.get("partialResult") is not None:
        attributes["partialResult"] = status["partialResult"]
    if status.get("nextRunAt"):
        attributes["nextRunAt"] = status["nextRunAt"]
    return {
        "data": {"id": uid, "type": "execution-result", "links": {"self": result_link(uid)}, "attributes": attributes},
        "meta": {"namespace": body["metadata"]["namespace"], "name": body["metadata"]["name"]},
    }


def shaped(body: dict[str, Any], result: Any) -> Any:
    """A succeeded execution's result as its dialect answers it: elastic.io's `{"data": result}`, or as is."""
    labels = body.get("metadata", {}).get("labels") or {}
    return {"data": result} if labels.get(DIALECT) == ELASTIC_IO else result
