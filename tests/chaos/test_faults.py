"""Faults under load: the operator killed at random and between creating a run's Job and naming it in
status, two replicas with the leader frozen past its lease, kube-apiserver restarted, the node agent
killed, pods deleted, the Job controller down (the watchdog).

Every scenario checks what users rely on: each execution reaches the right
final state, no Job is left behind (but the recorded runs' Jobs, kept for
their logs until status.history[].logsUntil), and every run index executed exactly
once, none lost. The runs are counted from outside by the run ledger
(tests/chaos/ledger.py, a watch on the run pods): a component's own record of
the indices it saw keeps one envelope per index and cannot show a repeat. A
second execution of a run counts as allowed only where the design allows one
(a pod of the run died and its Job retried it within `spec.retries`), and only
in the scenarios that kill pods. Sizes come from SCHEDEXEC_CHAOS_SCALE ("ci",
the default: small enough for CI; "full": `make chaos`). With
SCHEDEXEC_CHAOS_REPORT set, the figures are written there
(docs/reliability.md).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from schedexec import models
from schedexec_devcluster.binaries import KUBE_APISERVER, KUBE_CONTROLLER_MANAGER
from tests.chaos.hold import HeldWrite, StatusWriteHold
from tests.chaos.ledger import RunLedger, RunTally
from tests.chaos.report import Report
from tests.support import MAX_RUNNING, OVERDUE_GRACE_SECONDS, LocalCluster, Operator, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

FULL = os.environ.get("SCHEDEXEC_CHAOS_SCALE", "ci") == "full"
EXECUTIONS = 200 if FULL else 20
KILLS = 10 if FULL else 3
FREEZES = 4 if FULL else 2
IMAGE = "ghcr.io/schedexec/test-component:dev"
RUNS = 4  # countdown left=3: runs 1..4
LEASE_SECONDS = 15
"""The operator's leader lease (schedexec.leader.LEASE_SECONDS): a frozen leader is resumed only after it."""
FREEZE_SECONDS = 20
RETRIES = 1
"""spec.retries of the node-agent scenario's runs."""


def execution(name: str, method: str, args: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name},
        "spec": {"component": {"image": IMAGE}, "method": method, "args": args, **spec},
    }


def countdown(name: str) -> dict[str, Any]:
    """A polling sequence of RUNS runs, 1 s apart; its result lists every run index it saw."""
    return execution(name, "countdown", {"left": RUNS - 1, "every": 1}, timeoutSeconds=900)


def sleeper(name: str, seconds: float, retries: int, **spec: Any) -> dict[str, Any]:
    """One run that sleeps `seconds`, then succeeds."""
    return execution(name, "sleep", {"seconds": seconds}, retries=retries, timeoutSeconds=600, **spec)


def create_all(cluster: LocalCluster, namespace: str, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)


def list_executions(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    listed = cluster.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)
    return listed["items"]  # type: ignore[no-any-return]


def finished(item: dict[str, Any]) -> bool:
    return (item.get("status") or {}).get("phase") in {p.value for p in models.FINISHED_PHASES}


def all_finished(cluster: LocalCluster, namespace: str, n: int, timeout: float) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        items = list_executions(cluster, namespace)
        return items if sum(finished(i) for i in items) == n else None

    return wait_for(f"{n} executions to finish", done, timeout=timeout, interval=1)


def kept_for_logs(items: list[dict[str, Any]]) -> frozenset[str]:
    """The Jobs the finished executions `items` keep for their runs' logs: named in status.history with a
    logsUntil still ahead (SCHEDEXEC_RUN_RETENTION_SECONDS)."""
    now = dt.datetime.now(dt.UTC)
    return frozenset(
        record["job"]
        for item in items
        for record in item["status"].get("history", [])
        if record.get("job") and record.get("logsUntil") and dt.datetime.fromisoformat(record["logsUntil"]) > now
    )


def leftover_jobs(cluster: LocalCluster, namespace: str, items: list[dict[str, Any]] | None = None) -> list[str]:
    """Jobs not deleted nor being deleted, other than those the finished executions `items` keep for their
    runs' logs (kept_for_logs)."""
    kept = kept_for_logs(items or [])
    return [
        j.metadata.name
        for j in cluster.batch.list_namespaced_job(namespace).items
        if not j.metadata.deletion_timestamp and j.metadata.name not in kept
    ]


