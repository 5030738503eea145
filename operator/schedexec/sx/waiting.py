"""Waiting for an execution to finish, and following its runs' logs meanwhile (wiring).

The wait polls the execution once a second (a watch would save requests, but a poll survives a dropped
connection and an API server restart without resynchronising, and one GET a second is cheap) and ends
on a final phase or on the wait's own --timeout. With `--logs`, each run's log is streamed as the run
starts (as `tkn task start --showlog`), its lines prefixed with the run, by one thread per run, since a
run's log stream blocks until its container ends.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schedexec.sx import runlogs
from schedexec.sx.cluster import Cluster, ClusterError, NotFound
from schedexec.sx.progress import Console
from schedexec.sx.verdicts import Verdict, verdict

POLL_SECONDS = 1.0
LOG_DRAIN_SECONDS = 10.0
"""How long a finished wait still lets the last run's log stream drain."""


def now() -> datetime:
    return datetime.now(UTC)


def _job_ended(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def run_job(cluster: Cluster, execution: Mapping[str, Any], index: int) -> str | None:
    """Run `index`'s Job: recorded in the status, else found by its labels and owner."""
    return runlogs.recorded_job(execution, index) or runlogs.labelled_job(execution, index, cluster.jobs_of_run(index))


def show_run_log(
    cluster: Cluster,
    execution: Mapping[str, Any],
    index: int,
    write: Callable[[bytes], None],
    *,
    follow: bool,
    stopped: threading.Event | None = None,
) -> None:
    """Write run `index`'s log; with `follow`, each attempt's pod as it starts, until the run's Job ends.
    RunLogError when there is none to show."""
    job = run_job(cluster, execution, index)
    if job is None:
        raise runlogs.RunLogError(runlogs.gone_message(execution, index, None))
    if not follow:
        pod = runlogs.newest_pod(cluster.pods_of_job(job))
        if pod is None:
            raise runlogs.RunLogError(runlogs.gone_message(execution, index, job))
        if not runlogs.container_started(pod):
            raise runlogs.RunLogError(f"run {index}'s container has not started yet (-f waits for it)")
        for chunk in cluster.log(pod["metadata"]["name"], follow=False):
            write(chunk)
        return
    streamed: set[str] = set()
    while True:
        pods = sorted(cluster.pods_of_job(job), key=_created)
        fresh = [p for p in pods if p["metadata"]["name"] not in streamed and runlogs.container_started(p)]
        for pod in fresh:
            streamed.add(pod["metadata"]["name"])
            for chunk in cluster.log(pod["metadata"]["name"], follow=True):
                write(chunk)
        if fresh:
            continue
        found = cluster.job(job)
        if found is None or _job_ended(found) or (stopped is not None and stopped.is_set()):
            if not streamed:
                raise runlogs.RunLogError(runlogs.gone_message(execution, index, job))
            return
        time.sleep(POLL_SECONDS)


class LineWriter:
    """Bytes of a log stream to whole, prefixed lines on the console (UTF-8 split across chunks kept)."""

    def __init__(self, console: Console, prefix: str) -> None:
        self.console, self.prefix = console, prefix
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""

    def __call__(self, chunk: bytes) -> None:
        self.pending += self.decoder.decode(chunk)
        *lines, self.pending = self.pending.split("\n")
        if lines:
            self.console.log("".join(f"{self.prefix}{line}\n" for line in lines))

    def flush(self) -> None:
        self.pending += self.decoder.decode(b"", final=True)
        if self.pending:
            self.console.log(f"{self.prefix}{self.pending}\n")
            self.pending = ""


@dataclass
class Outcome:
    verdict: Verdict | None
    """None: the wait's own timeout passed first."""
    execution: dict[str, Any]


class Follower(threading.Thread):
    """Streams one run's log to the console while the wait goes on."""

    def __init__(self, cluster: Cluster, execution: Mapping[str, Any], index: int, console: Console) -> None:
        super().__init__(daemon=True, name=f"logs-run-{index}")
        self.cluster, self.execution, self.index, self.console = cluster, execution, index, console
        self.stopped = threading.Event()

    def run(self) -> None:
        writer = LineWriter(self.console, f"[run {self.index}] ")
        try:
            show_run_log(self.cluster, self.execution, self.index, writer, follow=True, stopped=self.stopped)
        except (runlogs.RunLogError, ClusterError) as exc:
            self.console.note(f"[run {self.index}] {exc}")
        finally:
            writer.flush()


class Deleted(ClusterError):
    """The execution was there and is gone before the wait read its final phase."""


def deleted_message(name: str) -> str:
    return f"error: sx/{name} was deleted before its outcome was read (its ttlSecondsAfterFinished?)"


def wait(
    cluster: Cluster,
    name: str,
    timeout: float | None,
    console: Console,
    *,
    logs: bool = False,
    seen: bool = False,
) -> Outcome:
    """Poll `name` until it finishes or `timeout` seconds pass, showing progress (and the runs' logs).

    An execution not found at the first poll is NotFound, as kubectl says it; one found before (or `seen`:
    just created) and then not found was deleted before its final phase was read, most likely by its own
    spec.ttlSecondsAfterFinished (0 or a few seconds): `Deleted`, since its outcome can no longer be known."""
    deadline = None if timeout is None else time.monotonic() + timeout
    followers: dict[int, Follower] = {}
    gone = False
    try:
        while True:
            try:
                execution = cluster.get(name)
            except NotFound:
                if not seen:
                    raise
                gone = True
                break
            seen = True
            current = ((execution.get("status") or {}).get("currentRun") or {}).get("index")
            if logs and isinstance(current, int) and current not in followers:
                followers[current] = Follower(cluster, execution, current, console)
                followers[current].start()
            ended = verdict(execution)
            if ended is not None or (deadline is not None and time.monotonic() >= deadline):
                break
            console.status(execution, now())
            time.sleep(POLL_SECONDS)
        drain = time.monotonic() + LOG_DRAIN_SECONDS
        for follower in followers.values():
            follower.stopped.set()
            follower.join(max(drain - time.monotonic(), 0.0))
        if gone:
            raise Deleted(deleted_message(name))
        return Outcome(ended, execution)
    finally:
        console.close()
