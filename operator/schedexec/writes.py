"""What this operator wrote or read itself that the watch has not shown yet: the reconciler's own record.

The store (store.py) is the watch's view of the cluster, and only the watch
path writes it. A reconcile also learns versions the watch has not shown
yet: the answer to its own status write, a fresh read before it creates a
Job, the re-read after a conflict; and it asks for Job deletions that the
watch shows only later. Those are kept here, by the reconciler, until their
watch events come. A reconcile reads the newest version known (`newest`:
this record's while one of its versions is awaited, else the store's); the
watch input asks `echo` whether an event is news or only echoes an own write.

The watch delivers versions in order, and the echoes of several writes may
follow each other (Running, then Succeeded): the echo of an earlier write is
not news, and the record's newer body stays what a reconcile reads. Before,
only the newest write was awaited, so the echo of an earlier one was taken
as news and the execution held a run slot again (issue 26). An event that is
no echo (another writer's change, or a version older than the newest write
that a lagging watch delivers) replaces what the record knew: that is
harmless, because every status write is guarded by the resourceVersion it
was decided on, and a Job is created or deleted only after a fresh read
confirmed the execution (reconciler.Reconciler._current).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from schedexec.objects import key_of, slim
from schedexec.screening import screen
from schedexec.store import CompactBodies

AWAITED_VERSIONS = 16
"""How many of its own writes' echoes are awaited per execution (a relist may skip them all)."""


class Seen(enum.Enum):
    """What a watch event of an execution tells the operator."""

    NEW = "new"
    """A change it has not seen: reconcile."""
    OWN = "own"
    """The version it wrote (or read) itself: nothing to do, the reconcile that wrote it decided already."""


class OwnWrites:
    def __init__(self) -> None:
        self.bodies = CompactBodies()
        """By execution key: the newest version this operator wrote or read, while its echo is awaited."""
        self._awaited: dict[str, list[str]] = {}
        """By execution key: the resourceVersions written or read whose watch events have not come yet, oldest
        first (resourceVersions are opaque: compared for equality only)."""
        self._deleting: set[str] = set()
        """Keys of the Jobs this operator asked to delete whose deletion the watch has not shown yet."""

    # --- the reconciler's writes and reads -------------------------------------------------------

    def recorded(self, body: Mapping[str, Any]) -> None:
        """An execution as the API server answered a write or a read: the newest version this operator knows;
        its watch event, when it comes, only echoes it."""
        key = key_of(body)
        self.bodies[key] = screen(slim(body))
        awaited = self._awaited.setdefault(key, [])
        awaited.append(body["metadata"].get("resourceVersion", ""))
        del awaited[:-AWAITED_VERSIONS]

    def deleting(self, namespace: str, name: str) -> None:
        """The operator asked to delete Job `name`: not a stray any more."""
        self._deleting.add(f"{namespace}/{name}")

    # --- what the watch path asks ----------------------------------------------------------------

    def echo(self, body: Mapping[str, Any]) -> Seen:
        """Whether watch event `body` only echoes a version this operator wrote or read; the record forgets
        what the event supersedes (the store keeps the event's body in any case)."""
        key, version = key_of(body), body["metadata"].get("resourceVersion")
        awaited = self._awaited.get(key, [])
        if version not in awaited:
            self.bodies.pop(key, None)
            return Seen.NEW
        newest = version == awaited[-1]
        del awaited[: awaited.index(version) + 1]
        if not awaited:
            self._awaited.pop(key, None)
        if newest:
            self.bodies.pop(key, None)  # the store has this very version now
        return Seen.OWN

    def job_deleted(self, job_key: str) -> None:
        self._deleting.discard(job_key)

    def forget(self, key: str) -> None:
        self.bodies.pop(key, None)
        self._awaited.pop(key, None)

    # --- what a reconcile reads ------------------------------------------------------------------

    def newest(self, key: str, stored: CompactBodies) -> dict[str, Any] | None:
        """Execution `key` as last known: this record's version while its echo is awaited, else `stored`'s
        (the store's executions)."""
        return self.bodies[key] if key in self.bodies else stored.get(key)

    def is_deleting(self, job_key: str) -> bool:
        return job_key in self._deleting