def wait_cleaned_up(cluster: LocalCluster, namespace: str, items: list[dict[str, Any]]) -> None:
    """Every Job is deleted but those of recorded runs kept for their logs: exactly the history's Jobs (a Job
    made before a crash and never recorded, or of a stopped run, goes)."""
    wait_for("finished runs' Jobs to be cleaned up", lambda: not leftover_jobs(cluster, namespace, items), timeout=120)


# --- counting runs ---------------------------------------------------------------------------------


def runs_to_execute(item: dict[str, Any]) -> int:
    """How many runs the execution is to execute: a countdown left + 1, a sleeper 1."""
    spec = item["spec"]
    return int(spec["args"]["left"]) + 1 if spec["method"] == "countdown" else 1


def count_runs(ledger: RunLedger, items: list[dict[str, Any]], runs_each: int | None = None) -> RunTally:
    """Stop the ledger and tally its run pods: every execution in `items` was to execute runs 1..`runs_each`
    (None: as many as `runs_to_execute` says)."""
    ledger.stop()
    expected = {
        i["metadata"]["name"]: (
            runs_to_execute(i) if runs_each is None else runs_each,
            models.ScheduledExecutionSpec.model_validate(i["spec"]).retries,
        )
        for i in items
    }
    return ledger.tally(expected, {i["metadata"]["name"]: i.get("status") or {} for i in items})


def ledger_says(tally: RunTally) -> str:
    """What the run ledger found wrong, for an assertion's message."""
    lines = tally.problems + [f"(allowed) {line}" for line in tally.allowed]
    if tally.gaps:
        lines.append(f"(the ledger's watch expired {tally.gaps} time(s): a pod started and gone meanwhile is missed)")
    return "\nthe run ledger:\n" + "\n".join(lines) if lines else ""


def expect_runs(tally: RunTally, pods_killed: bool) -> None:
    """No run lost, repeated beyond what the design allows, or run that should not have; and, where no pod
    was killed, no repeat at all (a retry needs a pod that died)."""
    assert tally.fine, "runs lost, repeated or unexpected (from the run ledger):\n" + "\n".join(tally.problems)
    if not pods_killed:
        assert tally.again_allowed == 0, "no pod died here, yet runs executed twice:\n" + "\n".join(tally.allowed)


def right_result(item: dict[str, Any]) -> bool:
    expected = {"seen": list(range(1, RUNS + 1))} if item["spec"]["method"] == "countdown" else "slept"
    return bool(item["status"].get("result") == expected)


def expect_every_countdown_right(
    cluster: LocalCluster,
    namespace: str,
    report: Report,
    ledger: RunLedger,
    scenario: str,
    faults: str,
    n: int = EXECUTIONS,
) -> RunTally:
    """Every countdown succeeded with each run index seen once, in order (by its own result) and executed once
    (by the run ledger), and left no Job behind (as did every sleeper among them)."""
    items = all_finished(cluster, namespace, n, timeout=900)
    wrong = [i["metadata"]["name"] for i in items if i["status"]["phase"] != "Succeeded" or not right_result(i)]
    wait_cleaned_up(cluster, namespace, items)
    tally = count_runs(ledger, items)
    report.record(scenario, executions=n, faults=faults, wrong=len(wrong), runs=tally)
    assert wrong == [], f"executions lost, repeated a run or failed: {wrong}{ledger_says(tally)}"
    expect_runs(tally, pods_killed=False)
    return tally


# --- the scenarios ---------------------------------------------------------------------------------


def test_the_operator_killed_at_random_moments_loses_and_repeats_nothing(
    cluster: LocalCluster, operator: Operator, namespace: str, report: Report, ledger: RunLedger
) -> None:
    create_all(cluster, namespace, [countdown(f"k{i}") for i in range(EXECUTIONS)])
    rng = random.Random(7)
    for _ in range(KILLS):
        time.sleep(rng.uniform(1, 4))
        operator.kill()
        time.sleep(rng.uniform(0.2, 2))
        operator.start()
    expect_every_countdown_right(
        cluster,
        namespace,
        report,
        ledger,
        "Operator SIGKILLed at random moments (restarted 0.2-2 s later) during polling sequences",
        f"{KILLS} kills",
    )


