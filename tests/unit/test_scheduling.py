"""The work queue and the timer heap that serve every execution."""

from __future__ import annotations

import asyncio

from schedexec.scheduling import Timers, WorkQueue


def test_a_key_is_queued_once_and_requeued_if_dirtied_while_processed() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        first = await queue.get()
        queue.add(first)  # an event arrives while a worker reconciles it
        second = await queue.get()
        assert second == "b", "the dirty key waits until its worker is done"
        queue.done(first)
        third = await queue.get()
        return [first, second, third]

    assert asyncio.run(scenario()) == ["a", "b", "a"]


def test_timers_fire_in_order_and_the_latest_setting_wins() -> None:
    now = [0.0]
    fired: list[str] = []

    async def scenario() -> None:
        timers = Timers(fired.append, clock=lambda: now[0])
        timers.set("late", 10)
        timers.set("soon", 1)
        timers.set("moved", 2)
        timers.set("moved", 20)
        timers.set("cancelled", 1)
        timers.cancel("cancelled")
        assert timers.fire_due() == 1
        now[0] = 10
        assert timers.fire_due() == 10
        assert fired == ["soon", "late"]
        now[0] = 30
        assert timers.fire_due() is None
        assert fired == ["soon", "late", "moved"] and len(timers) == 0

    asyncio.run(scenario())


def test_the_timer_task_wakes_up_for_an_earlier_timer() -> None:
    fired: list[str] = []

    async def scenario() -> None:
        timers = Timers(fired.append)
        task = asyncio.create_task(timers.run())
        timers.set("far", 3600)
        await asyncio.sleep(0.01)
        timers.set("near", 0.05)
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(scenario())
    assert fired == ["near"]
