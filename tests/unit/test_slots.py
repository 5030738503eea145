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
