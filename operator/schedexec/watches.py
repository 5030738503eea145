"""The watch streams of the three kinds the operator reads, handed to the controller without Kopf's handler
machinery.

Executions, their Jobs and the Jobs' pods only feed the store (store.py); every decision is the controller's.
Through Kopf's handlers every event paid for its full processing: a per-object worker task, cause detection,
handler matching, progress bookkeeping. A single-run execution brings about a dozen Job and pod events; in
the `make bench` profile that processing was about a third of the operator's CPU per execution (issue 17;
quick throughput bench, same machine and commit: 44.8 ms before, 27.7 ms after).

What is kept is Kopf's stream itself, `infinite_watch`: the initial list (in pages), the watch from the
list's resourceVersion, the relist after 410 Gone, reconnects with backoff, server-side label selectors from
`settings.watching.label_selectors`, and the credentials of Kopf's login (the operator's Vault, shared with
Kopf). That is Kopf's internal API: pyproject.toml pins Kopf to the minor version this module was tested
with, and tests/unit/test_watches.py breaks on import and on event handling if it moves.

The end of the first lists is told to the controller, as an informer's "synced": its workers start only
once every execution, Job and pod is in the store. Before, executions came through Kopf's event handler,
whose per-object workers handed the listed executions over one by one with no end marker; a restarted
operator started runs for the first executions before it had seen one whose Job a stopped operator had
created but never named, and gave that run's slot away (tests/chaos/test_faults.py, the operator killed
between a run's Job and its status, caught it).

Every list, the first and each relist after a watch gap, also reports the keys it listed: an object deleted
while the watch was not looking gets no DELETED event from Kopf's stream, so the controller drops what its
cache holds and the list did not show (Controller.relisted), as an informer's Replace does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any

import kopf
from kopf._cogs.clients import auth, watching
from kopf._cogs.structs import credentials, references

from schedexec import models
from schedexec.objects import key_of

log = logging.getLogger("schedexec")

Handle = Callable[[str | None, Mapping[str, Any]], None]
"""controller.execution_event, job_event or pod_event: (event type, None for the initial list; the object)."""
Listed = Callable[[frozenset[str]], None]
"""Called when a stream's list is over (the first one, and again after each relist), with the keys
(namespace/name) of the objects it listed."""
Relisted = Callable[[str, str | None, frozenset[str]], None]
"""controller.relisted: (the resource's plural, the namespace or None for cluster-wide, the keys listed)."""

EXECUTIONS = references.Resource(models.GROUP, models.VERSION, models.PLURAL, namespaced=True)
JOBS = references.Resource("batch", "v1", "jobs", namespaced=True)
PODS = references.Resource("", "v1", "pods", namespaced=True)

Vault = credentials.Vault


def handle_event(event: object, handle: Handle, listed: Listed, listing: set[str]) -> None:
    """One item of Kopf's stream: objects are handed on, the list-end marker is told; BOOKMARKs carry nothing.
    `listing` collects the keys of the list in progress (items of type None); the marker hands them to
    `listed` and starts afresh."""
    if event is watching.Bookmark.LISTED:
        keys = frozenset(listing)
        listing.clear()
        listed(keys)
    elif isinstance(event, Mapping) and event.get("type") != "BOOKMARK":
        if event.get("type") is None:
            listing.add(key_of(event["object"]))
        handle(event.get("type"), event["object"])


async def stream(
    settings: kopf.OperatorSettings,
    vault: credentials.Vault,
    resource: references.Resource,
    namespace: str | None,
    handle: Handle,
    listed: Listed,
) -> None:
    """Every event of one kind in one namespace (None: cluster-wide), forever; it only ends by raising
    (for example a 403: the operator's RBAC lacks the watch), which stops the operator (cli.run_operator)."""
    auth.vault_var.set(vault)  # this task's own context: requests wait until Kopf's login has filled the vault
    where = references.NamespaceName(namespace) if namespace is not None else None
    listing: set[str] = set()
    async for event in watching.infinite_watch(settings=settings, resource=resource, namespace=where):
        try:
            handle_event(event, handle, listed, listing)
        except Exception:  # one object the controller cannot take must not stop the stream for all others
            log.exception("a %s watch event could not be handled: %s", resource.plural, _about(event))


def _about(event: object) -> str:
    """Which object a watch event is about, for a log line (never its content: it may hold credentials)."""
    if isinstance(event, Mapping):
        meta = (event.get("object") or {}).get("metadata") or {}
        return f"{event.get('type')} {meta.get('namespace')}/{meta.get('name')}"
    return repr(event)


def streams(
    settings: kopf.OperatorSettings,
    vault: credentials.Vault,
    namespaces: Collection[str],
    executions: Handle,
    jobs: Handle,
    pods: Handle,
    relisted: Relisted,
    listed: Callable[[], None],
) -> list[Coroutine[Any, Any, None]]:
    """The execution, Job and pod streams of every watched namespace (none given: one cluster-wide stream
    each). `relisted` is told the keys of every list of each; `listed` is called once every stream has
    finished its first list, and never again."""
    where: list[str | None] = list(namespaces) or [None]
    kinds = [(EXECUTIONS, executions), (JOBS, jobs), (PODS, pods)]
    unlisted = {(resource.plural, ns) for resource, _ in kinds for ns in where}

    def listed_one(resource: references.Resource, namespace: str | None) -> Listed:
        def done(keys: frozenset[str]) -> None:
            try:
                relisted(resource.plural, namespace, keys)
            finally:  # the workers start even if handling what vanished failed (stream() logs it)
                if unlisted:
                    unlisted.discard((resource.plural, namespace))
                    if not unlisted:
                        listed()

        return done

    return [
        stream(settings, vault, resource, ns, handle, listed_one(resource, ns))
        for resource, handle in kinds
        for ns in where
    ]
