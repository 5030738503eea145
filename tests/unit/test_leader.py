"""Leader election with client-go's semantics: expiry by observed time, a renew deadline counted from each
renewal's attempt, no wall clocks compared; and the fence every write of the operator passes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from schedexec import kube, leader
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
    """A Lease in memory; `down` makes every call fail like an unreachable API server; while `stall` is set, a
    replace by `stalled_for` lands at once and its answer waits for `stall` (a process frozen mid-request)."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.lease = None if spec is None else {"spec": spec}
        self.down = False
        self.stall: asyncio.Event | None = None
        self.stalled_for = ""
        self.stalled = asyncio.Event()

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
        if self.stall is not None and lease["spec"]["holderIdentity"] == self.stalled_for:
            self.stalled.set()
            await self.stall.wait()
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


async def until(condition: Any, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


def test_a_leader_frozen_in_the_middle_of_a_renewal_does_not_wake_up_leading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: the leader's renewal lands, then it is frozen before reading the answer; the other replica sees
    the lease unchanged for longer than its duration and takes over; the leader wakes and reads "renewed". Its
    renewal counts from when it was attempted, 20 s ago: it may not act, and never do both replicas at once.
    (Taking the renewal's time after the answer, as before, made both act for up to 10 s.)"""
    monkeypatch.setattr(leader, "RETRY_SECONDS", 0.001)  # the loops turn on the event loop; time is `clock`
    clock = Clock()
    leases = FakeLeases()
    a, b = LeaderElector(leases, "a", clock), LeaderElector(leases, "b", clock)  # type: ignore[arg-type]
    both: list[float] = []

    async def scenario() -> None:
        tasks = [asyncio.create_task(a.run(on_gain=lambda: None))]
        await until(a.may_act, "a leads")
        tasks.append(asyncio.create_task(b.run(on_gain=lambda: None)))
        await asyncio.sleep(0.02)
        assert not b.may_act()
        leases.stall, leases.stalled_for = asyncio.Event(), "a"
        await until(leases.stalled.is_set, "a renewal of a's sent, its answer held")
        for _ in range(20):  # 20 s pass: a is frozen, b watches the lease
            clock.now += 1.0
            await asyncio.sleep(0.01)
            if a.may_act() and b.may_act():
                both.append(clock.now)
        await until(b.may_act, "b took over")
        leases.stall.set()  # a wakes up and reads its answer: renewed
        for _ in range(20):
            await asyncio.sleep(0.002)
            if a.may_act() and b.may_act():
                both.append(clock.now)
        assert not a.may_act(), "a's last renewal was attempted 20 s ago"
        with pytest.raises(kube.NotLeading):
            a.fence()
        b.fence()
        for task in tasks:
            task.cancel()

    asyncio.run(scenario())
    assert both == [], f"two replicas may act at once at {both}"


def test_a_renewal_that_answers_after_the_renew_deadline_stops_the_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer came, but later than the renew deadline after the renewal was sent: nothing says the lease was
    still ours at any moment of the last 10 s, so the leader stops acting until it renews in time."""
    clock = Clock()
    leases = FakeLeases()
    elector = LeaderElector(leases, "me", clock)  # type: ignore[arg-type]

    async def slow_replace(lease: dict[str, Any]) -> bool:
        clock.now += leader.RENEW_DEADLINE_SECONDS + 1
        leases.lease = lease
        return True

    async def scenario() -> None:
        task = asyncio.create_task(elector.run(on_gain=lambda: None))
        await asyncio.sleep(0.01)
        assert elector.may_act()
        leases.replace = slow_replace  # type: ignore[method-assign]
        monkeypatch.setattr(leader, "RETRY_SECONDS", 0.001)
        await until(lambda: not elector.leading.is_set(), "the leader paused")
        assert not elector.may_act()
        task.cancel()

    asyncio.run(scenario())


def test_a_fenced_write_ends_before_anyone_may_take_over() -> None:
    """The bound leader.py documents: a write is sent within the renew deadline of the renewal it relies on and
    ends (answered or given up) within kube.FENCED_TIMEOUT_SECONDS, before the lease may be taken."""
    assert leader.RENEW_DEADLINE_SECONDS + kube.FENCED_TIMEOUT_SECONDS < leader.LEASE_SECONDS
    assert leader.RETRY_SECONDS < leader.RENEW_DEADLINE_SECONDS / 2, "a missed renewal is retried in time"
