"""The controller's wiring with a fake cluster: effects in order, errors survived, slots counted."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from schedexec import decisions, kube, manifests, models, runs
from schedexec.api import results
from schedexec.controller import Controller
from schedexec.kube import Conflict, JobNameTaken, JobRejected
from schedexec.reconciler import NotLeading, status_document
from schedexec.writes import Seen
from schedexec_runner import envelope, frame
from tests.unit.builders import POD_DEFAULTS, POLICY, pod_defaults


class FakeCluster:
    def __init__(self, fail_with: list[Exception] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_with = fail_with or []
        self.version = 10
        self.log: str | None = None
        self.latest: dict[str, dict[str, Any]] = {}
        self.existing: set[str] = set()
        """Jobs already there: creating one answers 409 (the same run, adopted)."""
        self.gone: set[str] = set()
        """Executions deleted on the API server (a GET answers 404)."""
        self.fence: kube.Fence | None = None

    def _maybe_fail(self) -> None:
        if self.fail_with:
            raise self.fail_with.pop(0)

    async def create_job(self, manifest: dict[str, Any]) -> bool:
        self._maybe_fail()
        self.calls.append(("create_job", manifest["metadata"]["name"]))
        return manifest["metadata"]["name"] not in self.existing

    async def write_status(self, execution: models.ScheduledExecution, status: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("write_status", status["phase"]))
        self.version += 1
        body = execution.model_dump(mode="json", by_alias=True)
        body["metadata"]["resourceVersion"] = str(self.version)
        body["status"] = {k: v for k, v in status.items() if v is not None}
        self.latest[body["metadata"]["name"]] = body
        return body

    async def post_event(self, execution: models.ScheduledExecution, type_: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The execution as the API server has it: as last written here, else as first created."""
        self.calls.append(("get_execution", name))
        if name in self.gone:
            return None
        return self.latest.get(name) or body(name)

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        self.calls.append(("delete_job", name))

    async def get_job(self, namespace: str, name: str) -> None:
        return None

    async def run_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        self.calls.append(("run_pods", job))
        return []

    async def pod_log(
        self, namespace: str, pod: str, container: str, limit_bytes: int, tail_lines: int | None = None
    ) -> str | None:
        """As the kubelet answers: the last `tail_lines` lines, then at most `limit_bytes` of them."""
        self.calls.append(("pod_log", pod))
        if self.log is None or tail_lines is None:
            return self.log
        tail = "".join(self.log.splitlines(keepends=True)[-tail_lines:])
        return tail.encode("utf-8", "surrogateescape")[:limit_bytes].decode("utf-8", errors="replace")

    async def pod_events(self, namespace: str, pod_uid: str, reason: str) -> list[dict[str, Any]]:
        self.calls.append(("pod_events", pod_uid))
        return []


def jn(execution: str, index: int) -> str:
    """The name of run `index`'s Job of execution `execution` (uid `uid-<execution>`, as `body` makes it)."""
    return manifests.job_name(execution, f"uid-{execution}", index)


def body(name: str = "a") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1", "generation": 1},
        "spec": {"component": {"image": "img"}, "method": "m"},
    }


def controller(cluster: FakeCluster, max_running: int = 10) -> Controller:
    return Controller(cluster, POLICY, POD_DEFAULTS, max_running=max_running, workers=2)  # type: ignore[arg-type]


def observe(c: Controller, execution: models.ScheduledExecution) -> runs.RunObservation:
    return asyncio.run(c.reconciler.observe(execution))


async def settle(c: Controller, seconds: float = 0.3) -> None:
    """Let the workers run `seconds`, the Job and pod streams having listed (the test feeds their events)."""
    c.caches_listed()
    task = asyncio.create_task(c.run())
    await asyncio.sleep(seconds)
    task.cancel()


def test_a_new_execution_creates_its_job_before_the_status_that_names_it() -> None:
    cluster = FakeCluster()
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body())
        await settle(c)

    asyncio.run(scenario())
    effects = [call for call in cluster.calls if call[0] != "get_execution"]
    assert effects[:2] == [("create_job", jn("a", 1)), ("write_status", "Running")]
    assert ("event", "RunStarted") not in cluster.calls, "progress is logged, not posted as an Event"
    assert c.slots.holders == {"ns/a"}


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientConnectionError("refused"),
        TimeoutError(),
        kube.APIError({"kind": "Status", "message": "etcd is sad"}, status=500, headers={}),
        Conflict("ns/a"),
    ],
)
def test_api_errors_are_retried_and_never_kill_the_workers(error: Exception) -> None:
    cluster = FakeCluster(fail_with=[error])
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body())
        c.execution_event(None, body("b"))
        await settle(c, 1.5)

    asyncio.run(scenario())
    assert ("create_job", jn("a", 1)) in cluster.calls and ("create_job", jn("b", 1)) in cluster.calls


