"""How schedexec names and recognises Kubernetes objects, written once.

Every cache and every client keys objects by `namespace/name`, finds the
ScheduledExecution that owns a Job through its owner reference, and drops
`managedFields` before keeping a body in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schedexec import models


def key_of(body: Mapping[str, Any]) -> str:
    """`namespace/name` of an object."""
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a `namespace/name` key."""
    namespace, name = key.split("/", 1)
    return namespace, name


def execution_owners(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The owner references of `body` that name a ScheduledExecution."""
    return [
        owner
        for owner in (body.get("metadata") or {}).get("ownerReferences") or []
        if owner.get("kind") == models.KIND and owner.get("apiVersion") == models.API_VERSION
    ]


def owner_uids(body: Mapping[str, Any]) -> set[str]:
    """UIDs of the ScheduledExecutions owning `body`."""
    return {owner.get("uid", "") for owner in execution_owners(body)}


def owner_keys(body: Mapping[str, Any]) -> list[str]:
    """`namespace/name` keys of the ScheduledExecutions owning `body` (owners share its namespace)."""
    namespace = body["metadata"]["namespace"]
    return [f"{namespace}/{owner['name']}" for owner in execution_owners(body)]


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without metadata.managedFields: server-side-apply bookkeeping, often a third of an object,
    never read by schedexec; dropped from everything it keeps in memory."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def finished(execution: Mapping[str, Any]) -> bool:
    """Whether the stored status of an execution body is in a final phase (read without the models: the body
    may be one they refuse)."""
    status = execution.get("status")
    return isinstance(status, Mapping) and status.get("phase") in {phase.value for phase in models.FINISHED_PHASES}
