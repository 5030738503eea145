"""Leader election with client-go's semantics: expiry by observed time, a renew deadline, no wall clocks compared."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from schedexec import leader
from schedexec.leader import LeaderElector, may_take, renewed


@pytest.mark.parametrize(
    ("holder", "unchanged_for", "expected"),
    [
        (None, 0.0, True),  # nobody holds it
        ("", 0.0, True),
        ("me", 0.0, True),  # ours: renew
        ("other", 0.0, False),
        ("other", 15.0, False),  # exactly the duration: not yet
        ("other", 15.1, True),  # unchanged for longer than its duration, by our own clock
    ],
)
def test_who_may_write_the_lease(holder: str | None, unchanged_for: float, expected: bool) -> None:
    spec = {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": "1999-01-01T00:00:00Z"}
    assert may_take(spec, "me", unchanged_for) is expected


def test_a_takeover_counts_a_transition_and_a_renewal_does_not() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    taken = renewed({"holderIdentity": "other", "leaseTransitions": 3}, "me", now)
    assert taken["holderIdentity"] == "me" and taken["leaseTransitions"] == 4 and taken["acquireTime"]
    again = renewed(taken, "me", now)
    assert again["leaseTransitions"] == 4 and again["acquireTime"] == taken["acquireTime"]


class FakeLeases:
    """A Lease in memory; `frozen` makes every call fail like an unreachable API server."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.lease = None if spec is None else {"spec": spec}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise leader.TRANSIENT[0]("unreachable")

    async def read(self) -> dict[str, Any] | None:
        self._check()
        return None if self.lease is None else {"spec": dict(self.lease["spec"])}

    async def create(self, spec: dict[str, Any]) -> bool:
        self._check()
        self.lease = {"spec": spec}
        return True

    async def replace(self, lease: dict[str, Any]) -> bool:
        self._check()
        self.lease = lease
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stale_renew_time_from_a_clock_far_ahead_or_behind_does_not_decide_expiry() -> None:
    """The other replica's renewTime is 1999: a wall-clock comparison would take over at once."""
    leases, clock = FakeLeases({"holderIdentity": "other", "renewTime": "1999-01-01T00:00:00Z"}), Clock()
    elector = LeaderElector(leases, "me", clock)  # type: ignore[arg-type]
    assert asyncio.run(elector._try_acquire()) is False
    clock.now += 10
    assert asyncio.run(elector._try_acquire()) is False, "unchanged for 10 s of our clock: not expired"
    clock.now += 6
    assert asyncio.run(elector._try_acquire()) is True, "unchanged for 16 s > 15 s: ours"
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "me"


def test_a_leader_that_cannot_renew_stops_acting_before_anyone_may_take_over() -> None:
    leases, clock = FakeLeases(), Clock()
    elector = LeaderElector(leases, "me", clock)  # type: ignore[arg-type]
    gained: list[bool] = []

    async def scenario() -> None:
        task = asyncio.create_task(elector.run(on_gain=lambda: gained.append(True)))
        await asyncio.sleep(0.05)
        assert elector.may_act() and gained == [True]
        leases.down = True
        clock.now += leader.RENEW_DEADLINE_SECONDS - 0.5
        assert elector.may_act(), "still within the renew deadline"
        clock.now += 1.0  # e.g. frozen by SIGSTOP: the monotonic clock moved on
        assert not elector.may_act(), "past the renew deadline: act no more, even before the loop runs"
        task.cancel()

    asyncio.run(scenario())
    assert leader.RENEW_DEADLINE_SECONDS < leader.LEASE_SECONDS
