"""Run slots: the operator-wide limit, first come first served, held by executions (uids), not by names."""

from __future__ import annotations

from schedexec.slots import RunSlots


class Woken(list[str]):
    def __call__(self, key: str) -> None:
        self.append(key)


def slots(limit: int, pods: frozenset[str] = frozenset()) -> tuple[RunSlots, Woken, set[str]]:
    """Slots of `limit`, the keys they woke, and the Jobs whose pods are left (the test changes it)."""
    woken, left = Woken(), set(pods)
    return RunSlots(limit, wake=woken, pods_left=lambda jobs: bool(jobs & left)), woken, left


def test_the_last_slot_goes_to_one_execution_and_the_next_waits_in_order() -> None:
    s, woken, _ = slots(1)
    assert s.try_start("a", "ua") and not s.try_start("b", "ub")
    assert s.may_start("ua") and not s.may_start("ub")
    s.queued("b")
    s.queued("c")
    assert woken == [], "no slot is free"
    s.ended("ua")
    assert woken == ["b"], "one free slot wakes the first waiting execution"
    assert s.try_start("b", "ub") and s.waiting == ("c",) and s.holders == {"b"}


def test_a_waiter_is_woken_at_once_when_a_slot_is_free_already() -> None:
    s, woken, _ = slots(1)
    s.queued("a")
    assert woken == ["a"]


def test_a_run_seen_in_progress_holds_a_slot_even_past_the_limit() -> None:
    s, woken, _ = slots(1)
    s.seen("a", "ua", in_progress=True)
    s.seen("b", "ub", in_progress=True)  # both were running before a restart
    s.seen("c", "uc", in_progress=False)
    s.queued("c")
    s.ended("ua")
    assert woken == [], "still one holder for one slot"
    s.ended("ub")
    assert woken == ["c"]
    s.ended("nobody")
    assert woken == ["c"] and s.held == 0


def test_a_slot_offered_to_a_waiter_that_stops_waiting_passes_to_the_next() -> None:
    """Issue 24: a freed slot woke one waiter; if that one could not take it (deleted, say), the slot stayed
    idle while others waited."""
    s, woken, _ = slots(1)
    s.try_start("a", "ua")
    for key in ("b", "c", "d"):
        s.queued(key)
    s.ended("ua")
    assert woken == ["b"]
    s.not_queued("b")
    assert woken == ["b", "c"], "b was offered the slot and left: c gets the offer"
    s.not_queued("d")
    assert woken == ["b", "c"], "d had no offer: nothing to pass on"
    assert s.try_start("c", "uc")
    s.not_queued("c")
    assert woken == ["b", "c"]


def test_a_waiter_that_lost_its_offer_to_another_is_offered_the_next_free_slot() -> None:
    s, woken, _ = slots(1)
    s.try_start("a", "ua")
    s.queued("b")
    s.ended("ua")
    assert woken == ["b"]
    assert s.try_start("x", "ux"), "a newcomer took the free slot first"
    s.queued("b")
    assert woken == ["b"], "b waits again, without its spent offer"
    s.ended("ux")
    assert woken == ["b", "b"]


def test_a_deleted_execution_keeps_its_slot_until_its_pods_are_gone() -> None:
    s, woken, left = slots(1, pods=frozenset({"ns/a-r1"}))
    s.try_start("a", "ua")
    s.queued("b")
    s.forgotten("ua", {"ns/a-r1"})
    s.forgotten("ua", set())  # again (a 404 after the DELETED event): still waiting for the same pods
    assert not s.may_start("ub") and woken == []
    left.clear()
    s.pods_deleted()
    assert woken == ["b"] and s.held == 0


def test_an_earlier_executions_late_deletion_does_not_free_the_slot_of_one_made_again_under_its_name() -> None:
    """Issue 26: slots were held by name. a was deleted and made again; the operator read the new a (after a
    conflict) before the watch delivered the first a's deletion. The new a ran in the slot the first one held,
    and the late deletion freed it: b ran too, two Running of a limit of 1."""
    s, woken, _ = slots(1)
    s.try_start("a", "ua1")
    assert not s.may_start("ua2"), "the first a still holds the slot; the new a is another execution"
    s.queued("a")
    s.forgotten("ua1", set())
    assert woken == ["a"] and s.try_start("a", "ua2")
    s.forgotten("ua1", set())  # its DELETED event, late
    s.queued("b")
    assert not s.may_start("ub") and woken == ["a"] and s.holders == {"a"}


def test_a_reconcile_still_in_flight_for_a_forgotten_execution_takes_no_slot() -> None:
    s, _, _ = slots(1)
    s.forgotten("ua", set())
    s.seen("a", "ua", in_progress=True)
    assert not s.try_start("a", "ua") and s.held == 0