def test_the_run_slot_limit_queues_the_excess_and_a_deletion_frees_a_slot() -> None:
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        c.execution_event(None, body("b"))
        await settle(c)
        assert [x for x in cluster.calls if x[0] == "create_job"] == [("create_job", jn("a", 1))]
        assert list(c.slots.waiting) == ["ns/b"]
        c.execution_event("DELETED", body("a"))
        await settle(c)

    asyncio.run(scenario())
    assert ("create_job", jn("b", 1)) in cluster.calls
    assert c.slots.holders == {"ns/b"} and not c.slots.waiting


def test_the_status_document_is_complete_so_a_replace_drops_what_became_empty() -> None:
    status = models.ScheduledExecutionStatus(phase=models.Phase.WAITING, runs=1, next_args={"only": 1})
    document = status_document(status)
    assert document["phase"] == "Waiting" and document["nextArgs"] == {"only": 1}
    assert "currentRun" not in document and "result" not in document


def test_a_queued_execution_that_ends_leaves_the_queue_so_the_next_one_gets_the_slot() -> None:
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            c.execution_event(None, body(name))
            await settle(c, 0.1)
        assert list(c.slots.waiting) == ["ns/b", "ns/c"]
        written = c.reconciler.newest("ns/b")
        meta = {**written["metadata"], "generation": 2, "resourceVersion": "100"}  # a spec change bumps both
        cancelled = written | {"metadata": meta, "spec": {**body("b")["spec"], "cancel": True}}
        c.execution_event(None, cancelled)
        await settle(c, 0.2)
        assert list(c.slots.waiting) == ["ns/c"]
        c.execution_event("DELETED", body("a"))
        await settle(c, 0.3)

    asyncio.run(scenario())
    assert ("create_job", jn("c", 1)) in cluster.calls
    assert ("create_job", jn("b", 1)) not in cluster.calls


def job(name: str, owner: str) -> dict[str, Any]:
    reference = {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": owner, "uid": f"uid-{owner}"}
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"job-{name}", "ownerReferences": [reference]}}


def test_stray_jobs_of_an_execution_are_deleted_once_and_other_executions_jobs_are_left_alone() -> None:
    """A Job created just before a crash, that no run needs, is deleted; another execution's Job is not."""
    cluster = FakeCluster()
    c = controller(cluster)

    async def scenario() -> None:
        c.job_event("ADDED", job(jn("a", 7), "a"))  # a's, but its status will name a-r1
        c.job_event("ADDED", job(jn("b", 1), "b"))
        c.execution_event(None, body("a"))
        await settle(c)
        c.job_event("ADDED", job(jn("a", 1), "a"))  # run 1's Job, as the watch shows it; reconciles a again
        await settle(c)
        c.job_event("DELETED", job(jn("a", 7), "a"))

    asyncio.run(scenario())
    deleted = [name for call, name in cluster.calls if call == "delete_job"]
    assert deleted == [jn("a", 7)]
    assert f"ns/{jn('a', 7)}" not in c.store.jobs and c.store._jobs_of == {
        "uid-a": {f"ns/{jn('a', 1)}"},
        "uid-b": {f"ns/{jn('b', 1)}"},
    }


def test_no_reconcile_runs_before_the_job_and_pod_streams_have_listed() -> None:
    cluster = FakeCluster()
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        task = asyncio.create_task(c.run())
        await asyncio.sleep(0.2)
        assert cluster.calls == [], "a reconcile decided on a store without the Jobs"
        c.caches_listed()
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(scenario())
    assert ("create_job", jn("a", 1)) in cluster.calls


def test_a_run_whose_job_no_status_names_yet_takes_its_slot_before_any_other_execution() -> None:
    """A stopped operator created a's run 1 Job and never named it; its replacement lists b (which sorts first)
    and a before the Jobs: once the Jobs are listed, a's run holds the only slot and b waits, whatever order
    the workers take them in."""
    cluster = FakeCluster()
    cluster.existing.add(jn("a", 1))
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        c.execution_event(None, body("b"))
        c.execution_event(None, body("a"))
        c.job_event(None, job(jn("a", 1), "a"))
        await settle(c)

    asyncio.run(scenario())
    assert ("create_job", jn("a", 1)) in cluster.calls, "a's run was adopted"
    assert ("create_job", jn("b", 1)) not in cluster.calls, "b took a slot that a's running pod holds"
    assert c.slots.holders == {"ns/a"} and list(c.slots.waiting) == ["ns/b"]


