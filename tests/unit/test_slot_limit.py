"""The run-slot limit as users observe it: never more executions whose status says Running than the limit.

A make test on a fresh clone once counted 4 Running of a limit of 3 (issue 26), by luck of timing. Here the
real Controller, Reconciler, Store and slots run against an in-memory API server (fake_apiserver.py) whose
every answer and watch event the test lets go, one at a time, in an order it picks: answers in any order, watch
events late, replayed (a stale echo) or skipped by a relist, runs ending in any order, executions deleted and
made again mid-run. After every step, so after every status write, the stored statuses are counted. Hypothesis
picks the orders (derandomized: the same orders on every run), and hand-written schedules pin the two ways the
limit was broken. At the end every order is played out: every execution must succeed and every slot be free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedexec import models
from schedexec.controller import Controller
from schedexec.scheduling import Timers
from tests.unit.builders import POD_DEFAULTS, POLICY
from tests.unit.fake_apiserver import STREAMS, FakeApiServer

QUIET = 60
"""Event-loop turns after a step, by when every task waits on the test again (no task waits on anything else)."""

Action = tuple[str, Any]
FINISHED = {phase.value for phase in models.Phase if phase.finished}


class Harness:
    """A controller (2 workers) against a FakeApiServer; each step is one thing the server or a user does."""

    def __init__(self, limit: int, names: tuple[str, ...] = ("a", "b", "c"), lives: int = 2) -> None:
        self.limit = limit
        self.server = FakeApiServer()
        self.clock = 0.0
        self.controller = Controller(
            self.server,  # type: ignore[arg-type]
            POLICY,
            POD_DEFAULTS,
            max_running=limit,
            workers=2,
        )
        self.controller.timers = Timers(self.controller.queue.add, clock=lambda: self.clock)
        self.lives = dict.fromkeys(names, lives)
        """How many more times each name may be created."""
        self.replays, self.relists = 3, 2
        self.most_running = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        self.controller.caches_listed()
        self._task = asyncio.create_task(self.controller.run())
        await self.quiet()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def quiet(self) -> None:
        for _ in range(QUIET):
            await asyncio.sleep(0)

    # --- steps -----------------------------------------------------------------------------------

    def actions(self) -> list[Action]:
        """What may happen next, the plainest first (so Hypothesis shrinks towards an orderly world)."""
        server = self.server
        found: list[Action] = [("call", i) for i in range(len(server.held))]
        found += [("deliver", plural) for plural in STREAMS if server.streams[plural].behind]
        found += [("finish", job) for job in server.running_jobs()]
        found += [("collect", garbage) for garbage in server.garbage()]
        found += [("create", name) for name, lives in self.lives.items() if lives and name not in server.executions]
        found += [("delete", name) for name in sorted(server.executions)]
        if len(self.controller.timers):
            found.append(("tick", None))
        if self.replays:
            found += [("replay", plural) for plural in STREAMS if server.streams[plural].delivered]
        if self.relists:
            found += [("relist", plural) for plural in STREAMS]
        return found

    async def step(self, action: Action) -> None:
        kind, what = action
        server, c = self.server, self.controller
        if kind == "call":
            server.let_go(what)
        elif kind == "deliver":
            stream = server.streams[what]
            event, body = stream.events[stream.delivered]
            stream.delivered += 1
            self._handler(what)(event, body)
        elif kind == "replay":  # the watch restarts from an older version: the last event comes again
            self.replays -= 1
            server.streams[what].delivered -= 1
        elif kind == "relist":  # after 410 Gone: what is there now; the events in between are never seen
            self.relists -= 1
            listed = server.listing(what)
            for body in listed:
                self._handler(what)(None, body)
            c.relisted(what, "ns", frozenset(f"ns/{body['metadata']['name']}" for body in listed))
        elif kind == "finish":
            server.finish_run(what)
        elif kind == "collect":
            server.collect_garbage(*what)
        elif kind == "create":
            self.lives[what] -= 1
            server.create_execution(what)
        elif kind == "delete":
            server.delete_execution_now(what)
        elif kind == "tick":  # the next timer is due
            while (wait := c.timers.fire_due()) == 0.0:
                pass
            self.clock += wait or 0.0
            c.timers.fire_due()
        await self.quiet()
        running = server.running()
        self.most_running = max(self.most_running, len(running))
        assert len(running) <= self.limit, f"Running: {running} of a limit of {self.limit}, after {action}"

    def job_of(self, execution: str) -> str:
        """The name of run 1's Job of `execution` (the server has it)."""
        name = self.server.job_of(execution)
        assert name is not None, f"{execution} has no Job"
        return name

    async def call(self, what: str) -> None:
        """Let the first held call described as starting with `what` go."""
        await self.step(("call", next(i for i, call in enumerate(self.server.held) if call.what.startswith(what))))

    async def orderly_until(self, done: Callable[[], bool], lagging: str | None = None, held: str = "\0") -> None:
        """Let calls go and events come in order until `done`, with the watch of `lagging` held back and no
        call described as starting with `held` let go."""
        while not done():
            calls = [("call", i) for i, call in enumerate(self.server.held) if not call.what.startswith(held)]
            others = [a for a in self.actions() if a[0] in ("deliver", "collect") and a[1] != lagging]
            assert calls or others, "nothing left to do"
            await self.step((calls + others)[0])

    def _handler(self, plural: str) -> Callable[[str | None, dict[str, Any]], None]:
        c = self.controller
        handlers = {models.PLURAL: c.execution_event, "jobs": c.job_event, "pods": c.pod_event}
        return handlers[plural]

    async def play_out(self, rounds: int = 400) -> None:
        """Let everything happen in order until nothing is left to do: every execution must have succeeded."""
        for _ in range(rounds):
            orderly = [a for a in self.actions() if a[0] in ("call", "deliver", "collect", "finish")]
            unfinished = any(_phase(body) not in FINISHED for body in self.server.executions.values())
            if not orderly and unfinished and len(self.controller.timers):
                orderly = [("tick", None)]
            if not orderly:
                break
            await self.step(orderly[0])
        outcomes = {name: _outcome(body) for name, body in self.server.executions.items()}
        ended = ("Succeeded", f"Failed {models.Reason.JOB_NAME_TAKEN}")
        assert all(outcome in ended for outcome in outcomes.values()), outcomes
        slots = self.controller.slots
        assert not slots.holders and not slots.waiting, (slots.holders, slots.waiting)


