"""An in-memory API server behind `kube.Cluster`'s methods, whose every call and watch event a test schedules.

The controller tests' FakeCluster answers at once and keeps no state the operator could race against. Proving
that the run-slot limit holds as users observe it (issue 26) needs the opposite: a server that stores each
execution's status with resourceVersions and refuses a write decided on an older one (409, kube.Conflict),
keeps Jobs and pods and lets them finish, and holds every answer and every watch event until the test lets it
go. A test then picks the order: API calls answered in any order (each call's effect happens when the server
takes the request, its answer comes back later), watch events delivered late, replayed or skipped by a relist,
Jobs finishing and executions deleted at any point. Nothing waits on the wall clock: a call waits on a future
the test resolves.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from schedexec import kube, manifests, models, runs
from schedexec.objects import owner_uids

NAMESPACE = "ns"
DONE = '{"v":1,"outcome":"done","result":1}'
"""A run's termination message: its outcome, done."""
STREAMS = (models.PLURAL, "jobs", "pods")


@dataclass
class Call:
    """An API call the server holds: first the request (its effect happens when it is let go), then its answer."""

    what: str
    future: asyncio.Future[None] = field(repr=False)


@dataclass
class Stream:
    """One watch stream: every event the server made, in order, and how far the operator has been told."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delivered: int = 0

    @property
    def behind(self) -> int:
        return len(self.events) - self.delivered


class FakeApiServer:
    """The API server, as kube.Cluster reaches it (namespace `ns` only)."""

    def __init__(self) -> None:
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self.executions: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.streams = {plural: Stream() for plural in STREAMS}
        self.held: list[Call] = []
        """Calls waiting for the test, oldest first."""

    # --- what the test does ----------------------------------------------------------------------

    def running(self) -> list[str]:
        """Names of the executions whose stored status says Running, as a user's `kubectl get` shows them."""
        return sorted(name for name, body in self.executions.items() if _phase(body) == "Running")

    def let_go(self, index: int) -> None:
        """Let held call `index` go on (the server takes its request, or its answer reaches the operator)."""
        self.held.pop(index).future.set_result(None)

    def create_execution(self, name: str) -> None:
        uid = f"uid-{name}-{next(self._uids)}"
        meta = {"name": name, "namespace": NAMESPACE, "uid": uid, "generation": 1}
        body = {"apiVersion": models.API_VERSION, "kind": models.KIND, "metadata": meta}
        body["spec"] = {"component": {"image": "img"}, "method": "m"}
        self._put(models.PLURAL, self.executions, name, body, "ADDED")

    def delete_execution_now(self, name: str) -> None:
        """A user deletes execution `name`; the garbage collector (`collect_garbage`) deletes its Jobs later."""
        self._drop(models.PLURAL, self.executions, name)

    def finish_run(self, job: str) -> None:
        """Job `job`'s pod ends, its outcome done; then the Job completes (two streams, two events)."""
        for pod in [pod for pod in self.pods.values() if runs.pod_job_uid(pod) == self.jobs[job]["metadata"]["uid"]]:
            terminated = {"terminated": {"exitCode": 0, "message": DONE}}
            pod["status"] = {
                "phase": "Succeeded",
                "containerStatuses": [{"name": manifests.CONTAINER, "state": terminated}],
            }
            self._put("pods", self.pods, pod["metadata"]["name"], pod, "MODIFIED")
        done = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        self._put("jobs", self.jobs, job, self.jobs[job] | {"status": done}, "MODIFIED")

    def job_of(self, execution: str, index: int = 1) -> str | None:
        """The name of the Job of run `index` of execution `execution` (by its labels), if there is one."""
        labels = {manifests.EXECUTION_LABEL: execution, manifests.RUN_LABEL: str(index)}
        return next(
            (name for name, job in self.jobs.items() if labels.items() <= job["metadata"]["labels"].items()), None
        )

    def running_jobs(self) -> list[str]:
        return sorted(name for name, job in self.jobs.items() if not job.get("status", {}).get("succeeded"))

    def garbage(self) -> list[tuple[str, str]]:
        """What the garbage collector would delete: Jobs whose execution is gone, pods whose Job is gone."""
        uids = {body["metadata"]["uid"] for body in self.executions.values()}
        job_uids = {job["metadata"]["uid"] for job in self.jobs.values()}
        jobs = [("jobs", name) for name, job in self.jobs.items() if not owner_uids(job) & uids]
        return jobs + [("pods", name) for name, pod in self.pods.items() if runs.pod_job_uid(pod) not in job_uids]

    def collect_garbage(self, plural: str, name: str) -> None:
        self._drop(plural, self.jobs if plural == "jobs" else self.pods, name)

    def listing(self, plural: str) -> list[dict[str, Any]]:
        """The stream's objects as a list (a relist) shows them now; the events before it are skipped."""
        stored = {models.PLURAL: self.executions, "jobs": self.jobs, "pods": self.pods}[plural]
        self.streams[plural].delivered = len(self.streams[plural].events)
        return [copy.deepcopy(body) for body in stored.values()]

    # --- kube.Cluster ----------------------------------------------------------------------------

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._hold(f"get_execution {name}")
        answer = copy.deepcopy(self.executions.get(name))
        await self._hold(f"answer get_execution {name}")
        return answer

    async def write_status(self, execution: models.ScheduledExecution, status: dict[str, Any]) -> dict[str, Any]:
        name = execution.metadata.name
        await self._hold(f"write_status {name} {status.get('phase')}")
        stored = self.executions.get(name)
        if stored is None:
            raise kube.Gone(execution.key)
        if stored["metadata"]["resourceVersion"] != execution.metadata.resource_version:
            raise kube.Conflict(execution.key)
        answer = self._put(models.PLURAL, self.executions, name, stored | {"status": status}, "MODIFIED")
        await self._hold(f"answer write_status {name}")
        return answer

    async def create_job(self, manifest: dict[str, Any]) -> bool:
        name = manifest["metadata"]["name"]
        await self._hold(f"create_job {name}")
        existing = self.jobs.get(name)
        if existing is not None:
            if manifest["metadata"]["ownerReferences"][0]["uid"] not in owner_uids(existing):
                raise kube.JobNameTaken(name)
            return False
        job = copy.deepcopy(manifest)
        job["metadata"]["uid"] = f"job-{name}-{next(self._uids)}"
        job["status"] = {"active": 1}
        self._put("jobs", self.jobs, name, job, "ADDED")
        pod_name = f"{name}-{next(self._uids)}"
        labels = {manifests.EXECUTION_LABEL: manifest["metadata"]["labels"][manifests.EXECUTION_LABEL]}
        labels["batch.kubernetes.io/job-name"] = name
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}
        pod = {
            "metadata": {
                "name": pod_name,
                "namespace": NAMESPACE,
                "uid": f"pod-{pod_name}",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": labels,
                "ownerReferences": [owner],
            },
            "spec": {"nodeName": "n", "containers": [{"name": manifests.CONTAINER, "image": "img"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": manifests.CONTAINER, "state": {"running": {}}}],
            },
        }
        self._put("pods", self.pods, pod_name, pod, "ADDED")
        await self._hold(f"answer create_job {name}")
        return True

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        await self._hold(f"delete_job {name}")
        job = self.jobs.get(name)
        if job is not None and uid in (None, job["metadata"]["uid"]):
            self._drop("jobs", self.jobs, name)  # its pods: by the garbage collector
        await self._hold(f"answer delete_job {name}")

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._hold(f"get_job {name}")
        return copy.deepcopy(self.jobs.get(name))

    async def run_pods(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        await self._hold(f"run_pods {job_uid}")
        return [copy.deepcopy(pod) for pod in self.pods.values() if runs.pod_job_uid(pod) == job_uid]

    async def post_event(self, execution: models.ScheduledExecution, type_: str, reason: str, message: str) -> None:
        await self._hold(f"post_event {execution.metadata.name} {reason}")

    async def delete_execution(self, execution: models.ScheduledExecution) -> None:
        await self._hold(f"delete_execution {execution.metadata.name}")
        if execution.metadata.name in self.executions:
            self._drop(models.PLURAL, self.executions, execution.metadata.name)

    async def pod_log(
        self, namespace: str, pod: str, container: str, limit_bytes: int, tail_lines: int | None = None
    ) -> str | None:
        return None

    async def pod_events(self, namespace: str, pod_uid: str, reason: str) -> list[dict[str, Any]]:
        return []

    # --- the store -------------------------------------------------------------------------------

    async def _hold(self, what: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held.append(Call(what, future))
        await future

    def _put(self, plural: str, stored: dict[str, Any], name: str, body: dict[str, Any], event: str) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        stored[name] = body
        self.streams[plural].events.append((event, copy.deepcopy(body)))
        return copy.deepcopy(body)

    def _drop(self, plural: str, stored: dict[str, Any], name: str) -> None:
        body = stored.pop(name)
        self.streams[plural].events.append(("DELETED", body))


def _phase(body: dict[str, Any]) -> str | None:
    phase: str | None = (body.get("status") or {}).get("phase")
    return phase
