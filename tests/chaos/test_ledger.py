"""The run ledger without a cluster: which pods count as executions, and how runs are tallied.

Not marked `cluster` or `chaos`: these run in every `make test` (and in `pytest tests/chaos`).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from schedexec import manifests
from tests.chaos.ledger import PodRecord, RunLedger, container_started, record_of, tally

JOB_UID = "job-uid-1"


def started(execution: str, index: int, uid: str, job_uid: str = JOB_UID, created: str = "") -> PodRecord:
    return PodRecord(
        execution=execution,
        index=index,
        uid=uid,
        name=f"{execution}-r{index}-{uid}",
        job=f"{execution}-r{index}",
        job_uid=job_uid,
        created=created or f"2026-01-01T00:00:{len(uid):02d}Z",
        started=True,
    )


def history(*indices: int) -> dict[str, Any]:
    return {"history": [{"index": i, "outcome": "Done"} for i in indices]}


def pod(uid: str, index: int = 1, state: dict[str, Any] | None = None, execution: str = "x") -> dict[str, Any]:
    """A run pod as the API server shows it."""
    return {
        "metadata": {
            "name": f"{execution}-r{index}-{uid}",
            "uid": uid,
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {
                "app.kubernetes.io/managed-by": manifests.MANAGED_BY,
                manifests.EXECUTION_LABEL: execution,
                manifests.RUN_LABEL: str(index),
            },
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": f"{execution}-r{index}", "uid": "j"}],
        },
        "status": {"containerStatuses": [{"name": manifests.CONTAINER, "state": state or {"waiting": {}}}]},
    }


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
COMPLETED = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:01Z"}}


# --- which pods are executions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "ran"),
    [
        ({"waiting": {"reason": "ContainerCreating"}}, False),
        (RUNNING, True),
        (COMPLETED, True),
        ({"terminated": {"exitCode": 137, "reason": "NodeAgentRestarted"}}, True),  # it was running
        ({"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}, False),  # deleted while pending
        ({"terminated": {"exitCode": 128, "reason": "StartError"}}, False),
    ],
)
def test_a_pod_counts_as_an_execution_once_its_container_started(state: dict[str, Any], ran: bool) -> None:
    assert container_started(pod("u", state=state)) is ran


def test_a_pod_stays_started_whatever_it_shows_later_and_pods_without_run_labels_are_no_runs() -> None:
    first = record_of(pod("u", 2, RUNNING))
    assert first is not None and first.started and (first.execution, first.index) == ("x", 2)
    assert first.job == "x-r2" and first.job_uid == "j"
    later = record_of(pod("u", 2, {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}), first)
    assert later is not None and later.started
    unlabelled = pod("v")
    del unlabelled["metadata"]["labels"][manifests.RUN_LABEL]
    assert record_of(unlabelled) is None


# --- the tally -------------------------------------------------------------------------------------


def test_every_run_once_is_fine() -> None:
    pods = [started("a", 1, "p1"), started("a", 2, "p2"), started("b", 1, "p3")]
    result = tally(pods, {"a": (2, 0), "b": (1, 0)}, {"a": history(1, 2), "b": history(1)})
    assert (result.expected, result.once, result.again_allowed, result.again_not_allowed, result.lost) == (
        3,
        3,
        0,
        0,
        0,
    )
    assert result.fine and result.problems == []


def test_pods_that_never_started_do_not_count_and_a_run_nobody_started_is_lost() -> None:
    never = PodRecord("a", 2, "p9", "a-r2-x", "a-r2", JOB_UID, "2026-01-01T00:00:09Z", started=False)
    result = tally([started("a", 1, "p1"), never], {"a": (2, 1)}, {"a": history(1)})
    assert (result.once, result.lost) == (1, 1)
    assert not result.fine and result.problems == ["a run 2: lost, no pod of it ever started"]


def test_a_pod_retry_in_the_same_job_within_retries_and_recorded_in_history_is_allowed() -> None:
    pods = [started("a", 1, "p1"), started("a", 1, "p22")]
    result = tally(pods, {"a": (1, 1)}, {"a": history(1)})
    assert (result.once, result.again_allowed, result.again_not_allowed) == (0, 1, 0)
    assert result.fine and "p1" in result.allowed[0] and "p22" in result.allowed[0]


@pytest.mark.parametrize(
    ("pods", "retries", "recorded", "why"),
    [
        ([started("a", 1, "p1"), started("a", 1, "p22")], 0, history(1), "more than spec.retries (0) allows"),
        (
            [started("a", 1, "p1"), started("a", 1, "p22"), started("a", 1, "p333")],
            1,
            history(1),
            "more than spec.retries (1) allows",
        ),
        (
            [started("a", 1, "p1"), started("a", 1, "p22", job_uid="job-uid-2")],
            3,
            history(1),
            "in 2 different Jobs",
        ),
        ([started("a", 1, "p1"), started("a", 1, "p22")], 2, history(), "the retry cannot be seen there"),
        ([started("a", 1, "p1"), started("a", 1, "p22")], 2, history(1, 1), "records the run 2 times"),
    ],
    ids=["no-retries", "past-retries", "second-job", "not-in-history", "twice-in-history"],
)
def test_a_second_execution_the_design_does_not_allow_is_counted_with_the_reason(
    pods: list[PodRecord], retries: int, recorded: dict[str, Any], why: str
) -> None:
    result = tally(pods, {"a": (1, retries)}, {"a": recorded})
    assert (result.again_allowed, result.again_not_allowed) == (0, 1)
    assert not result.fine
    assert why in result.problems[0] and "uid p1" in result.problems[0] and "uid p22" in result.problems[0]


def test_a_run_past_the_expected_ones_or_of_an_unexpected_execution_is_counted_as_unexpected() -> None:
    pods = [started("a", 1, "p1"), started("a", 2, "p2"), started("z", 1, "p3")]
    result = tally(pods, {"a": (1, 0)}, {"a": history(1, 2)})
    assert (result.expected, result.once, result.unexpected) == (1, 1, 2)
    assert not result.fine
    assert [line.split(":")[0] for line in result.problems] == ["a run 2", "z run 1"]


def test_an_execution_expected_to_run_nothing_must_run_nothing() -> None:
    result = tally([], {"w": (0, 0)}, {"w": {}})
    assert result.expected == 0 and result.fine


# --- the watch, against a fake API -----------------------------------------------------------------


class Response:
    """What `_preload_content=False` returns: a status, a body, a stream of lines."""

    def __init__(self, status: int, body: Any = None, lines: list[dict[str, Any]] | None = None) -> None:
        self.status = status
        self.data = json.dumps(body).encode()
        self.lines = lines or []

    def stream(self, amt: Any = None, decode_content: Any = None) -> Any:
        for line in self.lines:
            yield (json.dumps(line) + "\n").encode()
        time.sleep(0.05)  # a watch that times out

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


class Core:
    """A list and a watch of run pods: a first list, a watch that ends in 410 Gone, a relist, a quiet watch."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str | None]] = []
        self.relisted = threading.Event()
        self.resumed = threading.Event()

    def list_namespaced_pod(self, namespace: str, watch: bool = False, **kwargs: Any) -> Response:
        version = kwargs.get("resource_version")
        self.calls.append((watch, version))
        if not watch:
            if len([c for c in self.calls if not c[0]]) == 1:
                return Response(200, {"metadata": {"resourceVersion": "1"}, "items": [pod("a", 1)]})
            self.relisted.set()
            listed = [pod("a", 1, {"terminated": {"reason": "ContainerStatusUnknown"}}), pod("b", 2, COMPLETED)]
            return Response(200, {"metadata": {"resourceVersion": "9"}, "items": listed})
        if version == "1":
            return Response(
                200,
                lines=[
                    {"type": "MODIFIED", "object": pod("a", 1, RUNNING)},
                    {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}},
                ],
            )
        if version == "10":
            self.resumed.set()
        return Response(200, lines=[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "10"}}}])


def test_the_ledger_resumes_its_watch_relists_after_410_and_merges_pods_by_uid() -> None:
    core = Core()
    ledger = RunLedger(core, "ns").start()
    assert core.resumed.wait(10), core.calls
    ledger.stop(settle=0)
    assert ledger.gaps == 1
    assert [(p.uid, p.index, p.started) for p in ledger.pods] == [("a", 1, True), ("b", 2, True)]
    assert [p.uid for p in ledger.starts("x", 1)] == ["a"]
    assert core.calls[:4] == [(False, None), (True, "1"), (False, None), (True, "9")], "relisted after 410"
    assert core.relisted.is_set()
