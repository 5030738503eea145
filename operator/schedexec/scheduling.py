"""One scheduler for all executions: a de-duplicating work queue and one timer heap.

Per-object Kopf timers or daemons cost a task each; 10,000 executions waiting
between polls would cost 10,000 tasks. Instead every wake-up (next run,
sequence deadline, TTL) is one entry in a heap served by a single task, and
every reason to look at an execution (a watch event, a due timer, a freed run
slot) puts its key into one queue that never holds a key twice and never
hands the same key to two workers at once. Nothing here is persistent: all
state needed to continue lives in the resources, and the watch's initial
listing rebuilds the heap after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable


class WorkQueue:
    """Keys to reconcile; a key is queued at most once and processed by one worker at a time."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    async def get(self) -> str:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return len(self._dirty)


class Timers:
    """Wake-ups on a monotonic clock; one entry per key, the latest call wins."""

    def __init__(self, fire: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._counter = itertools.count()
        self._changed = asyncio.Event()

    def set(self, key: str, delay: float | None) -> None:
        """Fire `key` after `delay` seconds; None cancels its wake-up."""
        if delay is None:
            self._due.pop(key, None)
            return
        when = self._clock() + max(delay, 0.0)
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._counter), key))
        if len(self._heap) > 4 * len(self._due) + 1024:  # drop entries superseded by later calls
            self._heap = [(due, next(self._counter), k) for k, due in self._due.items()]
            heapq.heapify(self._heap)
        if self._heap[0][2] == key:
            self._changed.set()

    def cancel(self, key: str) -> None:
        self._due.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    def fire_due(self) -> float | None:
        """Fire every due key; return seconds until the next one (None if none)."""
        now = self._clock()
        while self._heap:
            when, _, key = self._heap[0]
            if self._due.get(key) != when:
                heapq.heappop(self._heap)
                continue
            if when > now:
                return when - now
            heapq.heappop(self._heap)
            del self._due[key]
            self._fire(key)
        return None

    async def run(self) -> None:
        while True:
            wait = self.fire_due()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
