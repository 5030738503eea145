"""Every execution of a run, counted from outside the component and the operator.

A component's own record of the run indices it saw (`{"seen": [1..N]}`)
carries one envelope per index, so an index whose Job or pod ran twice still
ends as `[1..N]`. The `RunLedger` watches the run pods of one namespace on
the API server instead and keeps one record per pod (by uid) whose container
ever started: each is one execution of its run index. `tally` then compares
them with what a scenario expected, run by run.

A second execution of a run index is allowed only as the design allows it:
a retry of the same Job's pod (the Job's backoffLimit is the execution's
`spec.retries`) after that pod died, and only if the execution's
`status.history` records that run index exactly once. `status.history` has
one record per run, not per attempt, so the attempts themselves are counted
here, not there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException

from schedexec import manifests, runs

NEVER_STARTED = frozenset({"ContainerStatusUnknown", "ContainerCannotRun", "StartError", "UnsupportedPodSpec"})
"""Reasons of a container terminated without having run (the kubelet's, and the node agent's)."""
WATCH_SECONDS = 10
"""Server-side timeout of one watch request; the watch resumes from the last resourceVersion after it."""
RELIST_AFTER_FAILURES = 25
"""Consecutive refusals by the API server to resume a watch (0.2 s apart) after which the ledger lists
again; an unreachable API server is simply retried."""


@dataclass(frozen=True)
class PodRecord:
    """One run pod as the ledger saw it, merged over every event and list that showed it."""

    execution: str
    """The pod's execution label (the execution's name, shortened only past 63 characters)."""
    index: int
    """The pod's run label."""
    uid: str
    name: str
    job: str | None
    job_uid: str | None
    created: str
    """The pod's creationTimestamp (RFC 3339)."""
    started: bool
    """Whether its container ever started: seen running, or terminated after it ran."""