def test_an_execution_seen_after_the_listing_with_its_next_runs_job_there_holds_a_slot_at_once() -> None:
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)
    c.caches_listed()
    c.job_event(None, job(jn("a", 2), "a"))
    c.execution_event(None, body("a") | {"status": {"phase": "Waiting", "runs": 1}})
    c.execution_event(None, body("b") | {"status": {"phase": "Succeeded", "runs": 1}})
    c.job_event(None, job(jn("b", 2), "b"))  # a stray of a finished execution: no run
    c.execution_event(None, body("c"))
    assert c.slots.holders == {"ns/a"}


def run_pod(name: str, job_name: str, owner: str, **status: Any) -> dict[str, Any]:
    """A pod of Job `job_name` (of execution `owner`), as the pod watch shows it."""
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"pod-{name}",
            "resourceVersion": str(status.pop("rv", 1)),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {manifests.EXECUTION_LABEL: owner, "batch.kubernetes.io/job-name": job_name},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": f"job-{job_name}"}],
        },
        "spec": {"nodeName": "n", "containers": [{"name": manifests.CONTAINER, "image": "img"}]},
        "status": status,
    }


def test_an_adopted_job_that_finished_before_the_status_named_it_is_seen_without_another_event() -> None:
    """An operator killed between creating run 1's Job and naming it in status; the Job finishes; its replacement
    lists the finished Job and pod before it starts the run, adopts the Job (409) and must still end the run,
    though no watch event of that Job or pod will ever come again."""
    cluster = FakeCluster()
    cluster.existing.add(jn("a", 1))
    c = controller(cluster)
    done = job(jn("a", 1), "a") | {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    terminated = {"terminated": {"exitCode": 0, "message": '{"v":1,"outcome":"done","result":1}'}}
    finished = {"phase": "Succeeded", "containerStatuses": [{"name": "run", "state": terminated}]}

    async def scenario() -> None:
        c.job_event(None, done)
        c.pod_event(None, run_pod("a-r1-x", jn("a", 1), "a", **finished))
        c.execution_event(None, body("a"))
        await settle(c)

    asyncio.run(scenario())
    writes = [phase for call, phase in cluster.calls if call == "write_status"]
    assert writes == ["Running", "Succeeded"]
    assert cluster.latest["a"]["status"]["result"] == 1


def test_pod_events_reconcile_the_owning_execution_only_when_something_it_reads_changed() -> None:
    c = controller(FakeCluster())
    c.execution_event(None, body("a"))
    c.job_event("ADDED", job(jn("a", 1), "a"))
    c.queue = type(c.queue)()  # start from an empty queue
    waiting = {
        "phase": "Pending",
        "containerStatuses": [{"name": "run", "state": {"waiting": {"reason": "ErrImagePull"}}}],
    }
    c.pod_event("ADDED", run_pod("a-r1-x", jn("a", 1), "a", **waiting))
    assert len(c.queue) == 1
    c.queue = type(c.queue)()
    c.pod_event("MODIFIED", run_pod("a-r1-x", jn("a", 1), "a", rv=2, **waiting))
    assert len(c.queue) == 0, "a resourceVersion bump alone changes nothing the decision reads"
    c.pod_event("MODIFIED", run_pod("a-r1-x", jn("a", 1), "a", rv=3, phase="Running"))
    assert len(c.queue) == 1
    assert [p["metadata"]["name"] for p in c.store.pods_of(c.store.jobs[f"ns/{jn('a', 1)}"])] == ["a-r1-x"]
    c.pod_event("DELETED", run_pod("a-r1-x", jn("a", 1), "a", rv=4))
    assert c.store.pods == {} and c.store._pods_of == {}


def test_observing_a_run_reads_its_pods_from_the_cache_and_lists_only_when_the_cache_lags() -> None:
    cluster = FakeCluster()
    c = controller(cluster)
    status = {
        "phase": "Running",
        "runs": 0,
        "startedAt": "2026-01-01T00:00:00Z",
        "deadline": "2026-01-01T01:00:00Z",
        "currentRun": {"index": 1, "job": jn("a", 1), "startedAt": "2026-01-01T00:00:00Z"},
    }
    ex = models.ScheduledExecution.model_validate(body("a") | {"status": status})
    waiting = {
        "phase": "Pending",
        "containerStatuses": [{"name": "run", "state": {"waiting": {"reason": "ErrImagePull"}}}],
    }
    active = job(jn("a", 1), "a") | {"status": {"active": 1}}
    c.job_event("ADDED", active)
    c.pod_event("ADDED", run_pod("a-r1-x", jn("a", 1), "a", **waiting))
    observed = observe(c, ex)
    assert observed.state is runs.RunState.ACTIVE
    assert observed.waiting is not None and observed.waiting.reason == "ErrImagePull"
    assert cluster.calls == [], "no API call to see an active run's pod"
    done = job(jn("a", 1), "a") | {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    c.job_event("MODIFIED", done | {"metadata": {**done["metadata"], "resourceVersion": "2"}})
    observe(c, ex)
    assert cluster.calls == [("run_pods", f"job-{jn('a', 1)}")], "the pod watch has not shown the finished pod yet"
    terminated = {"terminated": {"exitCode": 0, "message": '{"v":1,"outcome":"done","result":1}'}}
    finished = {"phase": "Succeeded", "containerStatuses": [{"name": "run", "state": terminated}]}
    c.pod_event("MODIFIED", run_pod("a-r1-x", jn("a", 1), "a", rv=2, **finished))
    assert observe(c, ex).envelope == envelope.Done(1)
    assert cluster.calls == [("run_pods", f"job-{jn('a', 1)}")], "now the cache accounts for the Job"


def test_a_pod_stuck_before_its_volumes_are_mounted_has_its_failed_mounts_read_at_most_every_few_seconds() -> None:
    cluster = FakeCluster()
    c = controller(cluster)
    status = {
        "phase": "Running",
        "startedAt": "2020-01-01T00:00:00Z",
        "currentRun": {"index": 1, "job": jn("a", 1), "startedAt": "2020-01-01T00:00:00Z"},
    }
    ex = models.ScheduledExecution.model_validate(body("a") | {"status": status})
    c.job_event("ADDED", job(jn("a", 1), "a") | {"status": {"active": 1}})
    sandbox = [{"type": "PodReadyToStartContainers", "status": "False"}]  # the kubelet is still setting it up
    stuck = run_pod("a-r1-x", jn("a", 1), "a", phase="Pending", conditions=sandbox)  # created 2020: long past the grace
    stuck["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    c.pod_event("ADDED", stuck)
    assert observe(c, ex).waiting is not None
    observe(c, ex)
    assert cluster.calls == [("pod_events", "pod-a-r1-x")]


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (JobRejected(422, 'Job.batch jn("a", 1) is invalid: spec.template...: Invalid value: "lots"'), "JobRejected"),
        (
            JobRejected(403, 'jobs.batch jn("a", 1) is forbidden: exceeded quota: q, requested: count/jobs.batch=1'),
            "JobRejected",
        ),
        (JobNameTaken("Job ns/a-r1 exists and is not owned by this execution"), "JobNameTaken"),
    ],
)
def test_a_job_refused_for_good_fails_the_execution_at_once_instead_of_retrying(
    refusal: Exception, reason: str
) -> None:
    cluster = FakeCluster(fail_with=[refusal])
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        c.execution_event(None, body("b"))
        await settle(c, 0.5)

    asyncio.run(scenario())
    assert ("write_status", "Failed") in cluster.calls and ("event", reason) in cluster.calls
    assert c.reconciler.newest("ns/a")["status"]["error"]["reason"] == reason
    assert ("create_job", jn("b", 1)) in cluster.calls, "the refused run's slot went to the next execution"
    assert c._failures == {}, "no backoff: nothing is retried"


async def run_a(c: Controller, pod: dict[str, Any] | None = None) -> None:
    """Execution a's run 1 starts, and its Job and running pod reach the caches."""
    c.execution_event(None, body("a"))
    await settle(c, 0.2)
    c.job_event("ADDED", job(jn("a", 1), "a"))
    c.pod_event("ADDED", pod or run_pod("a-r1-x", jn("a", 1), "a", phase="Running"))


def test_a_deleted_execution_keeps_its_run_slot_until_its_pod_is_gone() -> None:
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        await run_a(c)
        c.execution_event(None, body("b"))
        await settle(c, 0.2)
        c.execution_event("DELETED", body("a"))
        c.job_event("DELETED", job(jn("a", 1), "a"))  # the garbage collector deletes the Job first
        await settle(c, 0.2)
        assert ("create_job", jn("b", 1)) not in cluster.calls, "a's pod still runs: its slot is not free"
        c.pod_event("DELETED", run_pod("a-r1-x", jn("a", 1), "a", rv=2, phase="Running"))
        await settle(c, 0.2)

    asyncio.run(scenario())
    assert ("create_job", jn("b", 1)) in cluster.calls


def test_what_a_relist_no_longer_shows_is_handled_as_deleted_and_frees_its_slot() -> None:
    """Execution a, its Job and its running pod are deleted while the watches are away (410 Gone, then a
    relist): no DELETED event comes. The relists' keys say so; b gets the slot, and another namespace's
    objects are left alone (x runs there, in the second slot)."""
    cluster = FakeCluster()
    c = controller(cluster, max_running=2)
    other = body("x") | {"metadata": {**body("x")["metadata"], "namespace": "elsewhere"}}

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        c.execution_event(None, other)
        await settle(c, 0.2)
        c.job_event("ADDED", job(jn("a", 1), "a"))
        c.pod_event("ADDED", run_pod("a-r1-x", jn("a", 1), "a", phase="Running"))
        c.execution_event(None, body("b"))
        await settle(c, 0.2)
        assert ("create_job", jn("b", 1)) not in cluster.calls
        c.relisted(models.PLURAL, "ns", frozenset({"ns/b"}))
        c.relisted("jobs", "ns", frozenset())
        await settle(c, 0.2)
        assert ("create_job", jn("b", 1)) not in cluster.calls, "a's pod is still listed: its slot is not free"
        c.relisted("pods", "ns", frozenset())
        await settle(c, 0.2)

    asyncio.run(scenario())
    assert set(c.store.executions) == {"ns/b", "elsewhere/x"}
    assert not c.store.jobs and not c.store.pods
    assert ("create_job", jn("b", 1)) in cluster.calls, "the vanished pod's slot went to b"


class SlowJobReads(FakeCluster):
    """Reading a Job takes a while, during which other events are handled (as on the event loop)."""

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:  # type: ignore[override]
        await asyncio.sleep(0.1)
        return job(name, "a") | {"status": {"active": 1}}


def test_an_execution_deleted_while_its_reconcile_awaits_the_api_keeps_no_slot() -> None:
    """a's run is named in its status, its Job not yet in the cache: the next reconcile reads the Job; a's
    deletion arrives meanwhile. Nothing may hold a's slot afterwards (it would be held for good)."""
    cluster = SlowJobReads()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        await settle(c, 0.3)  # a-r1 created and named: Running
        c.queue.add("ns/a")
        task = asyncio.create_task(c.run())
        await asyncio.sleep(0.05)  # the reconcile is reading a-r1
        c.execution_event("DELETED", cluster.latest["a"])
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(scenario())
    assert [phase for call, phase in cluster.calls if call == "write_status"] == ["Running"]
    assert not c.slots.holders


def test_forgetting_a_draining_execution_again_keeps_its_slot_until_its_pod_is_gone() -> None:
    """a is deleted while its pod runs (its slot drains); a 404 forgets it again: b still waits for the pod.
    Its pod then vanishes during a watch gap, with no Job owner left on it: the relist frees the slot."""
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)
    orphan = run_pod("a-r1-x", jn("a", 1), "a", phase="Running")
    orphan["metadata"]["ownerReferences"] = []  # the pod names its Job by label only

    async def scenario() -> None:
        await run_a(c, orphan)
        c.execution_event(None, body("b"))
        c.execution_event("DELETED", body("a"))
        c.forget("ns/a")
        await settle(c, 0.2)
        assert ("create_job", jn("b", 1)) not in cluster.calls, "a's pod still runs: its slot is not free"
        c.relisted("pods", "ns", frozenset())
        await settle(c, 0.2)

    asyncio.run(scenario())
    assert not c.store.pods and not c.store.pods_left({f"ns/{jn('a', 1)}"})
    assert ("create_job", jn("b", 1)) in cluster.calls


