"""Runs whose pod cannot start, and args too large to deliver: classification and decisions, pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from schedexec import manifests, models, runs, starts
from schedexec.decisions import decide
from schedexec.models import Phase, RunOutcome
from schedexec.runs import RunObservation, RunState
from schedexec.starts import PodWaiting, StartFailure
from schedexec_runner import contract, envelope
from tests.unit.builders import POD_DEFAULTS, policy, run_job
from tests.unit.test_decisions import T0, at, condition, execution, running

POLICY = policy(min_interval_seconds=10, start_failure_grace_seconds=30, unschedulable_grace_seconds=120)
IMAGE = "ghcr.io/acme/does-not-exist:1.0"
PULL_ERROR = (
    f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": '
    f'failed to resolve reference "{IMAGE}": {IMAGE}: not found'
)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def pod(
    *,
    node: str | None = "node-1",
    waiting: tuple[str, str] | None = None,
    state: dict[str, Any] | None = None,
    phase: str = "Pending",
    sandbox: bool | None = True,
    scheduled_at: datetime = T0,
    unschedulable: str | None = None,
    created: datetime = T0,
    uid: str = "pod-1",
    deleting: bool = False,
) -> dict[str, Any]:
    """A run pod as the API shows it; `waiting` = (reason, message) of the run container."""
    conditions: list[dict[str, Any]] = []
    if unschedulable is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
                "lastTransitionTime": stamp(scheduled_at),
            }
        )
    elif node is not None:
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(scheduled_at)})
    if sandbox is not None and node is not None:
        conditions.append({"type": "PodReadyToStartContainers", "status": str(sandbox), "lastTransitionTime": "x"})
    statuses = []
    if waiting is not None:
        statuses.append(
            {"name": manifests.CONTAINER, "state": {"waiting": {"reason": waiting[0], "message": waiting[1]}}}
        )
    elif state is not None:
        statuses.append({"name": manifests.CONTAINER, "state": state})
    body: dict[str, Any] = {
        "metadata": {
            "name": f"sx1-r1-{uid}",
            "namespace": "ns",
            "uid": uid,
            "creationTimestamp": stamp(created),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": run_job(1), "uid": "job-1"}],
            "labels": {"batch.kubernetes.io/job-name": run_job(1), "unrelated": "dropped"},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {
            "containers": [{"name": manifests.CONTAINER, "image": IMAGE, "env": [{"name": "A", "value": "b"}]}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses},
    }
    if node is not None:
        body["spec"]["nodeName"] = node
    if deleting:
        body["metadata"]["deletionTimestamp"] = stamp(T0)
    return body


def mount_event(message: str, uid: str = "pod-1", last: datetime = T0) -> dict[str, Any]:
    return {
        "reason": "FailedMount",
        "type": "Warning",
        "message": message,
        "involvedObject": {"kind": "Pod", "uid": uid},
        "lastTimestamp": stamp(last),
    }


ACTIVE_JOB: dict[str, Any] = {"metadata": {"name": run_job(1), "uid": "job-1"}, "status": {"active": 1}}
MISSING_SECRET = 'MountVolume.SetUp failed for volume "credentials" : secret "shop" not found'


# --- what the pod says ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "events", "expected"),
    [
        (pod(state={"running": {"startedAt": "x"}}, phase="Running"), [], None),
        (pod(phase="Succeeded"), [], None),
        (pod(node=None), [], PodWaiting(starts.SCHEDULING, "the pod is not on a node yet", T0, IMAGE)),
        (
            pod(node=None, unschedulable="0/3 nodes are available: 3 Insufficient cpu.", scheduled_at=at(4)),
            [],
            PodWaiting("Unschedulable", "0/3 nodes are available: 3 Insufficient cpu.", at(4), IMAGE),
        ),
        (pod(scheduled_at=at(2)), [], PodWaiting("ContainerCreating", "", at(2), IMAGE)),
        (pod(sandbox=False), [], PodWaiting("ContainerCreating", "", T0, IMAGE, volumes_pending=True)),
        (pod(sandbox=None), [], PodWaiting("ContainerCreating", "", T0, IMAGE)),  # not reported on by a kubelet yet
        (
            pod(sandbox=None, waiting=("ContainerCreating", "")),
            [],
            PodWaiting("ContainerCreating", "", T0, IMAGE, volumes_pending=True),
        ),
        (
            pod(sandbox=False, waiting=("ContainerCreating", "")),
            [mount_event("old", last=at(1)), mount_event(MISSING_SECRET, last=at(9)), mount_event("x", uid="other")],
            PodWaiting("FailedMount", MISSING_SECRET, T0, IMAGE, volumes_pending=True),
        ),
        (
            pod(sandbox=True, waiting=("ContainerCreating", "")),
            [mount_event(MISSING_SECRET)],
            PodWaiting("ContainerCreating", "", T0, IMAGE),
        ),
        (pod(waiting=("ErrImagePull", PULL_ERROR)), [], PodWaiting("ErrImagePull", PULL_ERROR, T0, IMAGE)),
        (
            pod(waiting=("CreateContainerConfigError", 'secret "shop" not found')),
            [],
            PodWaiting("CreateContainerConfigError", 'secret "shop" not found', T0, IMAGE),
        ),
    ],
    ids=[
        "running",
        "finished",
        "not-scheduled",
        "unschedulable",
        "creating",
        "volumes-pending",
        "no-sandbox-condition-not-reported-yet",
        "no-sandbox-condition-container-creating",
        "failed-mount-from-newest-event",
        "mount-event-but-sandbox-ready",
        "err-image-pull",
        "config-error",
    ],
)
def test_why_a_pod_waits(body: dict[str, Any], events: list[dict[str, Any]], expected: PodWaiting | None) -> None:
    assert starts.pod_waiting(body, events) == expected
    assert starts.pod_waiting(runs.slim_pod(body), events) == expected, "the cache keeps all the observation needs"


def test_the_current_pod_is_the_newest_live_one() -> None:
    old = pod(uid="a", created=T0, phase="Failed")
    new = pod(uid="b", created=at(5))
    gone = pod(uid="c", created=at(9), deleting=True)
    assert starts.current_pod([old, new, gone]) is new
    assert starts.current_pod([old]) is None


def test_an_active_job_is_observed_with_its_pods_waiting_reason() -> None:
    observed = runs.observe(ACTIVE_JOB, [pod(waiting=("ImagePullBackOff", "Back-off pulling image"))])
    assert observed.state is RunState.ACTIVE
    assert observed.waiting is not None and observed.waiting.reason == "ImagePullBackOff"
    assert runs.observe(ACTIVE_JOB, []).waiting is None


# --- the rule -------------------------------------------------------------------------------------


def waiting(reason: str, message: str = "", volumes_pending: bool = False) -> PodWaiting:
    return PodWaiting(reason, message, T0, IMAGE, volumes_pending=volumes_pending)


@pytest.mark.parametrize(
    ("reason", "seconds", "failure", "shown", "look_again"),
    [
        # fails at once: no retry can heal it
        ("InvalidImageName", 0, StartFailure.IMAGE_PULL, True, None),
        ("ErrImageNeverPull", 0, StartFailure.IMAGE_PULL, True, None),
        # shown at once, fails after the grace (the kubelet retries meanwhile)
        ("ErrImagePull", 0, None, True, 30),
        ("ErrImagePull", 29, None, True, 30),
        ("ImagePullBackOff", 30, StartFailure.IMAGE_PULL, True, None),
        ("CreateContainerConfigError", 10, None, True, 30),
        ("CreateContainerConfigError", 31, StartFailure.CONFIG, True, None),
        ("CreateContainerError", 30, StartFailure.CONFIG, True, None),
        ("FailedMount", 30, StartFailure.CONFIG, True, None),
        ("Unschedulable", 30, None, True, 120),
        ("Unschedulable", 120, StartFailure.UNSCHEDULABLE, True, None),
        # normal progress: never a failure, shown once it takes longer than the grace
        ("ContainerCreating", 5, None, False, 30),
        ("ContainerCreating", 300, None, True, None),
        ("Scheduling", 300, None, True, None),
        ("PodInitializing", 1, None, False, 30),
        # unknown: shown, the run timeout ends it
        ("SomethingNew", 1, None, True, None),
    ],
)
def test_which_waiting_fails_the_run_and_when(
    reason: str, seconds: int, failure: StartFailure | None, shown: bool, look_again: int | None
) -> None:
    verdict = starts.judge_start(waiting(reason), at(seconds), 30, 120)
    assert verdict == starts.StartVerdict(failure, shown, None if look_again is None else at(look_again))


def test_a_pod_still_waiting_for_its_volumes_is_looked_at_again_for_failed_mounts() -> None:
    verdict = starts.judge_start(waiting("ContainerCreating", volumes_pending=True), at(40), 30, 120)
    assert verdict == starts.StartVerdict(None, True, at(70))
    zero_grace = starts.judge_start(waiting("ContainerCreating", volumes_pending=True), at(40), 0, 120)
    assert zero_grace.look_again_at == at(40 + starts.MOUNT_RECHECK_SECONDS), "never a busy loop"
    assert starts.mount_check_due([pod(sandbox=False)], at(29), 30) is None
    assert starts.mount_check_due([pod(sandbox=False)], at(30), 30) is not None
    assert starts.mount_check_due([pod(sandbox=True)], at(300), 30) is None


# --- decisions --------------------------------------------------------------------------------------


def active(body: dict[str, Any], events: list[dict[str, Any]] | None = None) -> RunObservation:
    return runs.observe(ACTIVE_JOB, [body], events or [])


def test_a_wrong_image_shows_its_waiting_reason_then_fails_naming_the_image() -> None:
    ex = execution(running(), retries=3, component={"image": IMAGE})
    early = decide(ex, active(pod(waiting=("ErrImagePull", PULL_ERROR))), at(3), True, POLICY)
    assert early.status.phase is Phase.RUNNING and early.delete_job is None
    assert early.status.current_run is not None
    assert early.status.current_run.waiting == models.RunWaiting(reason="ErrImagePull", message=PULL_ERROR)
    succeeded = condition(early.status, "Succeeded")
    assert succeeded.status is models.ConditionStatus.UNKNOWN and succeeded.reason == "ErrImagePull"
    assert "run 1 is waiting to start: ErrImagePull" in succeeded.message
    assert early.wake_at == at(30), "the grace's end"
    backoff = f'Back-off pulling image "{IMAGE}": ErrImagePull: {PULL_ERROR}'
    failed = decide(ex, active(pod(waiting=("ImagePullBackOff", backoff))), at(30), True, POLICY)
    assert failed.status.phase is Phase.FAILED
    assert failed.status.error is not None and failed.status.error.reason == "ImagePullFailed"
    assert IMAGE in failed.status.error.message and "ImagePullBackOff" in failed.status.error.message
    assert failed.status.error.message.startswith(f"run 1 could not start: its image {IMAGE!r} cannot be pulled")
    assert failed.delete_job == run_job(1), "the Job is deleted as for other failures"
    assert failed.status.history[-1].outcome is RunOutcome.NOT_STARTED
    assert [e.reason for e in failed.events] == ["ImagePullFailed"]
    assert condition(failed.status, "Succeeded").reason == "ImagePullFailed"


def test_an_invalid_image_name_fails_at_once() -> None:
    message = 'couldn\'t parse image reference "Not A/Name": invalid reference format'
    d = decide(execution(running()), active(pod(waiting=("InvalidImageName", message))), at(1), True, POLICY)
    assert d.status.error is not None and d.status.error.reason == "ImagePullFailed"
    assert message in d.status.error.message


def test_a_missing_secret_fails_with_config_error_naming_it() -> None:
    ex = execution(running(), credentialsSecretRef={"name": "shop"})
    volume = pod(sandbox=False, waiting=("ContainerCreating", ""))
    early = decide(ex, active(volume), at(10), True, POLICY)
    assert early.status.phase is Phase.RUNNING and early.status.current_run is not None
    assert early.status.current_run.waiting is None, "ContainerCreating for 10 s is normal"
    assert early.wake_at == at(30)
    d = decide(ex, active(volume, [mount_event(MISSING_SECRET)]), at(30), True, POLICY)
    assert d.status.error is not None and d.status.error.reason == "ConfigError"
    assert MISSING_SECRET in d.status.error.message
    assert "spec.credentialsSecretRef names the Secret 'shop'" in d.status.error.message
    env_ref = pod(waiting=("CreateContainerConfigError", "couldn't find key apiKey in Secret ns/shop"))
    d = decide(ex, active(env_ref), at(31), True, POLICY)
    assert d.status.error is not None and d.status.error.reason == "ConfigError"
    assert "couldn't find key apiKey in Secret ns/shop" in d.status.error.message


def test_an_unschedulable_pod_fails_after_its_own_grace_with_the_schedulers_message() -> None:
    refusal = "0/3 nodes are available: 3 Insufficient cpu."
    ex = execution(running())
    early = decide(ex, active(pod(node=None, unschedulable=refusal, scheduled_at=at(1))), at(60), True, POLICY)
    assert early.status.current_run is not None and early.status.current_run.waiting is not None
    assert early.status.current_run.waiting.reason == "Unschedulable" and early.wake_at == at(121)
    d = decide(ex, active(pod(node=None, unschedulable=refusal, scheduled_at=at(1))), at(121), True, POLICY)
    assert d.status.error is not None and d.status.error.reason == "Unschedulable"
    assert refusal in d.status.error.message and "120s" in d.status.error.message


def test_a_pod_that_starts_clears_the_waiting_reason() -> None:
    waited = decide(execution(running()), active(pod(waiting=("ErrImagePull", "flake"))), at(3), True, POLICY)
    ex = execution(waited.status.model_dump(mode="json", by_alias=True))
    started = decide(ex, active(pod(state={"running": {}}, phase="Running")), at(12), True, POLICY)
    assert started.status.current_run is not None and started.status.current_run.waiting is None
    assert condition(started.status, "Succeeded").reason == "Running"


def test_a_long_kubelet_message_is_cut_to_the_status_limit() -> None:
    d = decide(execution(running()), active(pod(waiting=("ErrImagePull", "x" * 5000))), at(3), True, POLICY)
    assert d.status.current_run is not None and d.status.current_run.waiting is not None
    assert len(d.status.current_run.waiting.message) == models.WAITING_MESSAGE_LIMIT


def test_args_too_large_fail_before_any_job_exists() -> None:
    limit = contract.MAX_ARGS_BYTES
    fits = {"blob": "x" * (limit - len('{"blob":""}'))}
    assert manifests.args_size(fits) == limit
    ok = decide(execution(args=fits), runs.MISSING, at(1), True, POLICY)
    assert ok.start_run is not None and ok.start_run.args == fits
    big = {"blob": "é" * (limit // 2)}  # fewer characters than the limit, more bytes
    d = decide(execution(args=big), runs.MISSING, at(1), True, POLICY)
    assert d.start_run is None and d.status.phase is Phase.FAILED
    assert d.status.error is not None and d.status.error.reason == "ArgsTooLarge"
    assert d.status.error.message.startswith(
        f"spec.args are {manifests.args_size(big)} bytes as JSON; the limit is {limit}"
    )
    assert d.status.next_args is None, "not kept in the status either"


def test_args_a_run_schedules_are_limited_too() -> None:
    ex = execution(running())
    d = decide(
        ex,
        RunObservation(RunState.SUCCEEDED, envelope=envelope.Schedule(0, {"blob": "y" * 300_000})),
        at(5),
        True,
        POLICY,
    )
    later = execution(d.status.model_dump(mode="json", by_alias=True))
    refused = decide(later, runs.MISSING, at(20), True, POLICY)
    assert refused.start_run is None
    assert refused.status.error is not None and refused.status.error.reason == "ArgsTooLarge"
    assert "the args run 1 scheduled for run 2" in refused.status.error.message


# --- the Job ------------------------------------------------------------------------------------------


def test_args_reach_the_run_as_a_file_from_an_annotation_not_an_environment_variable() -> None:
    args = {"blob": "z" * 150_000, "ü": 1}
    job = manifests.job_manifest(execution(), 1, args, POD_DEFAULTS)
    template = job["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert template["metadata"]["annotations"][manifests.ARGS_ANNOTATION] == manifests.args_json(args)
    assert "SCHEDEXEC_ARGS" not in env and env[contract.ARGS_FILE] == contract.DEFAULT_ARGS_FILE
    assert all(len(value) < 4096 for value in env.values())
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == manifests.ARGS_VOLUME)
    (item,) = volume["downwardAPI"]["items"]
    assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{manifests.ARGS_ANNOTATION}']"
    mount = next(m for m in container["volumeMounts"] if m["name"] == manifests.ARGS_VOLUME)
    assert f"{mount['mountPath']}/{item['path']}" == contract.DEFAULT_ARGS_FILE and mount["readOnly"] is True
    assert env["HOME"] == "/tmp" and {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


# --- the pod cache --------------------------------------------------------------------------------------


def test_the_pod_cache_keeps_little_and_knows_when_a_pod_changed() -> None:
    body = pod(waiting=("ErrImagePull", PULL_ERROR))
    slim = runs.slim_pod(body)
    assert "managedFields" not in slim["metadata"] and "env" not in slim["spec"]["containers"][0]
    assert slim["metadata"]["labels"] == {"batch.kubernetes.io/job-name": run_job(1)}, "only the labels pod_job reads"
    assert runs.pod_job(slim) == run_job(1) and runs.pod_job_uid(slim) == "job-1"
    assert runs.pod_signature(slim) == runs.pod_signature(body)
    assert runs.pod_signature(body) != runs.pod_signature(pod(waiting=("ImagePullBackOff", PULL_ERROR)))
    assert runs.pod_signature(None) != runs.pod_signature(body)


def test_cached_pods_account_for_a_finished_job_only_when_they_show_all_it_counted() -> None:
    job = {"status": {"succeeded": 1, "failed": 1}}
    done = pod(uid="b", phase="Succeeded")
    failed = pod(uid="a", phase="Failed")
    assert runs.pods_account_for(job, [failed, done])
    assert not runs.pods_account_for(job, [done]), "one pod is not in the cache yet"
    assert not runs.pods_account_for(job, [failed, pod(uid="b", phase="Running")]), "the cache lags"
    assert not runs.pods_account_for({"status": {"succeeded": 1}}, [])