def restarted_with(cluster: LocalCluster, namespace: str, held: HeldWrite, since: dt.datetime) -> str | None:
    """What the restarted operator (started at `since`) did first with the held execution: "adopted" (its
    status names the held run), "queued" (MAX_RUNNING other runs started since while the held run is not
    named: no slot was left for it), or None (neither yet)."""
    items = {i["metadata"]["name"]: i.get("status") or {} for i in list_executions(cluster, namespace)}
    status = items.pop(held.execution)
    if (status.get("currentRun") or {}).get("job") == held.job or status.get("runs", 0) >= held.index:
        return "adopted"
    started = [dt.datetime.fromisoformat(c["startedAt"]) for s in items.values() if (c := s.get("currentRun"))]
    return "queued" if sum(t >= since for t in started) >= MAX_RUNNING else None


@dataclass
class GapKills:
    held: list[str] = field(default_factory=list)
    """One Job per kill: the run's Job existed, the status write that would have named it was refused."""
    queued: list[str] = field(default_factory=list)
    """Those whose execution the restarted operator queued for a run slot, the Job already there."""
    adopted_crowded: list[str] = field(default_factory=list)
    """Those the restarted operator adopted at once though every run slot was taken (by design: the held
    run's pod runs already, so it holds a slot even past the limit: stages.jobs.kept_job)."""
    sleepers: int = 0
    """Sleepers created to take the run slots before a restart."""
    jobless: list[str] = field(default_factory=list)
    """Runs whose status write came before their Job (none, by design)."""


