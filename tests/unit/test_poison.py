"""One tenant's execution cannot stop or starve the others: inputs the API server accepts, run through the
controller with a fake cluster (issue 24). Each case was reproduced against the operator before its fix:
a crash, a reconcile retried forever with its slot held, or a status the API server refuses.

Generated inputs are in test_poison_properties.py; the same cases on a real API server in
tests/cluster/test_poison.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import kopf
import pytest

from schedexec import controller as controller_module
from schedexec import decisions, kube, models, screening
from schedexec.controller import Controller
from schedexec_runner import bounds, contract
from tests.unit.builders import POLICY
from tests.unit.test_controller import RUNNING_A1, FakeCluster, body, controller, jn, job, settle


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller_module, "MAX_BACKOFF_SECONDS", 0.02)


def deep_args(levels: int) -> dict[str, Any]:
    """spec.args nested `levels` deep, decoded as the watch decodes them (no recursion limit in the way)."""
    args: dict[str, Any] = bounds.loads('{"a":' * (levels - 1) + "{}" + "}" * (levels - 1))
    return args


def with_spec(name: str, **spec: Any) -> dict[str, Any]:
    execution = body(name)
    execution["spec"] = {**execution["spec"], **spec}
    return execution


def reasons(cluster: FakeCluster) -> list[Any]:
    return [reason for call, reason in cluster.calls if call == "event"]


def run_with_neighbour(c: Controller, poisoned: dict[str, Any], seconds: float = 0.4) -> None:
    async def scenario() -> None:
        c.execution_event(None, poisoned)
        c.execution_event(None, body("b"))
        await settle(c, seconds)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("args", "reason", "named"),
    [
        (deep_args(1_000), models.Reason.INVALID_SPEC, "deeper than 64 levels"),
        (deep_args(300), models.Reason.INVALID_SPEC, "deeper than 64 levels"),
        ({"key": "\ud800"}, models.Reason.INVALID_SPEC, "not valid Unicode"),
        ({"blob": "x" * (contract.MAX_ARGS_BYTES + 1)}, models.Reason.ARGS_TOO_LARGE, "the limit is 204800 bytes"),
    ],
    ids=["1000-deep", "300-deep", "lone-surrogate", "over-200-KiB"],
)
def test_args_the_operator_cannot_run_fail_the_execution_at_once_and_the_neighbour_runs(
    args: dict[str, Any], reason: str, named: str
) -> None:
    cluster = FakeCluster()
    c = controller(cluster)
    run_with_neighbour(c, with_spec("a", args=args))
    assert ("create_job", jn("a", 1)) not in cluster.calls, "no run of what cannot be delivered"
    assert ("create_job", jn("b", 1)) in cluster.calls
    kept = c.reconciler.newest("ns/a")
    assert kept is not None
    assert kept["status"]["phase"] == "Failed" and kept["status"]["error"]["reason"] == reason
    assert named in kept["status"]["error"]["message"]
    assert reason in reasons(cluster)
    assert len(c.store.executions._text["ns/a"]) < 16_000, "the store keeps no oversized or deep args"
    assert len(c.reconciler.writes.bodies._text["ns/a"]) < 16_000, "nor does the record of the operator's writes"
    assert c._failures == {}


def test_a_ttl_past_what_dates_can_hold_fails_the_execution_instead_of_an_overflow_forever() -> None:
    """ttlSecondsAfterFinished around 2.6e11 raised OverflowError in every reconcile (an object stored before
    the CRD bounded it; the CRD now refuses it)."""
    cluster = FakeCluster()
    c = controller(cluster)
    run_with_neighbour(c, with_spec("a", ttlSecondsAfterFinished=260_000_000_000))
    assert c.reconciler.newest("ns/a")["status"]["error"]["reason"] == models.Reason.INVALID_SPEC
    assert ("create_job", jn("b", 1)) in cluster.calls


def test_scheduled_args_nobody_can_serialise_fail_the_sequence_stop_its_run_and_free_its_slot() -> None:
    """status.nextArgs nested 300 deep (written by an older operator, or anyone who may write the status):
    pydantic refused to serialise the status on every reconcile, and the run's slot stayed held."""
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)
    poisoned = body("a") | {"status": {**RUNNING_A1, "nextArgs": deep_args(300)}}

    async def scenario() -> None:
        c.execution_event(None, poisoned)
        c.execution_event(None, body("b"))
        await settle(c, 0.5)

    asyncio.run(scenario())
    kept = c.reconciler.newest("ns/a")["status"]
    assert kept["phase"] == "Failed" and kept["error"]["reason"] == models.Reason.INVALID_ENVELOPE
    assert kept["history"][-1]["outcome"] == "Stopped"
    assert ("delete_job", jn("a", 1)) in cluster.calls, "the run in progress is stopped"
    assert ("create_job", jn("b", 1)) in cluster.calls, "its slot went to the next execution"


