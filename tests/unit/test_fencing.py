"""The controller and a fenced write (issue 25): a write the leader's fence stopped is "not leading now,
requeue", never a failure of the execution."""

from __future__ import annotations

import asyncio

from schedexec import kube
from tests.unit.test_controller import FakeCluster, body, controller, settle


def test_a_write_the_fence_stopped_requeues_the_execution_and_counts_no_failure_against_it() -> None:
    """Without this, NotLeading would be an unexpected exception: counted towards the quarantine, and after
    SCHEDEXEC_QUARANTINE_AFTER_FAILURES of them (a replica that keeps losing its lease) the execution would be
    failed InternalError by a replica that may not act."""
    cluster = FakeCluster(fail_with=[kube.NotLeading("me does not hold the leader lease")])
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        await settle(c, 0.3)

    asyncio.run(scenario())
    assert c._poisoned == {}, "not a failure of the execution"
    assert c._failures == {"ns/a": 1} and "ns/a" in c.timers._due, "looked at again after a backoff"
    assert [call for call in cluster.calls if call[0] in ("create_job", "write_status")] == []
