"""Faults under load: the operator killed at random, kube-apiserver restarted, the node agent killed,
pods deleted, the Job controller down (the watchdog).

Every scenario checks what users rely on: each execution reaches the right
final state, no run index runs twice (the countdown component's result lists
every run index it saw), none is lost, and no Job is left behind. Sizes come
from SCHEDEXEC_CHAOS_SCALE ("ci", the default: small enough for CI; "full":
`make chaos`). With SCHEDEXEC_CHAOS_REPORT set, the figures are written there
(docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from schedexec import models
from schedexec_devcluster.binaries import KUBE_APISERVER, KUBE_CONTROLLER_MANAGER
from tests.chaos.conftest import Ledger
from tests.conftest import OVERDUE_GRACE_SECONDS, Cluster, Operator, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

FULL = os.environ.get("SCHEDEXEC_CHAOS_SCALE", "ci") == "full"
EXECUTIONS = 200 if FULL else 20
KILLS = 10 if FULL else 3
IMAGE = "ghcr.io/schedexec/test-component:dev"
RUNS = 4  # countdown left=3: runs 1..4


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


def create_all(cluster: Cluster, namespace: str, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)


def all_finished(cluster: Cluster, namespace: str, n: int, timeout: float) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        items = cluster.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)[
            "items"
        ]
        done = [i for i in items if (i.get("status") or {}).get("phase") in {p.value for p in models.FINISHED_PHASES}]
        return items if len(done) == n else None

    return wait_for(f"{n} executions to finish", finished, timeout=timeout, interval=1)


def leftover_jobs(cluster: Cluster, namespace: str) -> list[str]:
    return [
        j.metadata.name for j in cluster.batch.list_namespaced_job(namespace).items if not j.metadata.deletion_timestamp
    ]


def expect_every_countdown_right(cluster: Cluster, namespace: str, ledger: Ledger, scenario: str, faults: str) -> None:
    """Every countdown succeeded with each run index seen exactly once, in order, and left no Job behind."""
    items = all_finished(cluster, namespace, EXECUTIONS, timeout=900)
    wrong = [
        i["metadata"]["name"]
        for i in items
        if i["status"]["phase"] != "Succeeded" or i["status"].get("result") != {"seen": list(range(1, RUNS + 1))}
    ]
    wait_for("finished runs' Jobs to be cleaned up", lambda: not leftover_jobs(cluster, namespace), timeout=120)
    ledger.record(scenario, executions=EXECUTIONS, runs=EXECUTIONS * RUNS, faults=faults, lost_or_wrong=len(wrong))
    assert wrong == [], f"executions lost, repeated a run or failed: {wrong}"


def test_the_operator_killed_at_random_moments_loses_and_repeats_nothing(
    cluster: Cluster, operator: Operator, namespace: str, ledger: Ledger
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
        ledger,
        "Operator SIGKILLed at random moments (restarted 0.2-2 s later) during polling sequences",
        f"{KILLS} kills",
    )


def test_killing_the_node_agent_fails_or_retries_runs_with_a_reason_and_nothing_stays_running(
    cluster: Cluster, operator: Operator, namespace: str, ledger: Ledger
) -> None:
    n = EXECUTIONS
    create_all(cluster, namespace, [sleeper(f"s{i}", seconds=3, retries=1) for i in range(n)])
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
    reasons = sorted({(i["status"]["phase"], (i["status"].get("error") or {}).get("reason", "")) for i in items})
    unexplained = [
        i["metadata"]["name"]
        for i in items
        if i["status"]["phase"] != "Succeeded" and not (i["status"].get("error") or {}).get("reason")
    ]
    ledger.record(
        "Node agent SIGKILLed under running executions, then restarted",
        executions=n,
        runs=n,
        faults="1 kill",
        lost_or_wrong=len(unexplained),
        note="outcomes: " + ", ".join(f"{p} {r}".strip() for p, r in reasons),
    )
    assert unexplained == []


def test_deleting_run_pods_is_retried_per_spec(
    cluster: Cluster, operator: Operator, namespace: str, ledger: Ledger
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
    wrong = [i["metadata"]["name"] for i in items if i["status"]["phase"] != "Succeeded"]
    ledger.record(
        "Run pods deleted while running (retries: 2)",
        executions=n,
        runs=n,
        faults=f"{deleted} pod deletions",
        lost_or_wrong=len(wrong),
    )
    assert wrong == [], f"a deleted pod must be retried per spec: {wrong}"


def test_restarting_the_api_server_mid_flight_loses_nothing(
    cluster: Cluster, operator: Operator, namespace: str, ledger: Ledger
) -> None:
    create_all(cluster, namespace, [countdown(f"a{i}") for i in range(EXECUTIONS)])

    def runs_done() -> int:
        items = cluster.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)
        return sum((i.get("status") or {}).get("runs", 0) for i in items["items"])

    wait_for("sequences under way", lambda: runs_done() >= EXECUTIONS, timeout=300)
    outages = 2 if FULL else 1
    for _ in range(outages):
        cluster.plane.stop_process(KUBE_APISERVER)
        time.sleep(5)  # the operator, the controllers and the node agent all lose the API server
        cluster.plane.start_process(KUBE_APISERVER)
        time.sleep(3)
    expect_every_countdown_right(
        cluster,
        namespace,
        ledger,
        "kube-apiserver stopped for 5 s and restarted during polling sequences",
        f"{outages} restart(s)",
    )
    assert operator.running, "the operator survived the outage"


def test_with_the_job_controller_down_the_watchdog_ends_runs_nobody_ends(
    cluster: Cluster, operator: Operator, namespace: str, ledger: Ledger
) -> None:
    """No Job ever finishes while kube-controller-manager is down: the operator's watchdog fails the runs
    (RunOverdue) shortly after their run timeout instead of leaving them Running until the sequence deadline."""
    n = 5
    cluster.plane.stop_process(KUBE_CONTROLLER_MANAGER)
    try:
        create_all(cluster, namespace, [sleeper(f"w{i}", 1, 0, runTimeoutSeconds=2) for i in range(n)])
        items = all_finished(cluster, namespace, n, timeout=120)
    finally:
        cluster.plane.start_process(KUBE_CONTROLLER_MANAGER)
    errors = [(i["status"]["phase"], (i["status"].get("error") or {}).get("reason")) for i in items]
    wrong = [e for e in errors if e != ("Failed", "RunOverdue")]
    ledger.record(
        "kube-controller-manager stopped: Jobs never finish (watchdog)",
        executions=n,
        runs=n,
        faults="controller manager down",
        lost_or_wrong=len(wrong),
        note=f"ended Failed/RunOverdue after runTimeoutSeconds 2 + grace {OVERDUE_GRACE_SECONDS} s",
    )
    assert wrong == []
    assert not leftover_jobs(cluster, namespace), "the watchdog stopped the stuck Jobs"
