"""JSON:API error answers: every refusal the REST API gives has the same shape.

`ApiError` is raised anywhere (a route, a spec builder, the body limit) and
answered by the handlers `install` registers; FastAPI's own validation
errors and HTTP errors, and an unreachable Kubernetes API, are answered in
the same `{"errors": [...]}` document.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from schedexec.kube import TRANSIENT

log = logging.getLogger("schedexec.api")

JSON_API = "application/vnd.api+json"


class ApiError(Exception):
    """An answer with a JSON:API error body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        pointer: str | None = None,
        headers: dict[str, str] | None = None,
        **meta: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.pointer, self.meta = status, title, detail, pointer, meta
        self.headers = headers

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"status": str(self.status), "title": self.title, "detail": self.detail}
        if self.pointer:
            error["source"] = {"pointer": self.pointer}
        if self.meta:
            error["meta"] = self.meta
        return JSONResponse({"errors": [error]}, status_code=self.status, headers=self.headers, media_type=JSON_API)


def unprocessable(detail: str, pointer: str | None = None) -> ApiError:
    """422: the request is well-formed but asks for something that cannot be scheduled."""
    return ApiError(422, "Unprocessable Entity", detail, pointer=pointer)


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


async def _api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    return validation_response(exc)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if isinstance(exc.__cause__, ApiError):  # raised while FastAPI read the body (the body limit): answer it
        return exc.__cause__.response()
    return ApiError(exc.status_code, str(exc.detail), str(exc.detail)).response()


def unreachable(exc: Exception) -> ApiError:
    """503 for a Kubernetes API call that failed in passing (TRANSIENT); logged, its details not answered."""
    log.warning("Kubernetes API call failed: %s", exc)
    return ApiError(503, "Service Unavailable", "the Kubernetes API is not reachable; retry later")


async def _upstream(request: Request, exc: Exception) -> Response:
    return unreachable(exc).response()


def install(app: FastAPI) -> None:
    """Answer every error `app` can raise with a JSON:API error document."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(StarletteHTTPException)(_http_error)
    for problem in TRANSIENT:
        app.exception_handler(problem)(_upstream)