def test_an_execution_made_again_and_deleted_while_the_first_ones_pod_drains_is_forgotten_too() -> None:
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        await run_a(c)
        c.execution_event("DELETED", body("a"))
        again = body("a") | {"metadata": {**body("a")["metadata"], "uid": "uid-a2", "resourceVersion": "5"}}
        c.execution_event("ADDED", again)
        c.execution_event("DELETED", again)

    asyncio.run(scenario())
    assert "ns/a" not in c.store.executions, "the second a is gone too"
    assert c.slots.holders == {"ns/a"}, "the first a's pod still runs"
    c.pod_event("DELETED", run_pod("a-r1-x", jn("a", 1), "a", rv=2, phase="Running"))
    assert not c.slots.holders


def test_a_watch_event_is_kept_unless_it_echoes_the_operators_own_write() -> None:
    c = controller(FakeCluster())
    written = body("a") | {"status": {"phase": "Running"}}
    written["metadata"] = {**written["metadata"], "resourceVersion": "17"}
    c.reconciler.writes.recorded(written)
    assert c.reconciler.writes.echo(written) is Seen.OWN, "its own write: nothing to reconcile"
    c.reconciler.writes.recorded(written)
    squashed = written | {"metadata": {**written["metadata"], "resourceVersion": "19"}}
    c.execution_event("MODIFIED", squashed)
    assert c.reconciler.writes.echo(squashed) is Seen.NEW, (
        "the watch may squash the echo of our write with a later event: what comes is kept"
    )
    newest = c.reconciler.newest("ns/a")
    assert newest is not None and newest["metadata"]["resourceVersion"] == "19"