def container_started(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's container has started, by its status alone."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if state.get("running"):
            return True
        terminated = state.get("terminated")
        if terminated and (terminated.get("startedAt") or terminated.get("reason") not in NEVER_STARTED):
            return True
    return False


def record_of(pod: Mapping[str, Any], earlier: PodRecord | None = None) -> PodRecord | None:
    """The pod as a record (None if it carries no run labels); `started` stays True once it was."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        index = int(labels[manifests.RUN_LABEL])
        execution = labels[manifests.EXECUTION_LABEL]
    except (KeyError, ValueError):
        return None
    return PodRecord(
        execution=execution,
        index=index,
        uid=meta.get("uid", ""),
        name=meta.get("name", ""),
        job=runs.pod_job(pod),
        job_uid=runs.pod_job_uid(pod),
        created=meta.get("creationTimestamp") or "",
        started=container_started(pod) or (earlier is not None and earlier.started),
    )


class RunLedger:
    """Records the run pods of `namespace` from a watch in a background thread, from `start()` to `stop()`.

    The watch resumes from the last resourceVersion it saw after a timeout or a broken connection; when
    that version is gone (410) it lists again, and the pods listed are merged by uid like any event.
    `gaps` counts those relists: a pod created and deleted within one could be missed."""

    def __init__(self, core: Any, namespace: str) -> None:
        self.core = core
        self.namespace = namespace
        self.selector = f"app.kubernetes.io/managed-by={manifests.MANAGED_BY}"
        self.gaps = 0
        self.errors: list[str] = []
        self._pods: dict[str, PodRecord] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self._listed = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> RunLedger:
        """Start watching; returns once the first list is in, so nothing created afterwards is missed."""
        self._thread = threading.Thread(target=self._follow, name=f"ledger-{self.namespace}", daemon=True)
        self._thread.start()
        if not self._listed.wait(60):
            raise RuntimeError(f"the run ledger could not list the pods of {self.namespace}: {self.errors[-3:]}")
        return self

    def stop(self, settle: float = 2.0) -> None:
        """Stop watching after `settle` seconds (for events already under way), then merge one last list:
        pods that still exist are in it whatever the watch saw."""
        if self._thread is None:
            return
        time.sleep(settle)
        self._stopped.set()
        response = self._response
        if response is not None:
            response.shutdown()  # unblocks the thread's read at once
        self._thread.join(timeout=WATCH_SECONDS + 30)
        self._thread = None
        self._merge(self._list()[0])

    # --- what it saw -----------------------------------------------------------------------------

    @property
    def pods(self) -> list[PodRecord]:
        """Every run pod seen, started or not, oldest first."""
        with self._lock:
            return sorted(self._pods.values(), key=lambda p: (p.created, p.name))

    def starts(self, execution: str, index: int) -> list[PodRecord]:
        """The pods of run `index` of `execution` whose container started: one per execution of the run."""
        return [p for p in self.pods if p.execution == execution and p.index == index and p.started]

    def tally(self, expected: Mapping[str, tuple[int, int]], statuses: Mapping[str, Mapping[str, Any]]) -> RunTally:
        """`tally` of what this ledger saw."""
        result = tally(self.pods, expected, statuses)
        result.gaps = self.gaps
        return result

    # --- the watch -------------------------------------------------------------------------------

    def _list(self) -> tuple[list[dict[str, Any]], str]:
        listed = self.core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _preload_content=False, _request_timeout=30
        )
        body = _json(listed)
        return body.get("items") or [], (body.get("metadata") or {}).get("resourceVersion", "")

    def _merge(self, pods: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            for pod in pods:
                uid = (pod.get("metadata") or {}).get("uid")
                if not uid:
                    continue
                record = record_of(pod, self._pods.get(uid))
                if record is not None:
                    self._pods[uid] = record

    def _follow(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stopped.is_set():
            try:
                if version is None:
                    pods, version = self._list()
                    self._merge(pods)
                    self._listed.set()
                version = self._watch_from(version)
                failures = 0
            except ApiException as exc:
                if exc.status == 410:  # the version is compacted away (or older than a new API server's cache)
                    self.gaps += 1
                    version = None
                else:
                    failures = self._failed(f"{exc.status} {exc.reason}", failures)
            except Exception as exc:  # unreachable (stopped, restarting), or the ledger stopping: resume
                self._failed(repr(exc), failures)
            if failures >= RELIST_AFTER_FAILURES and version is not None:
                self.gaps += 1
                version = None

    def _watch_from(self, version: str) -> str:
        """Follow the watch from `version` until it times out, breaks or the ledger stops; the last version."""
        response = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=self.selector,
            resource_version=version,
            allow_watch_bookmarks=True,
            watch=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=(5, WATCH_SECONDS + 20),
        )
        self._response = response
        try:
            _raise_for_status(response)
            for line in _event_lines(response):
                event = json.loads(line)
                kind, pod = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=pod.get("code"), reason=pod.get("message"))
                version = (pod.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self._merge([pod])
                if self._stopped.is_set():
                    break
        finally:
            self._response = None
            response.release_conn()
        return version

    def _failed(self, what: str, failures: int) -> int:
        """Note a failure (unless stopping) and pause briefly: the API server may be restarting."""
        if self._stopped.is_set():
            return failures
        self.errors.append(what)
        self._stopped.wait(0.2)
        return failures + 1


def _event_lines(response: Any) -> Iterator[bytes]:
    """The non-empty lines of a streamed response: one watch event each."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())


def _raise_for_status(response: Any) -> None:
    if not 200 <= response.status <= 299:
        raise ApiException(status=response.status, reason=response.data.decode(errors="replace")[:500])


def _json(response: Any) -> dict[str, Any]:
    try:
        _raise_for_status(response)
        return json.loads(response.data)  # type: ignore[no-any-return]
    finally:
        response.release_conn()


# --- the tally -----------------------------------------------------------------------------------


@dataclass
class RunTally:
    """Runs of a scenario by how often they executed, and why a run that is not fine is not."""

    expected: int = 0
    """Run indices expected to execute."""
    once: int = 0
    again_allowed: int = 0
    """Executed more than once, every extra attempt a retry of the same Job's pod within spec.retries, and
    status.history records the run index once."""
    again_not_allowed: int = 0
    """Executed more than once otherwise."""
    lost: int = 0
    """Expected, never started."""
    unexpected: int = 0
    """Started, but not one of the expected run indices (a run past the sequence's end, or of an execution
    the scenario did not expect to run)."""
    gaps: int = 0
    """Times the ledger had to list again (410 Gone): a pod created and deleted meanwhile could be missed."""
    problems: list[str] = field(default_factory=list)
    """One line per run counted as not allowed, lost or unexpected: execution, index, pods."""
    allowed: list[str] = field(default_factory=list)
    """One line per run counted as an allowed second attempt."""

    @property
    def fine(self) -> bool:
        return self.again_not_allowed == 0 and self.lost == 0 and self.unexpected == 0


def tally(
    pods: Iterable[PodRecord],
    expected: Mapping[str, tuple[int, int]],
    statuses: Mapping[str, Mapping[str, Any]],
) -> RunTally:
    """Compare the run pods that started with `expected` (execution name → (runs 1..n expected to execute,
    spec.retries)), using each execution's status (name → status, for status.history)."""
    started: dict[tuple[str, int], list[PodRecord]] = {}
    for pod in pods:
        if pod.started:
            started.setdefault((pod.execution, pod.index), []).append(pod)
    result = RunTally()
    for name, (n_runs, retries) in sorted(expected.items()):
        history = [record.get("index") for record in (statuses.get(name) or {}).get("history") or []]
        for index in range(1, n_runs + 1):
            result.expected += 1
            attempts = sorted(started.pop((name, index), []), key=lambda p: p.created)
            if not attempts:
                result.lost += 1
                result.problems.append(f"{name} run {index}: lost, no pod of it ever started")
            elif len(attempts) == 1:
                result.once += 1
            elif (why := _not_allowed(attempts, retries, history.count(index))) is None:
                result.again_allowed += 1
                result.allowed.append(f"{name} run {index}: {_describe(attempts)}")
            else:
                result.again_not_allowed += 1
                result.problems.append(f"{name} run {index}: ran {len(attempts)} times, {why}: {_describe(attempts)}")
    for (name, index), attempts in sorted(started.items()):
        result.unexpected += 1
        result.problems.append(
            f"{name} run {index}: not expected to run, ran {len(attempts)} times: {_describe(attempts)}"
        )
    return result


def _not_allowed(attempts: list[PodRecord], retries: int, in_history: int) -> str | None:
    """Why these attempts of one run are more than the design allows; None if they are within it."""
    jobs = {p.job_uid for p in attempts}
    if len(jobs) > 1:
        return f"in {len(jobs)} different Jobs (a pod retry stays in its Job; a second Job is a second run)"
    if len(attempts) - 1 > retries:
        return f"more than spec.retries ({retries}) allows"
    if in_history != 1:
        return (
            f"status.history records the run {in_history} times, so the retry cannot be seen there"
            if in_history == 0
            else f"status.history records the run {in_history} times"
        )
    return None


def _describe(attempts: list[PodRecord]) -> str:
    return ", ".join(f"pod {p.name} uid {p.uid} (Job {p.job} uid {p.job_uid}, created {p.created})" for p in attempts)
