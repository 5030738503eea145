"""Leader election among operator replicas, with client-go's semantics, and the fence every write passes.

Replicas share one coordination.k8s.io Lease. Clocks of different machines
never meet here: a replica judges another's lease expired by how long *it*
has watched the lease stay unchanged (a monotonic clock), not by comparing
the other replica's `renewTime` with its own wall clock. The leader renews
every RETRY_SECONDS; if it has not renewed for RENEW_DEADLINE_SECONDS it
stops acting, which is before any other replica may take over
(LEASE_SECONDS).

A renewal counts from when it was *attempted*, not from when its answer
came (client-go's renew deadline does the same): a leader frozen in the
middle of a renewal (request sent, process stopped for 20 s, answer read)
must not wake up believing it renewed just now, since the other replica
saw that renewal 20 s ago and may lead by now.

`fence` is checked by kube.Cluster right before every write the operator
sends (not when a reconcile decides: the login, the connection pool and the
event loop may hold a write back after that), so a leader that was frozen
(SIGSTOP, a long GC pause, a stalled node) or stalled on the way sends
nothing once its deadline is past, even before its elector loop has run:
its monotonic clock moved on meanwhile. The bound, on one replica's
monotonic clock: a write is sent less than RENEW_DEADLINE_SECONDS (10 s)
after the renewal it relies on was attempted, and it is done or given up
(kube.FENCED_TIMEOUT_SECONDS, 4 s, by the client and by the API server's
`timeout`) before LEASE_SECONDS (15 s) after that attempt, which is the
earliest another replica may take over: it must see the lease unchanged for
15 s from a change it can only see after the attempt began. What no client
can close (client-go does not either: the API server has no fencing tokens)
is a request the network delivers whole but later than that, or a process
frozen in the instant between the fence and the write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from schedexec import kube
from schedexec.kube import TRANSIENT

log = logging.getLogger("schedexec")

LEASES = "coordination.k8s.io/v1"
LEASE_SECONDS = 15
"""How long a lease stays unchanged before another replica may take it (client-go's LeaseDuration)."""
RENEW_DEADLINE_SECONDS = 10.0
"""A leader that has not renewed for this long stops acting (client-go's RenewDeadline)."""
RETRY_SECONDS = 2.0
"""How often the lease is renewed or, by a follower, looked at (client-go's RetryPeriod)."""


class Leases:
    """Read, create and replace one Lease (I/O only; `LeaderElector` decides)."""

    def __init__(self, api: kube.Api, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name

    async def read(self) -> dict[str, Any] | None:
        answer = await self.api.call("get", kube.path(LEASES, self.namespace, f"leases/{self.name}"), tolerate=(404,))
        return None if answer.status == 404 else answer.body

    async def create(self, spec: dict[str, Any]) -> bool:
        """Create the Lease; False if another replica created it first."""
        lease = {"apiVersion": LEASES, "kind": "Lease", "metadata": {"name": self.name}, "spec": spec}
        answer = await self.api.call("post", kube.path(LEASES, self.namespace, "leases"), lease, tolerate=(409,))
        return answer.status != 409

    async def replace(self, lease: dict[str, Any]) -> bool:
        """Replace the Lease as read (resourceVersion-guarded); False if it changed meanwhile."""
        url = kube.path(LEASES, self.namespace, f"leases/{self.name}")
        answer = await self.api.call("put", url, lease, tolerate=(409,))
        return answer.status != 409


def may_take(spec: Mapping[str, Any], identity: str, unchanged_for: float) -> bool:
    """Whether `identity` may write the lease `spec`: it holds it, nobody does, or the holder has let it
    stay unchanged for longer than its duration (as observed by this replica's own clock)."""
    holder = spec.get("holderIdentity")
    if holder in (None, "", identity):
        return True
    return unchanged_for > float(spec.get("leaseDurationSeconds") or LEASE_SECONDS)


def renewed(spec: Mapping[str, Any], identity: str, now: datetime) -> dict[str, Any]:
    """The lease `spec` as held by `identity` after a renewal (or a takeover) at `now`."""
    stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    updated = {**spec, "holderIdentity": identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": stamp}
    if spec.get("holderIdentity") != identity:
        updated["acquireTime"] = stamp
        updated["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if spec else 0)
    return updated


class LeaderElector:
    """Holds the lease for this replica, or waits for it; `leading` is set while it may act."""

    def __init__(
        self,
        leases: Leases,
        identity: str,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`clock` (monotonic) times the renew deadline and the expiry of others' leases; `now` is only written
        into the Lease (renewTime, acquireTime: for people, never compared): the API server's clock in cli.py."""
        self.leases, self.identity, self.clock, self.now = leases, identity, clock, now
        self.leading = asyncio.Event()
        self._renewed_at = float("-inf")
        """When the last successful renewal was attempted (`clock`)."""
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    def may_act(self) -> bool:
        """True while this replica leads and its last successful renewal was attempted within the renew
        deadline."""
        return self.leading.is_set() and self.clock() - self._renewed_at < RENEW_DEADLINE_SECONDS

    def fence(self) -> None:
        """kube.Fence: raises kube.NotLeading unless this replica may act at this very moment."""
        if not self.may_act():
            raise kube.NotLeading(f"{self.identity} does not hold the leader lease within its renew deadline")

    async def run(self, on_gain: Callable[[], None]) -> None:
        """Renew or try to take the lease every RETRY_SECONDS; `on_gain` runs each time leadership starts."""
        while True:
            attempted = self.clock()  # before any request: a renewal counts from its attempt (client-go)
            try:
                held = await self._try_acquire()
            except TRANSIENT as exc:
                log.warning("cannot renew the leader lease: %s", exc)
                held = False
            if held:
                self._renewed_at = max(self._renewed_at, attempted)
            fresh = self.clock() - self._renewed_at < RENEW_DEADLINE_SECONDS
            if fresh and not self.leading.is_set():
                log.info("leading: this replica reconciles executions now")
                self.leading.set()
                on_gain()
            elif not fresh and self.leading.is_set():
                log.warning("could not renew the leader lease within %.0fs: pausing", RENEW_DEADLINE_SECONDS)
                self.leading.clear()
            await asyncio.sleep(RETRY_SECONDS)

    async def _try_acquire(self) -> bool:
        lease = await self.leases.read()
        if lease is None:
            return await self.leases.create(renewed({}, self.identity, self.now()))
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        if not may_take(spec, self.identity, self.clock() - self._observed_at):
            return False
        lease["spec"] = renewed(spec, self.identity, self.now())
        return await self.leases.replace(lease)