def test_the_echo_of_an_earlier_own_write_neither_rewinds_the_cache_nor_takes_a_slot_again() -> None:
    """A run ends: the operator wrote Running (rv 17), then Succeeded (rv 18) and freed the slot. The watch
    then delivers rv 17: it was taken as news, the cache went back to Running and the execution held a slot
    again (found while reviewing the concurrency limit; issue 26)."""
    c = controller(FakeCluster())
    running = body("a") | {"status": RUNNING_A1}
    running["metadata"] = {**running["metadata"], "resourceVersion": "17"}
    succeeded = body("a") | {"status": {"phase": "Succeeded", "runs": 1}}
    succeeded["metadata"] = {**succeeded["metadata"], "resourceVersion": "18"}
    c.reconciler.writes.recorded(running)
    c.reconciler.writes.recorded(succeeded)
    c.execution_event("MODIFIED", running)
    newest = c.reconciler.newest("ns/a")
    assert newest is not None and newest["status"]["phase"] == "Succeeded" and "ns/a" not in c.slots.holders
    foreign = succeeded | {"metadata": {**succeeded["metadata"], "resourceVersion": "16"}, "status": RUNNING_A1}
    c.execution_event("MODIFIED", foreign)  # a lagging event of someone else's: kept, as before
    c.execution_event("MODIFIED", succeeded)  # the echo of the newest write puts it back
    newest = c.reconciler.newest("ns/a")
    assert newest is not None and newest["status"]["phase"] == "Succeeded"
    assert c.store.executions["ns/a"]["status"]["phase"] == "Succeeded", "the watch wrote the store"
    assert c.reconciler.writes.echo(succeeded) is Seen.NEW, "nothing more awaited"


