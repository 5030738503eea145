"""Run slots: the operator-wide limit on runs in progress (SCHEDEXEC_MAX_RUNNING), and their one owner.

Kueue's cache is the one owner of quota that its reconcilers ask; `RunSlots` is that for the run slots. The
controller and the reconciler tell it what happened (`seen`, `try_start`, `queued`, `not_queued`, `ended`,
`forgotten`, `pods_deleted`), never touch its holders or waiters, and never compute whom to wake: it wakes them
itself (`wake`, the work queue's add). Touched on the event loop only (reconciles are coroutines), so taking
the last slot is atomic without a lock.

The rules, each written once here:

- A run in progress holds a slot, even past the limit (`seen`): a run seen in a status after a restart, or a
  Job a stopped operator created, is counted before any other execution takes a slot.
- A slot is held by one execution, named by its uid, not by its name: an execution deleted and made again
  under the same name is another execution, and the late deletion of the first must not free the second's
  slot. (Keyed by name, it did: the first's DELETED event, delivered after the operator had read the second
  afresh, freed the slot the second's run held, and one more execution than the limit showed Running.)
- A deleted execution keeps its slot until its run's pods are gone (`forgotten`, `pods_deleted`): its pod may
  still run while it terminates. A reconcile that was in flight when it was forgotten cannot take or hold a slot
  for it afterwards (`_gone`).
- Executions due to start a run while every slot is taken wait, first come first served (`queued`). A freed
  slot is offered to the first waiters, one per free slot. A waiter offered a slot that stops waiting without
  taking it (deleted, cancelled, timed out) passes the offer on: a slot never idles while executions wait.
"""

from __future__ import annotations

from collections.abc import Callable

GONE_REMEMBERED = 4096
"""How many forgotten executions' uids are kept, so that no reconcile still in flight for one holds a slot."""


class RunSlots:
    def __init__(self, limit: int, wake: Callable[[str], None], pods_left: Callable[[set[str]], bool]) -> None:
        self.limit = limit
        self._wake = wake
        self._pods_left = pods_left
        """Whether any pod of these Jobs (keys) is still there: the store answers."""
        self._holders: dict[str, str] = {}
        """Execution key by the uid of each execution holding a slot."""
        self._draining: dict[str, set[str]] = {}
        """Deleted executions still holding their slot (by uid), with their Jobs' keys: until the pods are gone."""
        self._gone: dict[str, None] = {}
        """Uids of forgotten executions, oldest first (a dict keeps insertion order)."""
        self._waiting: dict[str, None] = {}
        """Keys of executions due to start a run, in the order they asked."""
        self._offered: set[str] = set()
        """Waiting keys woken for a freed slot that have not taken it yet."""

    # --- what the probe and the metrics read -----------------------------------------------------

    @property
    def holders(self) -> frozenset[str]:
        """Keys of the executions holding a slot (a deleted one's while its pods drain)."""
        return frozenset(self._holders.values())

    @property
    def held(self) -> int:
        """How many slots are held."""
        return len(self._holders)

    def held_in(self, prefix: str) -> dict[str, str]:
        """The keys of the executions holding a slot whose keys start with `prefix` (a namespace/), by uid."""
        return {uid: key for uid, key in self._holders.items() if key.startswith(prefix)}

    @property
    def waiting(self) -> tuple[str, ...]:
        """Keys of the executions waiting for a slot, first come first."""
        return tuple(self._waiting)

    # --- what happened ---------------------------------------------------------------------------

    def seen(self, key: str, uid: str, in_progress: bool) -> None:
        """Execution `key` (`uid`) was seen with (`in_progress`) or without a run in progress. One in progress
        holds a slot, even past the limit. One without is not let go here: the reconcile that took its slot may
        be creating its run's Job right now (`ended` lets go)."""
        if in_progress and uid not in self._gone:
            self._holders[uid] = key

    def deleted(self, uid: str) -> bool:
        """Whether execution `uid` was forgotten (recently: GONE_REMEMBERED)."""
        return uid in self._gone

    def may_start(self, uid: str) -> bool:
        """Whether execution `uid` holds a slot or could take one now."""
        return uid not in self._gone and (uid in self._holders or len(self._holders) < self.limit)

    def try_start(self, key: str, uid: str) -> bool:
        """Execution `key` (`uid`) is about to create its run's Job: take a slot; False if none is free."""
        if not self.may_start(uid):
            return False
        self._holders[uid] = key
        self._waiting.pop(key, None)
        self._offered.discard(key)
        return True

    def queued(self, key: str) -> None:
        """`key` is due to start a run and has no slot: it waits for the next free one (woken at once if one is
        free already). A key offered a slot that another took first waits for the next offer."""
        self._waiting[key] = None
        self._offered.discard(key)
        if len(self._holders) < self.limit:
            self._wake(key)

    def not_queued(self, key: str) -> None:
        """`key` waits no more (it runs, it ended, it is gone); a slot offered to it goes to the next waiter."""
        self._waiting.pop(key, None)
        if key in self._offered:
            self._offered.discard(key)
            self._offer()

    def ended(self, uid: str) -> None:
        """Execution `uid` has no run in progress any more (its status says so, as written): its slot is free."""
        if uid in self._holders and uid not in self._draining:
            del self._holders[uid]
            self._offer()

    def forgotten(self, uid: str, jobs: set[str]) -> None:
        """Execution `uid` is deleted; `jobs` are its Jobs' keys. Its slot is freed once no pod of them is left.
        Forgetting it again keeps waiting for the pods it waited for before."""
        self._gone[uid] = None
        while len(self._gone) > GONE_REMEMBERED:
            del self._gone[next(iter(self._gone))]
        if uid not in self._holders:
            return
        self._draining[uid] = self._draining.get(uid, set()) | jobs
        self.pods_deleted()

    def pods_deleted(self) -> None:
        """Pods are gone: deleted executions whose pods are all gone free their slots."""
        for uid in [uid for uid, jobs in self._draining.items() if not self._pods_left(jobs)]:
            del self._draining[uid]
            del self._holders[uid]
            self._offer()

    def _offer(self) -> None:
        """Offer the free slots not offered yet to the first waiters who have no offer, and wake them."""
        free = self.limit - len(self._holders) - len(self._offered & self._waiting.keys())
        chosen = [key for key in self._waiting if key not in self._offered][: max(free, 0)]
        self._offered.update(chosen)
        for key in chosen:
            self._wake(key)
