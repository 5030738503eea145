"""The API server's clock as replicas estimate it (clock.py): replicas whose own wall clocks are far apart
write and judge times the same way, within the `Date` header's 1 s resolution.

A simulated API server answers with the `Date` header its real counterpart sends (its clock, truncated to
the second); Hypothesis picks its time, each replica's wall clock skew (±30 s and more), monotonic origin
and request latencies."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import kopf
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from schedexec import kube, models
from schedexec.clock import MAX_DRIFT, ServerClock, date_header, narrowed, offset_bounds
from schedexec.controller import Controller, deadline_passed
from tests.unit.builders import POD_DEFAULTS, POLICY
from tests.unit.test_controller import FakeCluster, body


def http_date(epoch: float) -> str:
    """The `Date` an API server answering at `epoch` sends: whole seconds, truncated (Go's net/http)."""
    return formatdate(math.floor(epoch), usegmt=True)


@dataclass
class Replica:
    """One operator replica: its own monotonic origin and wall clock skew, and the ServerClock it keeps."""

    origin: float
    skew: float
    real: float = 0.0

    def __post_init__(self) -> None:
        self.clock = ServerClock(monotonic=lambda: self.real - self.origin, wall=lambda: self.real + self.skew)

    def ask(self, server_offset: float, sent_at: float, there: float, back: float) -> None:
        """One request sent at real time `sent_at`, made into an answer `there` s later, back `back` s after."""
        answered_at = sent_at + there + back
        self.clock.observe(http_date(sent_at + there + server_offset), sent_at - self.origin, answered_at - self.origin)
        self.real = answered_at


@given(
    server_offset=st.floats(-1e6, 1e6),
    origins=st.tuples(st.floats(-1e5, 1e5), st.floats(-1e5, 1e5)),
    skews=st.tuples(st.floats(-3600, 3600), st.floats(-3600, 3600)),
    start=st.floats(1.7e9, 1.9e9),
    latencies=st.lists(st.tuples(st.floats(0, 0.05), st.floats(0, 0.05), st.floats(0, 0.5)), min_size=2, max_size=40),
)
@settings(deadline=None, max_examples=300)
def test_replicas_with_skewed_wall_clocks_read_the_api_servers_clock_within_a_second(
    server_offset: float,
    origins: tuple[float, float],
    skews: tuple[float, float],
    start: float,
    latencies: list[tuple[float, float, float]],
) -> None:
    replicas = [Replica(origin, skew, start) for origin, skew in zip(origins, skews, strict=True)]
    worst_round_trip = 0.0
    for there, back, pause in latencies:
        for replica in replicas:
            replica.ask(server_offset, replica.real, there, back)
            replica.real += pause
        worst_round_trip = max(worst_round_trip, there + back)
    now = max(replica.real for replica in replicas)
    for replica in replicas:
        replica.real = now
    truth = now + server_offset
    read = [replica.clock.timestamp() for replica in replicas]
    # drift is not simulated here: each estimate is within half a sample's width of the truth
    for estimate, replica in zip(read, replicas, strict=True):
        assert abs(estimate - truth) <= (1 + worst_round_trip) / 2 + 1e-6
        uncertainty = replica.clock.uncertainty()
        assert uncertainty is not None and abs(estimate - truth) <= uncertainty + 1e-6
    assert abs(read[0] - read[1]) <= 1 + worst_round_trip + 1e-6


def test_one_answer_is_enough_and_the_local_clock_is_read_only_before_it() -> None:
    replica = Replica(origin=500.0, skew=30.0, real=1_800_000_000.25)
    assert replica.clock.uncertainty() is None
    assert replica.clock.timestamp() == pytest.approx(1_800_000_030.25), "no answer yet: this machine's wall clock"
    replica.ask(server_offset=-7.0, sent_at=replica.real, there=0.0, back=0.0)
    assert abs(replica.clock.timestamp() - (replica.real - 7.0)) <= 0.5
    replica.skew = -3600  # the local wall clock stepped: nothing changes
    assert abs(replica.clock.timestamp() - (replica.real - 7.0)) <= 0.5


@given(steps=st.lists(st.tuples(st.floats(0.0, 600.0), st.floats(0, 1)), min_size=1, max_size=50))
def test_the_kept_interval_follows_a_clock_that_drifts_as_fast_as_ntp_slews(steps: list[tuple[float, float]]) -> None:
    """The true offset (drifting at MAX_DRIFT) stays inside the kept interval: it is never narrowed past it."""
    kept, offset = None, 100.0
    for elapsed, phase in steps:
        offset += MAX_DRIFT * elapsed
        sample = (offset - phase, offset - phase + 1.0)  # one answer's interval, the truth at `phase` into it
        kept = narrowed(kept, elapsed, sample)
        assert kept[0] - 1e-9 <= offset <= kept[1] + 1e-9


def test_a_server_clock_that_was_stepped_is_followed_at_once() -> None:
    kept = narrowed(None, 0.0, offset_bounds(1000.0, sent=10.0, answered=10.1))
    assert kept == pytest.approx((989.9, 991.0))
    stepped = offset_bounds(4000.0, sent=20.0, answered=20.1)  # an hour later by the server's clock, 10 s by ours
    assert narrowed(kept, 10.0, stepped) == stepped


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Mon, 07 Dec 2026 05:00:00 GMT", datetime(2026, 12, 7, 5, tzinfo=UTC).timestamp()),
        ("Mon, 07 Dec 2026 05:00:00 -0000", datetime(2026, 12, 7, 5, tzinfo=UTC).timestamp()),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_date_headers(header: str | None, expected: float | None) -> None:
    assert date_header(header) == expected


def test_an_answer_without_a_date_changes_nothing() -> None:
    clock = ServerClock(monotonic=lambda: 5.0, wall=lambda: 123.0)
    clock.observe(None, 1.0, 2.0)
    clock.observe("garbage", 1.0, 2.0)
    assert clock.uncertainty() is None and clock.timestamp() == 123.0


# --- the operator's calls feed it, and the controller judges by it -------------------------------------------

SERVER_AHEAD = 100.0
"""The API server's clock in these tests: this machine's plus 100 s."""


async def skewed_server() -> AsyncIterator[str]:
    """A loopback API server whose `Date` is SERVER_AHEAD seconds ahead of this machine's clock."""

    async def handle(request: web.Request) -> web.StreamResponse:
        now = datetime.now(UTC).timestamp() + SERVER_AHEAD
        return web.json_response({"metadata": {"name": "a"}}, headers={"Date": http_date(now)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_two_replicas_30_s_apart_judge_a_status_deadline_the_same_way() -> None:
    """Each replica's kube.Api reads the server's clock from its answers; their own clocks are 30 s ahead and
    30 s behind. A deadline 5 s past by the server's clock is past for both, one 5 s ahead is ahead for both.
    By their own clocks (what the operator used before), the one ahead would end a sequence 25 s early."""

    async def scenario() -> list[tuple[datetime, datetime]]:
        judged = []
        async for server in skewed_server():
            for skew in (30.0, -30.0):
                wall = ServerClock(wall=lambda skew=skew: datetime.now(UTC).timestamp() + skew)
                api = kube.Api(lambda url=server: kopf.ConnectionInfo(server=url, token="t"), clock=wall)
                before = api.clock.now()
                try:
                    await api.call("get", "/api/v1/namespaces/ns/configmaps/a")
                finally:
                    await api.close()
                judged.append((before, kube.Cluster(api).now()))
        return judged

    (ahead_before, ahead), (behind_before, behind) = asyncio.run(scenario())
    assert (ahead_before - behind_before).total_seconds() == pytest.approx(60, abs=1), "their own clocks"
    assert abs((ahead - behind).total_seconds()) <= 1.0
    server_now = datetime.now(UTC) + timedelta(seconds=SERVER_AHEAD)
    assert abs((ahead - server_now).total_seconds()) <= 1.5
    for offset, passed in ((-5, True), (5, False)):
        deadline = {"status": {"deadline": (server_now + timedelta(seconds=offset)).isoformat()}}
        assert deadline_passed(deadline, ahead) is passed
        assert deadline_passed(deadline, behind) is passed


def waiting_for_its_next_run(deadline: datetime) -> dict[str, Any]:
    status = {
        "phase": "Running",
        "runs": 1,
        "startedAt": (deadline - timedelta(hours=1)).isoformat(),
        "deadline": deadline.isoformat(),
        "nextRunAt": (deadline + timedelta(hours=1)).isoformat(),
    }
    return body("a") | {"status": status}


@pytest.mark.parametrize(("deadline_in", "timed_out"), [(-5, True), (5, False)])
def test_the_controller_decides_by_the_clock_it_is_given(deadline_in: float, timed_out: bool) -> None:
    """Replicas 30 s apart, each given the API server's clock: both end a sequence whose deadline passed by the
    server's clock, neither ends one that has not; no reconcile reads this machine's clock instead."""
    server_now = datetime.now(UTC) + timedelta(seconds=SERVER_AHEAD)
    deadline = server_now + timedelta(seconds=deadline_in)
    for skew in (30.0, -30.0):
        replica = Replica(origin=0.0, skew=skew, real=datetime.now(UTC).timestamp())
        replica.ask(SERVER_AHEAD, replica.real, 0.001, 0.001)
        cluster = FakeCluster()
        c = Controller(cluster, POLICY, POD_DEFAULTS, max_running=10, workers=1, now=replica.clock.now)  # type: ignore[arg-type]
        c.execution_event(None, waiting_for_its_next_run(deadline))
        asyncio.run(c.reconciler.reconcile("ns/a"))
        assert (("write_status", models.Phase.TIMED_OUT.value) in cluster.calls) is timed_out, (skew, cluster.calls)