def test_a_partial_result_nobody_can_serialise_is_dropped_and_the_sequence_goes_on() -> None:
    """Only shown while polling: an unstorable one is not a reason to stop a run that is fine."""
    cluster = FakeCluster()
    c = controller(cluster)
    c.execution_event(None, body("a") | {"status": {**RUNNING_A1, "partialResult": deep_args(300)}})
    kept = c.store.executions["ns/a"]
    assert kept["status"]["partialResult"] is None and screening.refusal(kept) is None


def test_the_store_keeps_no_args_once_the_sequence_started() -> None:
    """Memory for a waiting or finished execution does not grow with its args (they are in status.nextArgs
    while needed): 10,000 executions with 200 KiB args would otherwise be 2 GB."""
    c = controller(FakeCluster())
    c.execution_event(None, with_spec("a", args={"blob": "x" * 150_000}) | {"status": {"phase": "Succeeded"}})
    assert c.store.executions["ns/a"]["spec"]["args"] == {}
    c.execution_event(None, with_spec("b", args={"blob": "x" * 150_000}))
    assert c.store.executions["ns/b"]["spec"]["args"] == {"blob": "x" * 150_000}, "not started: kept"


class FailingOnce(FakeCluster):
    """The first Job deletion fails on the network."""

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        if not any(call == ("delete_job", name) for call in self.calls):
            self.calls.append(("delete_job", name))
            raise aiohttp.ClientConnectionError("reset by peer")
        await super().delete_job(namespace, name, uid)


def test_a_refusal_interrupted_after_its_status_write_still_deletes_the_job_and_frees_the_slot() -> None:
    """refuse() wrote Failed, then one Job deletion failed: the retry saw a finished, invalid object and
    returned at once, so the Job ran on and the slot was held for good (found in review)."""
    cluster = FailingOnce()
    c = controller(cluster, max_running=1)
    broken = body("a") | {"status": RUNNING_A1}
    broken["spec"] = {"component": {"image": "img"}, "method": "has spaces"}

    async def scenario() -> None:
        c.job_event("ADDED", job(jn("a", 1), "a"))
        c.execution_event(None, broken)
        c.execution_event(None, body("b"))
        await settle(c, 1.0)

    asyncio.run(scenario())
    assert cluster.calls.count(("delete_job", jn("a", 1))) == 2, "tried again"
    assert ("create_job", jn("b", 1)) in cluster.calls and "ns/a" not in c.slots.holders