@pytest.mark.usefixtures("without_session_operator")
def test_the_operator_killed_between_creating_a_run_job_and_naming_it_in_status_repeats_no_run(
    cluster: LocalCluster, namespace: str, report: Report, ledger: RunLedger, tmp_path: Path
) -> None:
    """The operator creates a run's Job, then writes the status that names it (schedexec.decisions). A
    webhook (tests/chaos/hold.py) holds that status write; the operator is SIGKILLed meanwhile and the write
    refused, so the Job exists and no status names it; then the operator is restarted. It must adopt the Job
    it finds, not run it again: when it can start the run at once, and when it cannot because no run slot is
    free (before the last kills, MAX_RUNNING sleepers that sort first are created; such a kill counts once
    MAX_RUNNING other runs were seen started by the restarted operator while the held run was not named)."""
    own = Operator(cluster, tmp_path)
    kills = GapKills()
    queued_wanted = max(1, KILLS // 3)
    crowded = threading.Event()

    def kill(held: HeldWrite) -> None:
        try:
            cluster.batch.read_namespaced_job(held.job, namespace)
        except ApiException:
            kills.jobless.append(held.job)  # the design creates the Job before the status that names it
        if crowded.is_set():
            first = kills.sleepers
            kills.sleepers += MAX_RUNNING
            create_all(cluster, namespace, [sleeper(f"a{i}", 5, 1) for i in range(first, kills.sleepers)])
        own.kill()
        kills.held.append(held.job)

    create_all(cluster, namespace, [countdown(f"g{i}") for i in range(EXECUTIONS)])
    rng = random.Random(5)
    with StatusWriteHold(cluster, namespace, on_hold=kill) as hold:
        own.start()
        try:
            for k in range(KILLS):
                if k >= KILLS - queued_wanted:
                    crowded.set()
                time.sleep(rng.uniform(0.5, 3))
                hold.arm()
                assert hold.wait_held(timeout=120), f"no status write naming a run in 120 s (kill {k + 1})"
                held = hold.held[-1]
                time.sleep(1)
                restarted = dt.datetime.now(dt.UTC)
                own.start()
                if crowded.is_set():
                    first = wait_for(
                        f"the restarted operator to adopt {held.execution}'s run or give every slot to others",
                        lambda held=held, since=restarted: restarted_with(cluster, namespace, held, since),
                        timeout=60,
                        interval=0.1,
                    )
                    (kills.queued if first == "queued" else kills.adopted_crowded).append(held.job)
        finally:
            if not own.running:
                own.start()
    try:
        expect_every_countdown_right(
            cluster,
            namespace,
            report,
            ledger,
            "Operator SIGKILLed between creating a run's Job and writing the status that names it, restarted",
            f"{len(kills.held)} kills in that gap, {len(kills.adopted_crowded) + len(kills.queued)} of them "
            "restarted with every run slot taken",
            n=EXECUTIONS + kills.sleepers,
        )
    finally:
        own.stop()
    assert kills.jobless == [], f"status writes naming a run whose Job did not exist: {kills.jobless}"
    assert len(kills.adopted_crowded) + len(kills.queued) >= queued_wanted, f"no restart with every slot taken: {kills}"
    assert kills.queued == [], f"a held run waited for a slot instead of being adopted at once: {kills}"


class Replica(Operator):
    """An operator process among replicas: leader election on, with its own log directory."""

    def __init__(self, cluster: LocalCluster, log_dir: Path, env: dict[str, str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(cluster, log_dir)
        self.env = env

    def start(self) -> None:
        with environment(self.env):  # Operator.start hands the process a copy of os.environ
            super().start()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, number: signal.Signals) -> None:
        if self.running:
            os.kill(self.pid, number)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.usefixtures("without_session_operator")
def test_a_frozen_leader_resumed_after_a_takeover_repeats_and_loses_no_run(
    cluster: LocalCluster, namespace: str, report: Report, ledger: RunLedger, tmp_path: Path
) -> None:
    """Two replicas with leader election. The leader is frozen (SIGSTOP) at a random moment while sequences
    run, for longer than its lease; the other replica takes over; the frozen one is resumed (SIGCONT) while
    executions are still running, with whatever it was doing when it froze. Repeated with fresh executions
    (so the replica frozen first may lead again, with a cache that lagged while it was frozen). Neither the
    woken replica (leader.py: it stops acting past its renew deadline) nor the one taking over may repeat
    or lose a run."""
    lease = "schedexec-chaos"
    env = {"SCHEDEXEC_LEADER_ELECTION_NAMESPACE": namespace, "SCHEDEXEC_LEADER_ELECTION_LEASE": lease}
    replicas = [Replica(cluster, tmp_path / f"replica-{i}", env) for i in range(2)]
    leases = client.CoordinationV1Api(cluster.api)

    def holder() -> str:
        try:
            return leases.read_namespaced_lease(lease, namespace).spec.holder_identity or ""
        except ApiException:
            return ""

    def holding() -> Replica | None:
        identity = holder()
        return next((r for r in replicas if r.running and identity.endswith(f"-{r.pid}")), None)

    rng = random.Random(11)
    batch = max(EXECUTIONS // 2, 4)
    woke_amid: list[int] = []
    for replica in replicas:
        replica.start()
    try:
        for round_ in range(FREEZES):
            names = [f"h{round_}-{i}" for i in range(batch)]
            create_all(cluster, namespace, [countdown(name) for name in names])
            leader = wait_for("a leader among the replicas", holding, timeout=60)
            wait_for(
                "runs of the new executions under way",
                lambda: any((i.get("status") or {}).get("currentRun") for i in list_executions(cluster, namespace)),
                timeout=60,
            )
            time.sleep(rng.uniform(0, 2))
            leader.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            other = next(r for r in replicas if r is not leader)
            wait_for(
                "the other replica to take the lease",
                lambda taker=other: holding() is taker,
                timeout=LEASE_SECONDS + 30,
            )
            time.sleep(max(0.0, FREEZE_SECONDS - (time.monotonic() - frozen_at)))
            woke_amid.append(sum(not finished(i) for i in list_executions(cluster, namespace)))
            leader.signal(signal.SIGCONT)
            time.sleep(rng.uniform(2, 5))
        items = all_finished(cluster, namespace, batch * FREEZES, timeout=900)
        survived = all(r.running for r in replicas)
    finally:
        for replica in replicas:
            replica.signal(signal.SIGCONT)
            replica.stop()
    assert all(woke_amid), f"executions unfinished when each frozen leader woke: {woke_amid}"
    wrong = [i["metadata"]["name"] for i in items if i["status"]["phase"] != "Succeeded" or not right_result(i)]
    wait_cleaned_up(cluster, namespace, items)
    tally = count_runs(ledger, items, RUNS)
    report.record(
        f"Two replicas: the leader SIGSTOPped for {FREEZE_SECONDS} s (lease {LEASE_SECONDS} s), the other "
        "takes over, the frozen one resumed while sequences run",
        executions=len(items),
        faults=f"{FREEZES} freezes",
        wrong=len(wrong),
        runs=tally,
        note="unfinished executions at each wake-up: " + ", ".join(map(str, woke_amid)),
    )
    assert wrong == [], f"executions lost, repeated a run or failed: {wrong}{ledger_says(tally)}"
    expect_runs(tally, pods_killed=False)
    assert survived, "both replicas outlived their freeze"


NODE_AGENT_FAILURES = {"BackoffLimitExceeded": RETRIES + 1, models.Reason.RUN_DISRUPTED.value: 1}
"""How the design lets a run fail when the node agent dies under it, with how often the run then executed.
The restarted agent reports the pods it ran Failed (NodeAgentRestarted). A pod that started and died is
what spec.retries is for (decisions.py), so its Job retries it, and the run fails only once the retries
are used up: the Job controller's BackoffLimitExceeded, passed through, after retries + 1 executions. A
pod marked disrupted (DisruptionTarget: its node lost; the node agent sets no such condition today) fails
the run at once, RunDisrupted, after one execution. RunLost (the run's Job vanished), RunOverdue,
RunFailed or anything else would be the operator mishandling the fault, not an outcome of it."""


def test_killing_the_node_agent_fails_or_retries_runs_with_a_reason_and_nothing_stays_running(
    cluster: LocalCluster, operator: Operator, namespace: str, report: Report, ledger: RunLedger
) -> None:
    n = EXECUTIONS
    create_all(cluster, namespace, [sleeper(f"s{i}", seconds=3, retries=RETRIES) for i in range(n)])
    wait_for(
        "some runs to be running",
        lambda: any(p.status.phase == "Running" for p in cluster.core.list_namespaced_pod(namespace).items),
        timeout=60,
    )
    agent = next(p for p in cluster.plane.status().processes if p.name == "node-agent")
    os.kill(agent.pid, signal.SIGKILL)
    time.sleep(2)
    cluster.plane.up()  # restarts the dead node agent; pods it ran are reported NodeAgentRestarted
    items = all_finished(cluster, namespace, n, timeout=600)
    wait_cleaned_up(cluster, namespace, items)
    tally = count_runs(ledger, items, 1)
    outcomes = {
        i["metadata"]["name"]: (i["status"]["phase"], (i["status"].get("error") or {}).get("reason", "")) for i in items
    }
    unexplained = [
        f"{name}: {phase} {reason or '(no reason)'}"
        for name, (phase, reason) in outcomes.items()
        if phase != "Succeeded"
        and not (phase == "Failed" and len(ledger.starts(name, 1)) == NODE_AGENT_FAILURES.get(reason))
    ]
    report.record(
        "Node agent SIGKILLed under running executions, then restarted",
        executions=n,
        faults="1 kill",
        wrong=len(unexplained),
        runs=tally,
        note="outcomes: " + ", ".join(f"{p} {r}".strip() for p, r in sorted(set(outcomes.values()))),
    )
    assert unexplained == [], (
        f"failed other than the design allows ({NODE_AGENT_FAILURES}): {unexplained}{ledger_says(tally)}"
    )
    expect_runs(tally, pods_killed=True)


def test_deleting_run_pods_is_retried_per_spec(
    cluster: LocalCluster, operator: Operator, namespace: str, report: Report, ledger: RunLedger
) -> None:
    n = EXECUTIONS // 2
    create_all(cluster, namespace, [sleeper(f"d{i}", seconds=4, retries=2) for i in range(n)])
    hit: set[str] = set()  # one deleted pod per run: within its retries
    deadline = time.monotonic() + 60
    while len(hit) < n and time.monotonic() < deadline:
        for pod in cluster.core.list_namespaced_pod(namespace).items:
            job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name", "")
            if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp and job not in hit:
                try:
                    cluster.core.delete_namespaced_pod(pod.metadata.name, namespace)
                    hit.add(job)
                except ApiException:
                    pass
        time.sleep(0.5)
    deleted = len(hit)
    items = all_finished(cluster, namespace, n, timeout=600)
    wait_cleaned_up(cluster, namespace, items)
    wrong = [i["metadata"]["name"] for i in items if i["status"]["phase"] != "Succeeded"]
    tally = count_runs(ledger, items, 1)
    report.record(
        "Run pods deleted while running (retries: 2)",
        executions=n,
        faults=f"{deleted} pod deletions",
        wrong=len(wrong),
        runs=tally,
    )
    assert wrong == [], f"a deleted pod must be retried per spec: {wrong}{ledger_says(tally)}"
    expect_runs(tally, pods_killed=True)
    # a pod deleted while it ran is one execution, its retry another (one that finished just before its
    # deletion was not retried)
    assert 0 < tally.again_allowed <= deleted, f"{deleted} running pods deleted: {tally.allowed}"


def test_restarting_the_api_server_mid_flight_loses_nothing(
    cluster: LocalCluster, operator: Operator, namespace: str, report: Report, ledger: RunLedger
) -> None:
    create_all(cluster, namespace, [countdown(f"a{i}") for i in range(EXECUTIONS)])

    def runs_done() -> int:
        return sum((i.get("status") or {}).get("runs", 0) for i in list_executions(cluster, namespace))

    wait_for("sequences under way", lambda: runs_done() >= EXECUTIONS, timeout=300)
    outages = 2 if FULL else 1
    for _ in range(outages):
        cluster.plane.stop_process(KUBE_APISERVER)
        time.sleep(5)  # the operator, the controllers and the node agent all lose the API server
        cluster.plane.start_process(KUBE_APISERVER)
        time.sleep(3)
    tally = expect_every_countdown_right(
        cluster,
        namespace,
        report,
        ledger,
        "kube-apiserver stopped for 5 s and restarted during polling sequences",
        f"{outages} restart(s)",
    )
    assert operator.running, "the operator survived the outage"
    assert tally.expected == EXECUTIONS * RUNS


def test_with_the_job_controller_down_the_watchdog_ends_runs_nobody_ends(
    cluster: LocalCluster, operator: Operator, namespace: str, report: Report, ledger: RunLedger
) -> None:
    """No Job ever finishes while kube-controller-manager is down: the operator's watchdog fails the runs
    (RunOverdue) shortly after their run timeout instead of leaving them Running until the sequence deadline.
    No pod can exist meanwhile, so no run is expected to execute; nor may one start once the controller is
    back (the watchdog deleted their Jobs)."""
    n = 5
    cluster.plane.stop_process(KUBE_CONTROLLER_MANAGER)
    try:
        create_all(cluster, namespace, [sleeper(f"w{i}", 1, 0, runTimeoutSeconds=2) for i in range(n)])
        items = all_finished(cluster, namespace, n, timeout=120)
    finally:
        cluster.plane.start_process(KUBE_CONTROLLER_MANAGER)
    errors = [(i["status"]["phase"], (i["status"].get("error") or {}).get("reason")) for i in items]
    wrong = [e for e in errors if e != ("Failed", "RunOverdue")]
    time.sleep(5)  # the Job controller is back: time for a pod of a run the watchdog ended to (wrongly) start
    tally = count_runs(ledger, items, 0)
    report.record(
        "kube-controller-manager stopped: Jobs never finish (watchdog)",
        executions=n,
        faults="controller manager down",
        wrong=len(wrong),
        runs=tally,
        note=f"ended Failed/RunOverdue after runTimeoutSeconds 2 + grace {OVERDUE_GRACE_SECONDS} s; "
        "no pod can start while the Job controller is down, so no run is expected to execute",
    )
    assert wrong == [], f"{wrong}{ledger_says(tally)}"
    assert not leftover_jobs(cluster, namespace), "the watchdog stopped the stuck Jobs"
    expect_runs(tally, pods_killed=False)
