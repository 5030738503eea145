"""Run slots: the operator-wide limit, first come first served."""

from __future__ import annotations

from schedexec.slots import RunSlots


def test_the_last_slot_goes_to_one_execution_and_the_next_waits_in_order() -> None:
    slots = RunSlots(1)
    assert slots.take("a") and not slots.take("b")
    assert slots.free_for("a") and not slots.free_for("b")
    assert slots.wait("b") is False and slots.wait("c") is False
    assert slots.release("a") == ["b"], "one free slot wakes the first waiting execution"
    assert slots.take("b") and list(slots.waiting) == ["c"]


def test_a_run_seen_in_progress_holds_a_slot_even_past_the_limit() -> None:
    slots = RunSlots(1)
    slots.hold("a")
    slots.hold("b")  # both were running before a restart
    slots.wait("c")
    assert slots.release("a") == [], "still one holder for one slot"
    assert slots.release("b") == ["c"]
    assert slots.release("nobody") == []


def test_a_slot_offered_to_a_waiter_that_stops_waiting_passes_to_the_next() -> None:
    """Issue 24: a freed slot woke one waiter; if that one could not take it (deleted, say), the slot stayed
    idle while others waited."""
    slots = RunSlots(1)
    slots.take("a")
    for key in ("b", "c", "d"):
        slots.wait(key)
    assert slots.release("a") == ["b"]
    assert slots.stop_waiting("b") == ["c"], "b was offered the slot and left: c gets the offer"
    assert slots.stop_waiting("d") == [], "d had no offer: nothing to pass on"
    assert slots.take("c") and slots.stop_waiting("c") == []


def test_a_waiter_that_lost_its_offer_to_another_is_offered_the_next_free_slot() -> None:
    slots = RunSlots(1)
    slots.take("a")
    slots.wait("b")
    assert slots.release("a") == ["b"]
    assert slots.take("x"), "a newcomer took the free slot first"
    assert slots.wait("b") is False, "b waits again, without its spent offer"
    assert slots.release("x") == ["b"]