def test_a_lagging_cache_creates_no_job_it_reads_the_execution_afresh_first() -> None:
    """The cache still shows run 1 due, but the API server has it recorded and run 2 waiting: creating a-r1
    again would run run 1 twice."""
    cluster = FakeCluster()
    newer = body("a")
    newer["metadata"] = {**newer["metadata"], "resourceVersion": "9"}
    newer["status"] = {"phase": "Waiting", "runs": 1, "nextRunAt": "2999-01-01T00:00:00Z", "nextArgs": {}}
    cluster.latest["a"] = newer
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body("a"))  # resourceVersion 1: before run 1
        await settle(c, 0.3)

    asyncio.run(scenario())
    assert ("get_execution", "a") in cluster.calls
    assert not [call for call in cluster.calls if call[0] == "create_job"], cluster.calls
    assert c.reconciler.newest("ns/a")["status"]["runs"] == 1, "it went on from what the API server had"


def test_an_execution_deleted_behind_a_stale_cache_is_forgotten_once_not_read_again_and_again() -> None:
    """A relist does not report a deletion it missed, so the cache can hold an execution the API server no
    longer has: the read before creating its Job says so, and the controller forgets it."""
    cluster = FakeCluster()
    cluster.gone.add("a")
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        await settle(c, 0.5)

    asyncio.run(scenario())
    assert not [call for call in cluster.calls if call[0] == "create_job"], cluster.calls
    assert cluster.calls.count(("get_execution", "a")) == 1, cluster.calls
    assert "ns/a" not in c.store.executions
    assert not c.slots.holders


RUNNING_A1 = {"phase": "Running", "currentRun": {"index": 1, "job": jn("a", 1), "startedAt": "2026-01-01T00:00:00Z"}}


