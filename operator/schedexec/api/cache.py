"""The REST API's view of executions: a watch-fed cache, so polls cost no API call.

Clients poll often; one API-server GET per poll would make the API server
the bottleneck and grow its load with the number of polling clients. A
single list+watch keeps every execution in memory, indexed by UID (the
public execution id) and by namespace/name. The cache runs in a daemon
thread, relists when the watch expires, and retries with backoff on errors.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from schedexec.api.kubeclient import Client, WatchExpired
from schedexec.objects import slim

log = logging.getLogger("schedexec.api")


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
        """One watch event (ADDED, MODIFIED, DELETED): the watch delivers an object's versions in order."""
        meta = body.get("metadata", {})
        uid, key = meta.get("uid"), f"{meta.get('namespace')}/{meta.get('name')}"
        if not uid:
            return
        with self._lock:
            if event_type == "DELETED":
                self._by_uid.pop(uid, None)
                if self._uid_of.get(key) == uid:
                    del self._uid_of[key]
                return
            self._by_uid[uid] = slim(body)
            self._uid_of[key] = uid

    def _relist(self) -> str:
        """Replace everything with a fresh list; its resourceVersion, to watch from."""
        items, version = self.client.list_executions()
        with self._lock:
            self._by_uid = {i["metadata"]["uid"]: slim(i) for i in items}
            self._uid_of = {
                f"{i['metadata']['namespace']}/{i['metadata']['name']}": i["metadata"]["uid"] for i in items
            }
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
