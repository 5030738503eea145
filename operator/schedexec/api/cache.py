"""The REST API's view of executions: a watch-fed cache, so polls cost no API call.

Clients poll often; one API-server GET per poll would make the API server
the bottleneck and grow its load with the number of polling clients. A
single list+watch keeps every execution in memory, indexed by UID (the
public execution id) and by namespace/name. The cache runs in a daemon
thread, relists when the watch expires, and retries with backoff on errors.

It keeps of each execution only what the API answers and decides with
(`served`): metadata uid, name, namespace and resourceVersion, the dialect
label (`documents.DIALECT`), the Idempotency-Key annotation
(`documents.IDEMPOTENCY`), and the status fields a document shows (phase,
runs, result, partialResult, nextRunAt, error, resultRef). Never the spec:
the API never answers it, and spec.args may be 200 KiB (1.5 MiB, created
with kubectl) and nested 10,000 levels deep; whole bodies made ~40 such
executions exceed the API's 256 MiB. Nor managedFields, history or other
annotations. A list is read a page at a time (`kubeclient.LIST_PAGE`), each
execution cut down to this as its page arrives. An execution whose kept status the API could not answer
(nested deeper than results may be, or not valid Unicode: never written by
the operator, which bounds what it writes) is left out, with a log line
that names it and not its content: its id answers 404, every other one is
served as usual.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from schedexec.api.documents import DIALECT, IDEMPOTENCY
from schedexec.api.kubeclient import Client, WatchExpired
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
    def __init__(self, client: Client) -> None:
        self.client = client
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._by_uid: dict[str, dict[str, Any]] = {}
        self._uid_of: dict[str, str] = {}

    def start(self) -> None:
        threading.Thread(target=self._run, name="execution-cache", daemon=True).start()

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._by_uid.get(uid)

    def by_name(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            uid = self._uid_of.get(f"{namespace}/{name}")
            return None if uid is None else self._by_uid.get(uid)

    def remember(self, body: dict[str, Any]) -> None:
        """Store an object the API just created, unless its watch events came first (they are newer: the
        created object is its first version). resourceVersions are opaque and never compared."""
        uid = body.get("metadata", {}).get("uid")
        with self._lock:
            known = uid in self._by_uid
        if not known:
            self.apply("ADDED", body)

    def __len__(self) -> int:
        return len(self._by_uid)

    def apply(self, event_type: str, body: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED): the watch delivers an object's versions in order.
        A version the API could not serve removes the execution, as a DELETED would."""
        kept = served(body)
        meta = kept["metadata"]
        uid, key = meta.get("uid"), f"{meta.get('namespace')}/{meta.get('name')}"
        if not uid:
            return
        gone = event_type == "DELETED" or _usable(kept) is None
        with self._lock:
            if gone:
                self._by_uid.pop(uid, None)
                if self._uid_of.get(key) == uid:
                    del self._uid_of[key]
                return
            self._by_uid[uid] = kept
            self._uid_of[key] = uid

    def _relist(self) -> str:
        """Replace everything with a fresh list; its resourceVersion, to watch from."""
        items, version = self.client.list_executions(lambda body: _usable(served(body)))
        by_uid = {i["metadata"]["uid"]: i for i in items if i["metadata"].get("uid")}
        uid_of = {f"{i['metadata'].get('namespace')}/{i['metadata'].get('name')}": uid for uid, i in by_uid.items()}
        with self._lock:
            self._by_uid, self._uid_of = by_uid, uid_of
        self.ready.set()
        return version

    def _run(self) -> None:
        failures = 0
        while True:
            try:
                version = self._relist()
                # The listed executions live as long as the cache: move them, with everything allocated
                # at start-up, out of the cyclic GC's sight, or each full collection walks them all and
                # stalls every request behind it (tail latency grows with the cache).
                gc.freeze()
                failures = 0
                while True:
                    for event_type, body in self.client.watch_executions(version):
                        self.apply(event_type, body)
                        version = body.get("metadata", {}).get("resourceVersion", version)
                    failures = 0
            except WatchExpired:
                continue
            except Exception as exc:
                failures += 1
                if failures >= 3:
                    self.ready.clear()  # /healthz answers 503 while the cache cannot be trusted
                delay = min(30.0, 0.5 * 2**failures)
                log.warning("execution watch failed, retrying in %.1fs: %s", delay, exc)
                time.sleep(delay)


def _usable(kept: dict[str, Any]) -> dict[str, Any] | None:
    """`kept`, or None (logged, by name) if the API could not answer its status."""
    reason = unservable(kept)
    if reason is None:
        return kept
    meta = kept["metadata"]
    log.warning("execution %s/%s is not served: %s", meta.get("namespace"), meta.get("name"), reason)
    return None