def logged_run(
    cluster: FakeCluster, result: Any, damage: Any = None, defaults: manifests.PodDefaults | None = None
) -> runs.RunObservation:
    """Observe a finished run whose outcome is framed in its pod's log (as the runner writes it)."""
    log = io.StringIO()
    pointer = frame.write(json.dumps(envelope.done(result)).encode(), log)
    cluster.log = log.getvalue() if damage is None else damage(log.getvalue())
    c = Controller(cluster, POLICY, defaults or POD_DEFAULTS, 10, workers=2)  # type: ignore[arg-type]
    done = job(jn("a", 1), "a") | {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    c.job_event("ADDED", done)
    statuses = [{"name": "run", "state": {"terminated": {"exitCode": 0, "message": pointer}}}]
    c.pod_event("ADDED", run_pod("a-r1-x", jn("a", 1), "a", phase="Succeeded", containerStatuses=statuses))
    return observe(c, models.ScheduledExecution.model_validate(body("a") | {"status": RUNNING_A1}))


def test_an_outcome_framed_in_the_pod_log_is_read_and_verified() -> None:
    cluster = FakeCluster()
    observed = logged_run(cluster, {"schema": "y" * 300_000})
    assert observed.envelope == envelope.Done({"schema": "y" * 300_000})
    assert ("pod_log", "a-r1-x") in cluster.calls


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda log: "\n".join(log.splitlines()[:-2]), "truncated"),
        (lambda log: log.replace("begin", "start"), "no frame"),
        (lambda log: None, "no frame"),  # the pod (and its log) is gone
    ],
)
def test_a_truncated_or_missing_frame_is_an_invalid_outcome_never_a_partial_result(damage: Any, problem: str) -> None:
    observed = logged_run(FakeCluster(), {"schema": "y" * 300_000}, damage)
    assert observed.envelope is None and observed.envelope_problem is not None
    assert problem in observed.envelope_problem
    ex = models.ScheduledExecution.model_validate(body("a") | {"status": RUNNING_A1})
    d = decisions.decide(ex, observed, datetime.now(UTC), True, POLICY)
    assert d.status.error is not None and d.status.error.reason == "InvalidEnvelope"


def test_a_framed_outcome_after_megabytes_of_output_is_read_from_the_logs_tail() -> None:
    """Issue 24: the log was read from its start, at most limit + 8 MiB: a frame after more output than that
    was dropped as InvalidEnvelope. Non-UTF-8 bytes before the frame do not matter either."""
    cluster = FakeCluster()
    noise = "\udcff" + "x" * 4095  # a byte that is not UTF-8 (0xff), then a long line
    observed = logged_run(cluster, {"schema": "y" * 300_000}, lambda log: (noise + "\n") * 3000 + log)
    assert observed.envelope == envelope.Done({"schema": "y" * 300_000})


def test_an_outcome_over_the_limit_fails_result_too_large_naming_the_limit() -> None:
    cluster = FakeCluster()
    observed = logged_run(cluster, "z" * 200_000, defaults=pod_defaults(max_result_bytes=100_000))
    assert isinstance(observed.envelope, envelope.Failure) and observed.envelope.reason == "ResultTooLarge"
    assert "the limit is 100000 bytes" in observed.envelope.message
    assert ("pod_log", "a-r1-x") not in cluster.calls, "nothing over the limit is read"


def test_a_jobs_active_count_changing_reconciles_nothing_but_its_end_does() -> None:
    c = controller(FakeCluster())
    c.execution_event(None, body("a"))
    c.job_event("ADDED", job(jn("a", 1), "a"))
    c.queue = type(c.queue)()
    c.job_event("MODIFIED", job(jn("a", 1), "a") | {"status": {"active": 1, "ready": 1}})
    assert len(c.queue) == 0, "nothing a decision reads changed"
    done = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    c.job_event("MODIFIED", job(jn("a", 1), "a") | {"status": done})
    assert len(c.queue) == 1
    c.queue = type(c.queue)()
    c.job_event("DELETED", job(jn("a", 1), "a") | {"status": done})
    assert len(c.queue) == 1, "a Job gone is always looked at (RunLost)"


def test_an_object_the_models_refuse_fails_once_with_invalid_spec_and_is_not_retried() -> None:
    cluster = FakeCluster()
    c = controller(cluster)
    broken = body("a")
    broken["spec"] = {"component": {"image": "img"}, "method": "has spaces"}  # e.g. written under an older schema

    async def scenario() -> None:
        c.execution_event(None, broken)
        await settle(c, 0.3)

    asyncio.run(scenario())
    assert ("write_status", "Failed") in cluster.calls and ("event", "InvalidSpec") in cluster.calls
    assert c._failures == {} and "ns/a" not in c.timers._due, "no backoff, no retry"