def test_an_execution_being_deleted_passes_on_the_slot_offered_to_it() -> None:
    """A queued execution with a finalizer is deleted; offered the next free slot, its reconcile returned
    early and the offer stayed with it: every other waiter waited until its deadline (found in review)."""
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        await settle(c, 0.2)
        for name in ("b", "c"):
            c.execution_event(None, body(name))
        await settle(c, 0.2)
        deleting = body("b")
        deleting["metadata"] = {**deleting["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
        cluster.latest.pop("b", None)
        c.execution_event("MODIFIED", deleting)
        c.execution_event("MODIFIED", body("a") | {"status": {"phase": "Succeeded", "runs": 1}})
        await settle(c, 0.4)

    asyncio.run(scenario())
    assert ("create_job", jn("c", 1)) in cluster.calls, "b could not take the slot; c got it"


class Poisoned(FakeCluster):
    """Every Job creation of execution a raises what a bug of the operator would raise."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def create_job(self, manifest: dict[str, Any]) -> bool:
        if manifest["metadata"]["name"].startswith("a-"):
            raise self.error
        return await super().create_job(manifest)


def test_a_reconcile_that_keeps_failing_ends_internal_error_naming_the_type_never_the_content() -> None:
    cluster = Poisoned(UnicodeEncodeError("utf-8", "secret-value-\ud800", 13, 14, "surrogates not allowed"))
    c = controller(cluster, max_running=1)
    run_with_neighbour(c, body("a"), seconds=1.0)
    kept = c.reconciler.newest("ns/a")["status"]
    assert kept["phase"] == "Failed" and kept["error"]["reason"] == models.Reason.INTERNAL_ERROR
    assert "5 reconciles of this execution failed (UnicodeEncodeError)" in kept["error"]["message"]
    assert "secret-value" not in str(kept)
    assert models.Reason.INTERNAL_ERROR in reasons(cluster)
    assert ("create_job", jn("b", 1)) in cluster.calls, "the slot a took is free again"
    assert "ns/a" not in c.slots.holders and c._failures == {}


def test_past_its_deadline_a_failing_execution_times_out_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines are enforced even for an execution whose every reconcile fails."""

    def broken(*_: Any, **__: Any) -> decisions.Decision:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(decisions, "decide", broken)
    cluster = FakeCluster()
    c = controller(cluster)
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    late = body("a") | {"status": {**RUNNING_A1, "startedAt": past, "deadline": past}}

    async def scenario() -> None:
        c.execution_event(None, late)
        await settle(c, 0.3)

    asyncio.run(scenario())
    kept = c.reconciler.newest("ns/a")["status"]
    assert kept["phase"] == "TimedOut" and kept["error"]["reason"] == models.Reason.TIMEOUT
    assert "passed its deadline while the operator could not reconcile it" in kept["error"]["message"]
    assert ("delete_job", jn("a", 1)) in cluster.calls
    assert [call for call in cluster.calls if call == ("write_status", "TimedOut")] == [("write_status", "TimedOut")]


def test_network_failures_before_a_poisoned_reconcile_do_not_count_toward_its_quarantine() -> None:
    """The backoff counted every failure: four network errors and one bug ended an execution at once."""
    cluster = FakeCluster()
    c = controller(cluster)
    script: list[Exception] = [aiohttp.ClientConnectionError("refused") for _ in range(4)] + [ValueError("bug")]

    async def reconcile(key: str) -> float | None:
        raise script.pop(0)

    c.reconciler.reconcile = reconcile  # type: ignore[method-assign]

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        for _ in range(5):
            await c._reconcile("ns/a")

    asyncio.run(scenario())
    assert c._poisoned == {"ns/a": 1} and c._failures == {"ns/a": 5}, "backoff counts all, quarantine one"
    assert ("write_status", "Failed") not in cluster.calls
    assert kube.transient(kopf.LoginError("the token is being renewed"))


def test_transient_api_errors_keep_their_backoff_and_never_end_an_execution() -> None:
    outage = [kube.APIError({"message": "etcd"}, status=503, headers={}) for _ in range(12)]
    cluster = FakeCluster(fail_with=outage)
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        await settle(c, 1.0)

    asyncio.run(scenario())
    assert ("create_job", jn("a", 1)) in cluster.calls
    assert c.reconciler.newest("ns/a")["status"]["phase"] == "Running"


def test_a_running_execution_rewritten_into_one_the_models_refuse_frees_its_slot_and_stops_its_job() -> None:
    """_refuse_invalid wrote the failure but left the run's Job running and its slot held."""
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)
    broken = body("a") | {"status": RUNNING_A1}
    broken["spec"] = {"component": {"image": "img"}, "method": "has spaces"}

    async def scenario() -> None:
        c.execution_event(None, broken)
        c.execution_event(None, body("b"))
        await settle(c, 0.4)

    asyncio.run(scenario())
    assert c.reconciler.newest("ns/a")["status"]["error"]["reason"] == models.Reason.INVALID_SPEC
    assert ("delete_job", jn("a", 1)) in cluster.calls
    assert ("create_job", jn("b", 1)) in cluster.calls


def test_an_error_message_of_256_kib_is_clipped_in_status_conditions_and_events() -> None:
    from schedexec import runs
    from schedexec.reconciler import status_document
    from schedexec_runner import envelope

    ex = models.ScheduledExecution.model_validate(body("a") | {"status": RUNNING_A1})
    outcome = runs.RunObservation(runs.RunState.SUCCEEDED, envelope=envelope.Failure("Broken", "m" * 256 * 1024))
    d = decisions.decide(ex, outcome, datetime.now(UTC), True, POLICY)
    assert d.status.error is not None and len(d.status.error.message) == models.MESSAGE_LIMIT
    assert d.status.error.message.endswith(f"[cut: {256 * 1024} characters in all]")
    assert all(len(c.message) <= models.MESSAGE_LIMIT for c in d.status.conditions)
    assert all(len(e.message) <= decisions.EVENT_MESSAGE_LIMIT for e in d.events)
    assert len(str(status_document(d.status))) < 32 * 1024


def test_a_partial_result_over_the_limit_is_replaced_by_a_marker_saying_how_large_it_was() -> None:
    from schedexec import runs
    from schedexec_runner import envelope

    ex = models.ScheduledExecution.model_validate(body("a") | {"status": RUNNING_A1})
    big = {"rows": ["r" * 1000] * 100}
    outcome = runs.RunObservation(runs.RunState.SUCCEEDED, envelope=envelope.Schedule(30, {}, partial_result=big))
    d = decisions.decide(ex, outcome, datetime.now(UTC), True, POLICY)
    size = len(json.dumps(big, separators=(",", ":")))
    assert d.status.partial_result == {
        decisions.OMITTED: f"the partial result is {size} bytes as JSON; the status keeps at most {64 * 1024}"
    }
