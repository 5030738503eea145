"""Bounds on what callers can make the REST API ask of the API server: expiring LRU caches, token buckets.

Every review the API sends (TokenReview, SubjectAccessReview) costs the API
server work, and a token the API has never seen always costs one. So
answers are remembered for a short, fixed time in caches that never exceed
their size (the least recently used answer goes first; a flood of garbage
tokens pushes out old garbage, never the cache as a whole), and each
client address may cause only so many reviews per second: past its burst
it is answered 429 until its bucket refills. Cached answers cost nothing,
so a polling client is never limited. The client address is the TCP
peer's, or the one a proxy of SCHEDEXEC_API_TRUSTED_PROXIES forwards
(`server`): a client cannot name its own and so pick a new bucket.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
Clock = Callable[[], float]


class ExpiringLru(Generic[V]):
    """At most `size` answers, each for `ttl` seconds after it was stored."""

    def __init__(self, size: int, ttl: float, clock: Clock | None = None) -> None:
        self.size, self.ttl, self.clock = size, ttl, clock or time.monotonic
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> tuple[V] | None:
        """(value,) if a fresh answer is remembered, else None (a stored None is an answer too)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return (entry[1],)

    def put(self, key: Hashable, value: V) -> None:
        self._entries[key] = (self.clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class RateLimited(Exception):
    """The client spent its burst; it may try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


class Buckets:
    """A token bucket per client: `burst` at most, refilled at `rate` per second; at most `clients` tracked
    (a forgotten client starts with a full bucket, so the least recently seen one is forgotten first)."""

    def __init__(self, rate: float, burst: int, clients: int = 10_000, clock: Clock | None = None) -> None:
        self.rate, self.burst, self.clients, self.clock = rate, burst, clients, clock or time.monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> None:
        """Spend one token of `client`'s bucket, or raise RateLimited."""
        now = self.clock()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            raise RateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)))
        self._buckets[client] = (tokens - 1.0, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
