"""Run slots: the operator-wide limit on runs in progress (SCHEDEXEC_MAX_RUNNING).

An execution holds a slot from the moment its run's Job is about to be
created until its status names no current run. Executions due to start a
run while every slot is taken wait here, first come first served, and are
woken when a slot frees. Touched on the event loop only (reconciles are
coroutines), so taking the last slot is atomic without a lock.

A freed slot is offered to the first waiters, one per free slot. A waiter that was offered a slot and
stops waiting without taking it (its execution was deleted, cancelled, timed out) passes the offer on
to the next waiter (`stop_waiting` returns whom to wake): a slot never idles while executions wait.
"""

from __future__ import annotations


class RunSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders: set[str] = set()
        """Keys of executions holding a slot."""
        self.waiting: dict[str, None] = {}
        """Keys of executions due to start a run, in the order they asked (a dict keeps insertion order)."""
        self.offered: set[str] = set()
        """Waiting keys woken for a freed slot that have not taken it yet."""

    def free_for(self, key: str) -> bool:
        """Whether `key` holds a slot or could take one now."""
        return key in self.holders or len(self.holders) < self.limit

    def take(self, key: str) -> bool:
        """Take a slot for `key`; False if none is free."""
        if not self.free_for(key):
            return False
        self.holders.add(key)
        self.waiting.pop(key, None)
        self.offered.discard(key)
        return True

    def hold(self, key: str) -> None:
        """`key` has a run in progress (seen in its status, e.g. after a restart): count it, even past the limit."""
        self.holders.add(key)

    def wait(self, key: str) -> bool:
        """Queue `key` for the next free slot; True if one is free already (look again at once). A key offered a
        slot that it could not take (another took it first) waits for the next offer."""
        self.waiting[key] = None
        self.offered.discard(key)
        return len(self.holders) < self.limit

    def stop_waiting(self, key: str) -> list[str]:
        """`key` waits no more; returns the waiting keys to wake if it passes on a slot offered to it."""
        self.waiting.pop(key, None)
        if key not in self.offered:
            return []
        self.offered.discard(key)
        return self._offer()

    def release(self, key: str) -> list[str]:
        """Free `key`'s slot, if it holds one; returns the waiting keys to wake, one per free slot."""
        if key not in self.holders:
            return []
        self.holders.discard(key)
        return self._offer()

    def _offer(self) -> list[str]:
        """Offer the free slots not offered yet to the first waiters who have no offer; returns them."""
        free = self.limit - len(self.holders) - len(self.offered & self.waiting.keys())
        chosen = [key for key in self.waiting if key not in self.offered][: max(free, 0)]
        self.offered.update(chosen)
        return chosen
