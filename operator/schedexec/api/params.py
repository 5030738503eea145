"""The path, query and header parameters of the REST API, declared once with their bounds.

Each is an `Annotated` type the routers put in their signatures; FastAPI
validates it (422 with a `parameter` source otherwise) and documents it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query

from schedexec.api.bodies import NAME

Namespace = Annotated[str, Query(min_length=1, max_length=63, pattern=NAME, description="Target namespace.")]
"""The namespace to create in; its default, the API's configured namespace, is given by each router."""
RequestedNamespace = Annotated[
    str | None,
    Query(
        alias="namespace",
        min_length=1,
        max_length=63,
        pattern=NAME,
        description="Target namespace; default: the workspace's namespace, else the API's configured one.",
    ),
]
"""`?namespace=` where a request may also name it otherwise (an elastic.io workspace): None if not given."""
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
