"""The operator end to end: real API server, Job controller, node agent and runner."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from schedexec import manifests, models
from tests.support import MAX_RUNNING, LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

IMAGE = "ghcr.io/schedexec/test-component:dev"
CANARY = "canary-7d1f0c9b"


def execution(name: str, method: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "metadata": {"name": name},
        "spec": {"component": {"image": IMAGE}, "method": method, **spec},
    }


def create(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)


def run_to_end(cluster: LocalCluster, namespace: str, body: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    create(cluster, namespace, body)
    return cluster.wait_finished(namespace, body["metadata"]["name"], timeout)


def status(body: dict[str, Any]) -> dict[str, Any]:
    return body["status"]  # type: ignore[no-any-return]


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status(body)["conditions"] if c["type"] == type_)


@pytest.fixture
def credentials(cluster: LocalCluster, namespace: str) -> str:
    cluster.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="shop"), data={"apiKey": base64.b64encode(CANARY.encode()).decode()}
        ),
    )
    return "shop"


def jobs(cluster: LocalCluster, namespace: str) -> list[Any]:
    return list(cluster.batch.list_namespaced_job(namespace).items)


def test_select_model_returns_the_options(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    done = run_to_end(cluster, namespace, execution("cats", "selectModel", function="getCategories", module="list"))
    assert status(done)["phase"] == "Succeeded"
    assert status(done)["result"] == {"1": "Books", "2": "Music", "module": "list"}
    assert condition(done, "Succeeded")["status"] == "True"
    assert condition(done, "Finished")["status"] == "True"
    assert status(done)["runs"] == 1 and status(done)["history"][0]["exitCode"] == 0
    (record,) = status(done)["history"]
    assert record["logs"] == f"kubectl logs -n {namespace} job/{record['job']}"
    assert [job.metadata.name for job in jobs(cluster, namespace)] == [record["job"]], "kept for its log"


def test_a_finished_runs_job_goes_when_its_retention_ends(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    """spec.runRetentionSeconds: the Job (and pod) of a recorded run stays that long, then the operator deletes
    it (the status named it, and until when)."""
    body = execution("brief", "selectModel", function="getCategories", runRetentionSeconds=8)
    done = run_to_end(cluster, namespace, body)
    (record,) = status(done)["history"]
    assert [job.metadata.name for job in jobs(cluster, namespace)] == [record["job"]]
    until = datetime.fromisoformat(record["logsUntil"])
    wait_for("the Job to go once its retention ended", lambda: not jobs(cluster, namespace), timeout=60)
    assert datetime.now(UTC) >= until - timedelta(seconds=2), "not before its retention ended (clock skew aside)"


def test_get_meta_model_returns_the_schemas(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    done = run_to_end(cluster, namespace, execution("meta", "getMetaModel", module="products"))
    assert status(done)["result"]["out"]["properties"] == {"sku": {"type": "string"}}


def test_verify_credentials_reads_the_secret_and_never_leaks_it(
    cluster: LocalCluster, operator: Operator, namespace: str, credentials: str
) -> None:
    ok = run_to_end(
        cluster,
        namespace,
        execution(
            "ok",
            "verifyCredentials",
            args={"expectedSha256": sha256(CANARY.encode()).hexdigest()},
            credentialsSecretRef={"name": credentials},
        ),
    )
    assert status(ok)["result"] == {"verified": True}
    refused = run_to_end(
        cluster,
        namespace,
        execution(
            "refused",
            "verifyCredentials",
            args={"expectedSha256": "0" * 64},
            credentialsSecretRef={"name": credentials},
        ),
    )
    assert status(refused)["phase"] == "Succeeded"
    assert status(refused)["result"] == {"verified": False, "reason": "the api key *** was refused"}
    leaked = run_to_end(cluster, namespace, execution("leak", "leak", credentialsSecretRef={"name": credentials}))
    assert status(leaked)["phase"] == "Failed" and "***" in status(leaked)["error"]["message"]
    everything = json.dumps([cluster.execution(namespace, n) for n in ("ok", "refused", "leak")])
    everything += json.dumps([client.ApiClient().sanitize_for_serialization(e) for e in cluster.events(namespace)])
    assert CANARY not in everything
    assert CANARY not in operator.logs()


def test_a_polling_sequence_passes_each_runs_args_to_the_next(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    done = run_to_end(cluster, namespace, execution("poll", "countdown", args={"left": 2, "every": 1}))
    assert status(done)["phase"] == "Succeeded"
    assert status(done)["result"] == {"seen": [1, 2, 3]}
    assert [(r["index"], r["outcome"]) for r in status(done)["history"]] == [
        (1, "Scheduled"),
        (2, "Scheduled"),
        (3, "Done"),
    ]
    kept = sorted(job.metadata.name for job in jobs(cluster, namespace) if not job.metadata.deletion_timestamp)
    assert kept == sorted(r["job"] for r in status(done)["history"]), "exactly the history's Jobs, kept for their logs"
    reasons = {e.reason for e in cluster.events(namespace)}
    assert not reasons & {"RunStarted", "RunScheduled", "Succeeded"}, "a healthy sequence posts no Event per run"
    told = operator.logs()
    assert told.count(f"{namespace}/poll RunStarted") == 3 and told.count(f"{namespace}/poll RunScheduled") == 2


def test_each_run_gets_exactly_the_args_and_partial_result_the_previous_one_scheduled(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, execution("reshape", "reshape", args={"a": 1, "b": {"c": 2}}))

    def second_partial() -> bool:
        return (cluster.execution(namespace, "reshape").get("status") or {}).get("partialResult") == {"step": 2}

    wait_for("run 2's partial result, replacing run 1's (not merged into it)", second_partial, timeout=60)
    done = cluster.wait_finished(namespace, "reshape")
    assert status(done)["result"] == {"only": 2}, "no key of earlier args may survive into later runs"


def test_an_error_outcome_fails_with_its_reason(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    done = run_to_end(cluster, namespace, execution("err", "fail"))
    assert status(done)["phase"] == "Failed"
    assert status(done)["error"] == {"reason": "ShopUnavailable", "message": "the shop answered 503"}
    assert condition(done, "Succeeded") | {"lastTransitionTime": None} == condition(done, "Succeeded") | {
        "status": "False",
        "reason": "ShopUnavailable",
        "lastTransitionTime": None,
    }


def test_a_timeout_while_waiting_keeps_the_partial_result(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    done = run_to_end(
        cluster,
        namespace,
        execution("wait", "countdown", args={"left": 5, "every": 30}, timeoutSeconds=6, runTimeoutSeconds=5),
    )
    assert status(done)["phase"] == "TimedOut"
    assert status(done)["error"]["reason"] == "Timeout"
    assert status(done)["partialResult"] == {"remoteJob": "job-42", "seen": [1]}
    assert condition(done, "TimedOut")["status"] == "True"


def test_a_timeout_while_running_stops_the_run(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    done = run_to_end(cluster, namespace, execution("slow", "sleep", timeoutSeconds=4, runTimeoutSeconds=4))
    assert status(done)["phase"] == "TimedOut"
    assert status(done)["history"][-1]["outcome"] == "Stopped"
    wait_for("the running Job to be deleted", lambda: not jobs(cluster, namespace))
    wait_for("its pod to be killed", lambda: not cluster.core.list_namespaced_pod(namespace).items)


def test_a_run_past_its_own_deadline_fails(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    done = run_to_end(cluster, namespace, execution("hang", "sleep", runTimeoutSeconds=2, retries=0))
    assert status(done)["phase"] == "Failed"
    assert status(done)["error"]["reason"] == "RunTimedOut"


@pytest.mark.parametrize(
    ("method", "reason", "in_message"),
    [
        ("crash", "BackoffLimitExceeded", "its log: kubectl logs -n"),  # never the log's content
        ("garbage", "InvalidEnvelope", "not JSON"),
        ("huge", "ResultTooLarge", "limit is 4096 bytes"),
        ("nonesuch", "UnknownMethod", "countdown"),
    ],
)
def test_runner_faults_fail_with_a_clear_reason(
    cluster: LocalCluster, operator: Operator, namespace: str, method: str, reason: str, in_message: str
) -> None:
    done = run_to_end(cluster, namespace, execution("fault", method, retries=0))
    assert status(done)["phase"] == "Failed"
    assert status(done)["error"]["reason"] == reason
    assert in_message in status(done)["error"]["message"]


def test_a_crashing_run_is_retried_per_spec(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    done = run_to_end(cluster, namespace, execution("retry", "crash", retries=1), timeout=120)
    assert status(done)["error"]["reason"] == "BackoffLimitExceeded"
    assert "after 1 retries" in status(done)["error"]["message"]


def test_runs_get_no_credentials_and_a_restricted_security_context(
    cluster: LocalCluster, operator: Operator, namespace: str, credentials: str
) -> None:
    create(cluster, namespace, execution("sec", "sleep", credentialsSecretRef={"name": credentials}))
    pod = wait_for("the run's pod", lambda: next(iter(cluster.core.list_namespaced_pod(namespace).items), None))
    spec = pod.spec
    assert spec.automount_service_account_token is False
    assert not any(v.projected for v in spec.volumes), "no service-account token volume"
    assert spec.security_context.run_as_non_root is True
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    (container,) = spec.containers
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    mount = next(m for m in container.volume_mounts if m.name == "credentials")
    assert mount.read_only is True
    assert CANARY not in json.dumps(client.ApiClient().sanitize_for_serialization(pod))
    (job,) = jobs(cluster, namespace)
    uid = cluster.execution(namespace, "sec")["metadata"]["uid"]
    assert job.metadata.name == manifests.job_name("sec", uid, 1) and job.metadata.name.startswith("sec-")
    assert job.metadata.owner_references[0].kind == models.KIND
    cluster.custom.delete_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, "sec")
    wait_for("deleting the execution to stop its run", lambda: not cluster.core.list_namespaced_pod(namespace).items)


def test_cancel_stops_the_run_without_deleting_the_execution(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, execution("cancel", "sleep"))
    wait_for(
        "the run to start",
        lambda: (
            status(cluster.execution(namespace, "cancel")).get("phase") == "Running"
            if cluster.execution(namespace, "cancel").get("status")
            else False
        ),
    )
    cluster.custom.patch_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, models.PLURAL, "cancel", {"spec": {"cancel": True}}
    )
    done = cluster.wait_finished(namespace, "cancel")
    assert status(done)["phase"] == "Cancelled"
    wait_for("the run's Job to go", lambda: not jobs(cluster, namespace))


def test_kubectl_wait_and_get_show_the_execution(cluster: LocalCluster, operator: Operator, namespace: str) -> None:
    cluster.apply(
        execution("quick", "selectModel", function="getCategories")
        | {"metadata": {"name": "quick", "namespace": namespace}}
    )
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Finished", "sx/quick", "--timeout=60s")
    table = cluster.kubectl("get", "sx", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "METHOD", "PHASE", "RUNS", "REASON", "AGE"]
    assert table.split("\n")[1].split()[:5] == ["quick", "selectModel", "Succeeded", "1", "Done"]
    described = cluster.kubectl("describe", "sx", "-n", namespace, "quick").stdout
    assert "Ready" in described and "the execution returned its result" in described


def test_a_finished_execution_is_deleted_after_its_ttl(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    run_to_end(cluster, namespace, execution("ttl", "getMetaModel", module="products", ttlSecondsAfterFinished=2))

    def deleted() -> bool:
        try:
            cluster.execution(namespace, "ttl")
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for("the TTL to delete the execution", deleted, timeout=30)


def test_a_killed_operator_continues_the_sequence_without_losing_or_repeating_a_run(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, execution("crashy", "countdown", args={"left": 5, "every": 1}))

    def running_run() -> int:
        current = (cluster.execution(namespace, "crashy").get("status") or {}).get("currentRun") or {}
        return int(current.get("index", 0))

    wait_for("run 2 to start", lambda: running_run() >= 2)
    operator.kill()
    try:
        wait_for(
            "a run to finish while the operator is down",
            lambda: any(j.status.succeeded for j in jobs(cluster, namespace)),
            timeout=30,
        )
    finally:
        operator.start()
    done = cluster.wait_finished(namespace, "crashy")
    assert status(done)["phase"] == "Succeeded"
    assert status(done)["result"] == {"seen": [1, 2, 3, 4, 5, 6]}, "each run index ran exactly once, in order"
    assert [r["index"] for r in status(done)["history"]] == [1, 2, 3, 4, 5, 6]


def test_runs_beyond_the_concurrency_limit_are_queued_then_run(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    names = [f"q{i}" for i in range(MAX_RUNNING + 2)]
    for name in names:
        create(cluster, namespace, execution(name, "sleep", args={"seconds": 2}))
    most_running, saw_queued = 0, False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # one LIST: every execution as of one resourceVersion, as a user's `kubectl get sx` sees them (reading
        # them one by one counted a run that had just ended and the one that took its slot: 4 of a limit of 3)
        listed = cluster.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)
        bodies = [b for b in listed["items"] if b["metadata"]["name"] in names]
        phases = [(b.get("status") or {}).get("phase") for b in bodies]
        most_running = max(most_running, phases.count("Running"))
        saw_queued = saw_queued or any(
            c.get("reason") == "Queued" for b in bodies for c in (b.get("status") or {}).get("conditions", [])
        )
        if len(phases) == len(names) and all(p == "Succeeded" for p in phases):
            break
        assert not any(p in ("Failed", "TimedOut") for p in phases), phases
        time.sleep(0.05)
    else:
        pytest.fail(f"not every execution succeeded within 120 s: {phases}")
    assert most_running <= MAX_RUNNING
    assert saw_queued
    queued_events = [e for e in cluster.events(namespace) if e.reason == "Queued"]
    assert queued_events, "a Queued event tells the user why the execution waits"


# --- XSOAR polling commands, ported by changing imports ----------------------------------------


def test_an_xsoar_polling_function_submits_polls_three_times_and_returns(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    args = {"polling": True, "polls_needed": 3, "interval_in_seconds": 1}
    done = run_to_end(cluster, namespace, execution("xpoll", "xsoar-poll", args=args), timeout=120)
    assert status(done)["phase"] == "Succeeded", status(done)
    outcomes = [r["outcome"] for r in status(done)["history"]]
    assert outcomes == ["Scheduled"] * 4 + ["Done"], outcomes
    assert condition(done, "Ready")["status"] == "True"


def test_a_timeout_in_seconds_set_by_the_component_ends_the_sequence_timed_out(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    args = {"polling": True, "polls_needed": 100, "interval_in_seconds": 1, "timeout_in_seconds": 8}
    done = run_to_end(cluster, namespace, execution("xtimeout", "xsoar-poll", args=args, timeoutSeconds=600))
    assert status(done)["phase"] == "TimedOut", status(done)
    assert "timeout of 8s that a run set (timeoutInSeconds)" in status(done)["error"]["message"]
    assert condition(done, "Stalled")["status"] == "True"


def test_a_schedule_naming_another_command_runs_that_command_next(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    args = {"polling": True, "polls_needed": 1, "interval_in_seconds": 4}
    create(cluster, namespace, execution("xsubmit", "xsoar-submit", args=args))
    waiting = wait_for(
        "the submit run's schedule",
        lambda: (s := cluster.execution(namespace, "xsubmit").get("status") or {}).get("phase") == "Waiting" and s,
        timeout=60,
    )
    assert waiting["nextMethod"] == "xsoar-poll" and waiting["itemsRemaining"] == 1
    cluster.kubectl("wait", "--for=condition=Ready", "--timeout=90s", "scheduledexecution/xsubmit", "-n", namespace)
    done = cluster.execution(namespace, "xsubmit")
    assert status(done)["phase"] == "Succeeded"
    assert [r.get("method") for r in status(done)["history"]][:2] == [None, "xsoar-poll"]