def test_a_replica_past_its_renew_deadline_deletes_nothing() -> None:
    """A leader frozen past its lease wakes up with a stale view: it may not delete a Job the new leader runs."""
    cluster = FakeCluster()
    c = controller(cluster)
    c.reconciler.may_act = lambda: False
    ex = models.ScheduledExecution.model_validate(body("a") | {"status": RUNNING_A1})
    decision = decisions.Decision(status=ex.status, delete_job=jn("a", 1))
    with pytest.raises(NotLeading):
        asyncio.run(c.reconciler.apply(ex, decision, datetime.now(UTC)))
    assert not [call for call in cluster.calls if call[0] in ("delete_job", "create_job")]


def test_the_next_runs_job_made_before_a_crash_is_adopted_never_deleted_and_made_again() -> None:
    """A previous operator created b-r1 and died before the status named it; every run slot is taken now.
    Deleting b-r1 as a stray and creating it again later would run run 1 twice."""
    cluster = FakeCluster()
    c = controller(cluster, max_running=1)

    async def scenario() -> None:
        c.execution_event(None, body("a"))
        await settle(c, 0.2)
        c.job_event("ADDED", job(jn("b", 1), "b"))
        c.execution_event(None, body("b"))
        await settle(c, 0.3)

    asyncio.run(scenario())
    assert ("delete_job", jn("b", 1)) not in cluster.calls
    assert ("create_job", jn("b", 1)) in cluster.calls, "started at once: its creation answers 409, the same run"
    assert c.slots.holders == {"ns/a", "ns/b"}, "it holds a slot past the limit: its pod runs already"


class ConfigMapApi:
    """kube.Api as reconciler.keep_result reaches it: ConfigMaps by name; a created one without a name gets
    `<generateName>drawn`."""

    def __init__(self, stored: dict[str, dict[str, Any]]) -> None:
        self.stored = stored

    async def call(self, method: str, url: str, payload: Any = None, tolerate: Any = (), **_: Any) -> kube.Answer:
        if method == "post":
            meta = payload["metadata"]
            name = meta.get("name") or f"{meta['generateName']}drawn"
            if name in self.stored:
                return kube.Answer(409, {"reason": "AlreadyExists"})
            self.stored[name] = payload | {"metadata": meta | {"name": name}}
            return kube.Answer(201, self.stored[name])
        raise AssertionError(f"the operator reads no ConfigMap (its role creates them only): {method} {url}")

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """As the REST API reads a result (schedexec.api.results)."""
        return self.stored.get(name)


@pytest.mark.parametrize("squatted", [False, True])
def test_a_large_result_is_kept_whole_even_when_someone_took_its_config_maps_name(squatted: bool) -> None:
    """The result's ConfigMap name derives from the execution's uid, so no other execution meets it; a user who
    read the uid may still create a ConfigMap of that name first. It is neither reused nor overwritten: the
    result goes to a ConfigMap the API server names, the status names that one, and the REST API reads the
    result back whole (owner and sha256 checked)."""
    result = {"schema": "y" * 300_000}
    name = f"a-{manifests.execution_tag('uid-a')}-result"
    forged = {"metadata": {"name": name, "ownerReferences": [{"uid": "uid-mallory"}]}, "data": {"result.json": "1"}}
    stored = {name: forged} if squatted else {}
    cluster = FakeCluster()
    cluster.api = ConfigMapApi(stored)  # type: ignore[attr-defined]
    c = controller(cluster)
    c.execution_event(None, body("a") | {"status": RUNNING_A1})
    done = job(jn("a", 1), "a") | {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    c.job_event("ADDED", done)
    log = io.StringIO()
    pointer = frame.write(json.dumps(envelope.done(result)).encode(), log)
    cluster.log = log.getvalue()
    statuses = [{"name": "run", "state": {"terminated": {"exitCode": 0, "message": pointer}}}]
    c.pod_event("ADDED", run_pod("a-r1-x", jn("a", 1), "a", phase="Succeeded", containerStatuses=statuses))
    asyncio.run(c.reconciler.reconcile("ns/a"))
    written = cluster.latest["a"]
    assert written["status"]["phase"] == "Succeeded"
    ref = results.reference(written)
    assert ref is not None and ref.config_map == (f"{name}-drawn" if squatted else name)
    assert stored.get(name) == forged or not squatted, "the squatter's ConfigMap is left as it was"
    kept = asyncio.run(results.kept_result(cluster.api, written, ref))  # type: ignore[attr-defined]
    assert json.loads(kept) == result
