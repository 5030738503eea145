"""A request's JSON body, read within bounds before any model sees it.

FastAPI parses a body with the json module and pydantic validates the result; neither is safe with what a
client can send within the body limit. Nested a few hundred levels deep, args passed validation and then
broke pydantic's serialiser (500); a few thousand deep, the json module raised RecursionError (400 with
no word of why); a lone surrogate escape ("\\ud800") is valid JSON but no valid Unicode, and broke the first
encoding to UTF-8 (500). So every route that takes a JSON body reads it through `BoundedRoute`: the body
is decoded with `bounds.loads` (any depth the API server would take, no RecursionError) and each value the
request gives (`/data/attributes/args`, `/data/relationships/credential`: a member three levels in) is
checked with `bounds.problem`, the same limits the operator applies to spec.args. A value past them is
answered 422 naming it, in the request's words, and the limit; what reaches the models nests at most
`ENVELOPE + bounds.MAX_JSON_DEPTH` levels and is valid Unicode throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from schedexec.api.errors import ApiError, unprocessable
from schedexec_runner import bounds

ENVELOPE = 3
"""How deep in a request body its values sit (`data` → `attributes` → `args`): each member this deep is
one value, bounded by itself; the members above it are the JSON:API document's frame."""


def refusal(document: Any) -> ApiError | None:
    """422 for the first value of `document` (a decoded request body) that nests deeper than
    bounds.MAX_JSON_DEPTH or is not valid Unicode, pointed at; None if there is none. Iterative."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if len(path) == ENVELOPE or not isinstance(value, dict | list):
            reason = bounds.problem(value, name(path))
            if reason is not None:
                return unprocessable(reason, pointer(path))
            continue
        members = value.items() if isinstance(value, dict) else enumerate(value)
        for key, member in members:
            reason = bounds.problem(key, "") if isinstance(key, str) else None
            if reason is not None:  # the key cannot be named: the value that holds it is
                detail = f"{name(path)} holds a key that is not valid Unicode (a lone surrogate such as \\ud800)"
                return unprocessable(detail, pointer(path))
            stack.append((member, (*path, str(key))))
    return None


def name(path: tuple[str, ...]) -> str:
    """A value of a request body as the API's messages name it: `data.attributes.args`."""
    return ".".join(path) if path else "the request body"


def pointer(path: tuple[str, ...]) -> str:
    """The JSON pointer (RFC 6901) to a value of a request body."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def decoded(body: bytes) -> Any:
    """The JSON `body`, or 422 for one the API will not take: deeper than the API server itself would
    take, or holding a value out of bounds. Not JSON: the json module's ValueError (FastAPI's 400)."""
    try:
        document = bounds.loads(body)
    except bounds.BoundsError:
        raise unprocessable(
            f"the request body nests deeper than {bounds.API_SERVER_MAX_DEPTH} levels of objects and arrays; "
            f"a value in it may nest {bounds.MAX_JSON_DEPTH}"
        ) from None
    refused = refusal(document)
    if refused is not None:
        raise refused
    return document


class BoundedRequest(Request):
    """A request whose `json()` is `decoded`: how FastAPI reads a JSON body, so the only way."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decoded(await self.body())
        return self._json


class BoundedRoute(APIRoute):
    """The route class of every router that takes a JSON body. An ApiError raised while FastAPI reads
    the body reaches `errors` as the cause of its 400 and is answered as it is (as the body limit's)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handle(BoundedRequest(request.scope, request.receive))

        return bounded
