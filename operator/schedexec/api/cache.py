"""The REST API's view of executions: a watch-fed cache, so polls cost no API call.

Clients poll often; one API-server GET per poll would make the API server
the bottleneck and grow its load with the number of polling clients. A
single list+watch keeps every execution in memory, indexed by UID (the
public execution id) and by namespace/name. It is fed by the operator's
own list/watch (`watches.stream`, through `Client.follow_executions`), as a
task on the API's event loop: listed in pages, watched with bookmarks,
listed again after 410 Gone, retried with backoff forever. Each completed
list replaces what the cache holds (what it did not list was deleted while
the watch was away) and makes the cache ready (`/readyz`); a stream that
keeps failing makes it unready until a list completes again.

It keeps of each execution only what the API answers and decides with
(`served`): metadata uid, name, namespace and resourceVersion, the dialect
label (`documents.DIALECT`), the Idempotency-Key annotation
(`documents.IDEMPOTENCY`), and the status fields a document shows (phase,
runs, result, partialResult, nextRunAt, error, resultRef). Never the spec:
the API never answers it, and spec.args may be 200 KiB (1.5 MiB, created
with kubectl) and nested 10,000 levels deep; whole bodies made ~40 such
executions exceed the API's 256 MiB. Nor managedFields, history or other
annotations. A list is read a page at a time (`watches.EXECUTION_PAGE`),
each execution cut down to this as its page arrives. An execution whose
kept status the API could not answer (nested deeper than results may be, or
not valid Unicode: never written by the operator, which bounds what it
writes) is left out, with a log line that names it and not its content:
its id answers 404, every other one is served as usual.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping
from typing import Any

from schedexec import watches
from schedexec.api.documents import DIALECT, IDEMPOTENCY
from schedexec.api.kubeclient import Client
from schedexec_runner import bounds

log = logging.getLogger("schedexec.api")

METADATA = ("uid", "name", "namespace", "resourceVersion")
LABELS = (DIALECT,)
ANNOTATIONS = (IDEMPOTENCY,)
STATUS = ("phase", "runs", "result", "partialResult", "nextRunAt", "error", "resultRef")
"""What `served` keeps of an execution's metadata, labels, annotations and status."""
STATUS_DEPTH = bounds.MAX_JSON_DEPTH + 1
"""How deep a kept status may nest: a result or partial result as deep as the operator lets it be, one
level in."""
UNSYNCED_AFTER = 3
"""Backoffs in a row of the execution stream after which the cache no longer calls itself synced."""


def served(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the cache keeps of an execution (see the module's docstring)."""
    meta = _mapping(body.get("metadata"))
    return {
        "metadata": {
            **_picked(meta, METADATA),
            "labels": _picked(_mapping(meta.get("labels")), LABELS),
            "annotations": _picked(_mapping(meta.get("annotations")), ANNOTATIONS),
        },
        "status": _picked(_mapping(body.get("status")), STATUS),
    }


def unservable(kept: Mapping[str, Any]) -> str | None:
    """Why the API could not answer the status `served` kept, or None if it can."""
    return bounds.problem(kept["status"], "its status", STATUS_DEPTH)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _picked(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: mapping[key] for key in keys if key in mapping}


class ExecutionCache:
    """Executions by UID and by namespace/name, as `served` keeps them, fed by `follow` on the API's event
    loop (the routes read it there too: no lock)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ready = asyncio.Event()
        """Set by each completed list, cleared while the stream keeps failing: /readyz (and /healthz)."""
        self._by_uid: dict[str, dict[str, Any]] = {}
        self._uid_of: dict[str, str] = {}

    async def follow(self) -> None:
        """Keep the cache fed until cancelled (the app's lifespan runs it). Ends early only if the API may not
        list or watch executions: then it stays unready, which /readyz says, and the log says why."""
        try:
            await self.client.follow_executions(self.apply, self.relisted, self.failed)
        except watches.Fatal as exc:
            self.ready.clear()
            log.critical("the REST API's execution cache stopped: %s", exc)

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        return self._by_uid.get(uid)

    def by_name(self, namespace: str, name: str) -> dict[str, Any] | None:
        uid = self._uid_of.get(f"{namespace}/{name}")
        return None if uid is None else self._by_uid.get(uid)

    def remember(self, body: dict[str, Any]) -> None:
        """Store an object the API just created, unless its watch events came first (they are newer: the
        created object is its first version). resourceVersions are opaque and never compared."""
        if body.get("metadata", {}).get("uid") not in self._by_uid:
            self.apply("ADDED", body)

    def __len__(self) -> int:
        return len(self._by_uid)

    def apply(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One execution listed (`event_type` None) or one watch event (ADDED, MODIFIED, DELETED): the watch
        delivers an object's versions in order. A version the API could not serve removes the execution, as
        a DELETED would."""
        kept = served(body)
        meta = kept["metadata"]
        uid, key = meta.get("uid"), f"{meta.get('namespace')}/{meta.get('name')}"
        if not uid:
            return
        if event_type == "DELETED" or _usable(kept) is None:
            self._forget(uid, key)
            return
        self._by_uid[uid] = kept
        self._uid_of[key] = uid

    def relisted(self, keys: frozenset[str]) -> None:
        """A list completed (`keys`: namespace/name of everything it listed, each handed to `apply` already):
        drop what it did not list (deleted while the watch was away, which brings no DELETED event), as an
        informer's Replace does; the cache is synced."""
        for key in self._uid_of.keys() - keys:
            del self._uid_of[key]
        for uid in self._by_uid.keys() - set(self._uid_of.values()):  # and those recreated under their name
            del self._by_uid[uid]
        # The listed executions live as long as the cache: move them, with everything allocated at start-up,
        # out of the cyclic GC's sight, or each full collection walks them all and stalls every request
        # behind it (tail latency grows with the cache).
        gc.freeze()
        self.ready.set()

    def failed(self, in_a_row: int) -> None:
        """The stream backed off `in_a_row` times since it last listed or watched: after UNSYNCED_AFTER, what
        the cache holds may be stale; /readyz answers 503 until a list completes again."""
        if in_a_row >= UNSYNCED_AFTER:
            self.ready.clear()

    def _forget(self, uid: str, key: str) -> None:
        self._by_uid.pop(uid, None)
        if self._uid_of.get(key) == uid:
            del self._uid_of[key]


def _usable(kept: dict[str, Any]) -> dict[str, Any] | None:
    """`kept`, or None (logged, by name) if the API could not answer its status."""
    reason = unservable(kept)
    if reason is None:
        return kept
    meta = kept["metadata"]
    log.warning("execution %s/%s is not served: %s", meta.get("namespace"), meta.get("name"), reason)
    return None