def _phase(body: dict[str, Any]) -> str | None:
    phase: str | None = (body.get("status") or {}).get("phase")
    return phase


def _outcome(body: dict[str, Any]) -> str:
    """Succeeded; or Failed and why: an execution made again while the first one's Job is there finds its name
    taken (kube.JobNameTaken)."""
    status = body.get("status") or {}
    reason = (status.get("error") or {}).get("reason")
    return f"{status.get('phase')} {reason}" if reason else str(status.get("phase"))


def play(limit: int, schedule: Callable[[Harness], Awaitable[None]], **harness: Any) -> Harness:
    async def scenario() -> Harness:
        async with Harness(limit, **harness) as h:
            await schedule(h)
            await h.play_out()
        return h

    return asyncio.run(scenario())


# --- any order -----------------------------------------------------------------------------------


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), limit=st.integers(1, 2))
def test_never_more_executions_running_than_the_limit_whatever_the_order_of_answers_and_events(
    data: st.DataObject, limit: int
) -> None:
    async def schedule(h: Harness) -> None:
        for name in h.lives:
            await h.step(("create", name))
        for _ in range(data.draw(st.integers(10, 120), label="steps")):
            actions = h.actions()
            if not actions:
                return
            await h.step(actions[data.draw(st.integers(0, len(actions) - 1), label="action")])

    h = play(limit, schedule)
    assert h.most_running <= limit


# --- the two ways the limit was broken -----------------------------------------------------------


def test_the_late_deletion_of_an_execution_made_again_under_its_name_frees_no_slot_of_the_new_one() -> None:
    """Found by the test above, when slots were held by name. a took the only slot and created its Job; it was
    deleted and made again before the watch told; a's status write (on the first a's resourceVersion) conflicted,
    the operator read the new a afresh and ran it in the first a's slot; then the first a's DELETED event came
    and freed that slot (and dropped the new a from the store): b ran as well, 2 Running of a limit of 1."""

    async def schedule(h: Harness) -> None:
        await h.step(("create", "a"))
        await h.step(("create", "b"))
        await h.step(("deliver", models.PLURAL))  # a
        await h.call("get_execution a")
        await h.call("answer get_execution a")  # a takes the slot
        await h.step(("deliver", models.PLURAL))  # b
        await h.step(("delete", "a"))
        await h.call("create_job a-")  # run 1's
        await h.call("write_status b")  # b queued
        await h.call("answer create_job a-")
        await h.step(("collect", ("jobs", h.job_of("a"))))
        await h.step(("create", "a"))  # then everything in order (play_out)

    play(1, schedule, names=("a", "b"))


def test_a_finished_runs_slot_is_handed_over_only_once_its_status_says_so() -> None:
    """a's run ends while b waits: b may not start before the API server stored a's finished status."""

    async def schedule(h: Harness) -> None:
        await h.step(("create", "a"))
        await h.step(("create", "b"))
        await h.orderly_until(lambda: h.server.running() == ["a"] and not h.server.held)
        await h.step(("finish", h.job_of("a")))
        await h.orderly_until(lambda: any(c.what.startswith("write_status a") for c in h.server.held))
        await h.orderly_until(
            lambda: not [c for c in h.server.held if not c.what.startswith("write_status a")], held="write_status a"
        )
        assert h.server.running() == ["a"]
        assert h.server.job_of("b") is None, "b's run started before a's end was stored"

    play(1, schedule)
